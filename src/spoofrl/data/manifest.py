"""The one manifest format of spoofrl.

CSV with header `path,label,attack,source,condition,subset`:
- `path`: absolute, or relative to the manifest's folder;
- `label`: `bonafide` or `spoof`;
- `attack`: attack / generator id, `-` for bona fide;
- `source`: where the audio comes from (corpus, speaker source, TTS voice, ...);
- `condition`: channel / codec condition (`clean`, `mp3`, `alaw`, ...; `-` if unknown);
- `subset`: split name (`train`, `dev`, `eval`, `posttrain`, `ood_attack`, ...).
Empty attack/source/condition/subset cells read as `-` (unknown). Extra columns are kept in
`Utterance.extra`. The utterance id used in score files is `path` as written. The file is UTF-8
(a spreadsheet's BOM is accepted).
"""
from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Iterable, Iterator

from spoofrl.errors import ProtocolError

COLUMNS = ["path", "label", "attack", "source", "condition", "subset"]
LABELS = ("bonafide", "spoof")
BONAFIDE, SPOOF = "bonafide", "spoof"
UNKNOWN = "-"  # attack of bona fide rows; any unknown attack/source/condition/subset
# Class indices used by every model: logits[..., 0] = spoof, logits[..., 1] = bona fide.
LABEL_INDEX = {SPOOF: 0, BONAFIDE: 1}


@dataclass
class Utterance:
    path: str
    label: str
    attack: str = "-"
    source: str = "-"
    condition: str = "-"
    subset: str = "-"
    extra: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # folder the relative path is resolved against

    @property
    def utt(self) -> str:
        return self.path

    @property
    def audio_path(self) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() or self.root is None else self.root / p

    @property
    def target(self) -> int:
        return LABEL_INDEX[self.label]


def normalise_label(raw: str) -> str | None:
    """Map the spellings found in public protocols to `bonafide` / `spoof` (None if unknown)."""
    key = raw.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in ("bonafide", "real", "genuine", "human", "bona", "0real"):
        return BONAFIDE
    if key in ("spoof", "fake", "deepfake", "spoofed", "synthetic"):
        return SPOOF
    return None


# Binary files are told by a NUL byte in their first block (text never has one).
_SNIFF_BYTES = 8192
_GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _open_binary(path: Path):
    """The file's bytes, decompressed on the fly when it is gzip (told by its magic bytes, not its name)."""
    return gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")


def text_lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file, plain or gzip-compressed, a leading BOM dropped
    (spreadsheets write one).

    Binary or non-UTF-8 content raises a `ProtocolError` naming the file and line, instead of a
    decoding error or a screenful of garbage; `what` says what the file should have been.
    """
    try:
        with _open_binary(path) as fh:
            head = fh.read(_SNIFF_BYTES)
    except (EOFError, gzip.BadGzipFile) as err:
        raise ProtocolError(path, f"damaged or truncated gzip file ({err})") from None
    if b"\x00" in head:
        raise ProtocolError(path, f"binary data, not a text {what}", head[:head.index(b"\x00")].count(b"\n") + 1)
    try:
        with io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", newline="") as fh:
            yield from enumerate(fh, start=1)  # fast path: the decoder works in big blocks
    except UnicodeDecodeError:
        _raise_decode_error(path, what)
    except (EOFError, gzip.BadGzipFile) as err:
        raise ProtocolError(path, f"damaged or truncated gzip file ({err})") from None


def _raise_decode_error(path: Path, what: str) -> None:
    """Find the first line that is not UTF-8 and name it (only run once decoding has failed)."""
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise ProtocolError(path, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                                          f"save the {what} as UTF-8", lineno,
                                    raw.decode("utf-8", errors="replace")) from None
    raise ProtocolError(path, f"not UTF-8 text; save the {what} as UTF-8")


def csv_records(path: Path, what: str, *, single_line: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every CSV record, numbered by the line the record STARTS on.

    A quoted field left open (an unbalanced `"`) makes the csv module swallow lines up to the next quote or
    the end of the file; its error is reported at the line where the record began, not where reading
    stopped. `single_line`: every record must be one physical line (protocol files), so a record that runs
    over several lines is refused where its open quote is.
    """
    physical: list[tuple[int, str]] = []   # the lines of the record being read

    def lines() -> Iterator[str]:
        for lineno, text in text_lines(path, what):
            physical.append((lineno, text))
            yield text

    reader = csv.reader(lines())
    while True:
        physical.clear()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            start, text = physical[0] if physical else (reader.line_num + 1, None)
            hint = "; is a quote (\") on this line left open?" if len(physical) > 1 else ""
            raise ProtocolError(path, f"malformed CSV ({err}){hint}", start, text) from None
        start, text = physical[0]
        if single_line and len(physical) > 1:
            raise ProtocolError(path, f"a quoted field opened on this line is not closed on it (unbalanced '\"'; "
                                      f"the record runs on to line {physical[-1][0]})", start, text)
        yield start, cells


def _read_header(path: Path, records: Iterator[tuple[int, list[str]]]) -> list[str]:
    first = next(records, None)
    if first is None:
        raise ProtocolError(path, "empty manifest (no header)")
    header = [h.strip() for h in first[1]]
    text = ",".join(first[1])
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ProtocolError(path, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                  f"(header must include {','.join(COLUMNS)})", first[0], text)
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise ProtocolError(path, f"header repeats column {', '.join(repeated)}", first[0], text)
    return header


class _RowParser:
    """Checks one data row and returns its Utterance (column positions resolved once from the header)."""

    def __init__(self, path: Path, header: list[str], root: Path):
        self.path, self.root, self.width = path, root, len(header)
        self.pick = itemgetter(*(header.index(c) for c in COLUMNS))
        self.extra = [(c, i) for i, c in enumerate(header) if c not in COLUMNS]

    def fail(self, reason: str, lineno: int, cells: list[str]) -> None:
        raise ProtocolError(self.path, reason, lineno, ",".join(cells))

    def parse(self, lineno: int, cells: list[str]) -> Utterance:
        if len(cells) != self.width:
            self.fail(f"expected {self.width} fields, found {len(cells)}", lineno, cells)
        cells = [c.strip() for c in cells]
        path, label, attack, source, condition, subset = self.pick(cells)
        if label not in LABELS:
            self.fail(f"label must be 'bonafide' or 'spoof', found {label!r}", lineno, cells)
        if not path:
            self.fail("empty path", lineno, cells)
        attack = attack or UNKNOWN  # an empty cell means unknown, written `-`
        if label == BONAFIDE and attack != UNKNOWN:
            self.fail(f"a bona fide row must have attack '-', found {attack!r}", lineno, cells)
        extra = {c: cells[i] for c, i in self.extra}
        return Utterance(path, label, attack, source or UNKNOWN, condition or UNKNOWN, subset or UNKNOWN,
                         extra=extra, root=self.root)


class _DuplicateCheck:
    """The same path twice is an error when the two rows disagree on the label (a score key could not tell
    which is right) or are in the same subset (counted twice); one file in two subsets is allowed."""

    def __init__(self, path: Path):
        self.path = path
        self.first: dict[str, tuple[int, str]] = {}
        self.pairs: set[tuple[str, str]] = set()

    def check(self, row: Utterance, lineno: int, cells: list[str]) -> None:
        where = self.first.setdefault(row.path, (lineno, row.label))
        if where[0] != lineno and where[1] != row.label:
            raise ProtocolError(self.path, f"{row.path!r} is {where[1]} on line {where[0]} but {row.label} here",
                                lineno, ",".join(cells))
        key = (row.path, row.subset)
        if key in self.pairs:
            raise ProtocolError(self.path, f"{row.path!r} listed twice in subset {row.subset!r} (first on line "
                                           f"{where[0]})", lineno, ",".join(cells))
        self.pairs.add(key)


def read_manifest(path: str | Path, subsets: Iterable[str] | None = None, *,
                  bad_lines: list[ProtocolError] | None = None) -> list[Utterance]:
    """Read a manifest, optionally keeping only some subsets. Errors name file and line.

    Empty attack/source/condition/subset cells read as `-`; a bona fide row naming an attack, a label
    other than bonafide/spoof, a wrong field count or a duplicated path (see `_DuplicateCheck`) fail.
    With `bad_lines` (a list), such a row's error is appended there and the row skipped instead, so that
    a caller can use the good rows of a user's file; a bad header, encoding or CSV quoting still fails.
    """
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(path, "manifest not found")
    wanted = set(subsets) if subsets is not None else None
    records = csv_records(path, "manifest (CSV path,label,attack,source,condition,subset)")
    parser = _RowParser(path, _read_header(path, records), path.parent.resolve())
    duplicates = _DuplicateCheck(path)
    rows: list[Utterance] = []
    for lineno, cells in records:
        if not any(c.strip() for c in cells):
            continue  # blank line
        try:
            row = parser.parse(lineno, cells)
            duplicates.check(row, lineno, cells)
        except ProtocolError as err:
            if bad_lines is None:
                raise
            bad_lines.append(err)
            continue
        if wanted is None or row.subset in wanted:
            rows.append(row)
    if wanted is not None:
        absent = sorted(wanted - {r.subset for r in rows})
        if absent:
            raise ProtocolError(path, f"no utterances in subset{'s' if len(absent) > 1 else ''} {', '.join(absent)}")
    return rows


def write_manifest(rows: Iterable[Utterance], path: str | Path) -> int:
    """Write rows (paths written as given). Returns the number of rows. Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    extra_cols = sorted({k for r in rows for k in r.extra})
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS + extra_cols)
        for r in rows:
            w.writerow([r.path, r.label, r.attack, r.source, r.condition, r.subset] + [r.extra.get(c, "") for c in extra_cols])
    tmp.replace(path)
    return len(rows)


def check_audio_exists(rows: Iterable[Utterance], manifest: str | Path) -> None:
    """Report every missing audio file at once (count + first few), never skip silently."""
    missing = [r for r in rows if not r.audio_path.is_file()]
    if missing:
        shown = "; ".join(str(r.audio_path) for r in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ProtocolError(manifest, f"{len(missing)} audio file{'s' if len(missing) > 1 else ''} missing: {shown}{more}")
