"""Score files: TSV with header `utt<TAB>score<TAB>label[<TAB>attack<TAB>condition]`.

Higher score = more bona fide. `utt` is the manifest's `path` as written (or a protocol's file id).
`label` is `bonafide` or `spoof` (public spellings such as `bona-fide` are accepted when reading).
A file with only `utt` and `score` (with that header, or a headerless two-column file as the
ASVspoof challenges use) gets its labels from a key: a spoofrl manifest or a protocol file of a
supported corpus (see `spoofrl.data.importers.read_protocol_key`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from spoofrl.data.manifest import BONAFIDE, SPOOF, Utterance, normalise_label, text_lines
from spoofrl.errors import ProtocolError, SpoofrlError

LOG = logging.getLogger(__name__)

REQUIRED = ("utt", "score")
OPTIONAL = ("label", "attack", "condition")
UNKNOWN = "-"
SCORE_FILE = "score file (TSV utt, score, label)"


@dataclass
class ScoreTable:
    """Scores with their labels; `path` names the file they came from (for error messages)."""
    utt: list[str]
    score: np.ndarray
    label: list[str]
    attack: list[str]
    condition: list[str]
    path: str = ""
    lines: list[int] = field(default_factory=list)  # line number of each row in `path` (for messages)

    def __len__(self) -> int:
        return len(self.utt)

    @property
    def is_bonafide(self) -> np.ndarray:
        return np.asarray(self.label, dtype=object) == BONAFIDE

    @property
    def is_spoof(self) -> np.ndarray:
        return np.asarray(self.label, dtype=object) == SPOOF

    def bonafide_scores(self) -> np.ndarray:
        return self.score[self.is_bonafide]

    def spoof_scores(self) -> np.ndarray:
        return self.score[self.is_spoof]

    def select(self, mask: np.ndarray) -> "ScoreTable":
        keep = np.flatnonzero(mask)
        pick = lambda values: [values[i] for i in keep]  # noqa: E731
        return ScoreTable(pick(self.utt), self.score[keep], pick(self.label), pick(self.attack),
                          pick(self.condition), self.path, pick(self.lines) if self.lines else [])


# --------------------------------------------------------------------------------------------- writing

def _check_field(value: str, what: str, row: int) -> str:
    value = str(value)
    if "\t" in value or "\n" in value or "\r" in value:
        raise SpoofrlError(f"score row {row}: {what} {value!r} contains a tab or newline and cannot be written to a TSV")
    return value


def write_scores(path: str | Path, utts: Sequence[str], scores: Sequence[float] | np.ndarray,
                 labels: Sequence[str] | None = None, attacks: Sequence[str] | None = None,
                 conditions: Sequence[str] | None = None) -> Path:
    """Write a score TSV atomically. `labels=None` writes `utt<TAB>score` only (join labels later with a key).

    Scores are written in shortest round-trip form, so reading them back gives the same floats (and ties).
    """
    path = Path(path)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    columns: list[tuple[str, Sequence[str]]] = [("label", labels), ("attack", attacks), ("condition", conditions)]
    columns = [(name, values) for name, values in columns if values is not None]
    for name, values in [("utts", utts)] + [(n + "s", v) for n, v in columns]:
        if len(values) != scores.size:
            raise SpoofrlError(f"write_scores({path}): {len(values)} {name} for {scores.size} scores")
    bad = ~np.isfinite(scores)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise SpoofrlError(f"write_scores({path}): {int(bad.sum())} score(s) are NaN or infinite "
                           f"(first for {utts[first]!r})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("\t".join(["utt", "score"] + [name for name, _ in columns]) + "\n")
        for i, (utt, score) in enumerate(zip(utts, scores)):
            cells = [_check_field(utt, "utt", i), repr(float(score))]
            cells += [_check_field(values[i], name, i) for name, values in columns]
            fh.write("\t".join(cells) + "\n")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------------- reading

def _parse_header(path: Path, first: str, lineno: int) -> tuple[list[str], bool]:
    """(column names, has header). A headerless file is `utt score [label [attack [condition]]]`."""
    cells = _split_line(first)
    if cells and cells[0].strip().lower() == "utt":
        names = [c.strip().lower() for c in cells]
        if "score" not in names:
            raise ProtocolError(path, "header has no 'score' column (expected utt<TAB>score<TAB>label...)",
                                lineno, first)
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ProtocolError(path, f"header repeats column {', '.join(dup)}", lineno, first)
        return names, True
    width = len(_split_line(first))
    if width < 2 or width > 5:
        raise ProtocolError(path, "not a score file: expected a header 'utt<TAB>score<TAB>label' "
                                  "(or headerless 'utt score' lines)", lineno, first)
    return list(REQUIRED + OPTIONAL)[:width], False


def _split_line(line: str) -> list[str]:
    # Tab-separated when there are tabs (paths may hold spaces); otherwise any whitespace (ASVspoof style).
    line = line.rstrip("\r\n")
    return line.split("\t") if "\t" in line else line.split()


def _parse_label(path: Path, text: str, lineno: int, line: str) -> str:
    text = text.strip()
    if text in ("", UNKNOWN):
        return UNKNOWN
    label = normalise_label(text)
    if label is None:
        raise ProtocolError(path, f"label must be 'bonafide' or 'spoof', found {text!r}", lineno, line)
    return label


def _read_rows(path: Path) -> ScoreTable:
    if not path.is_file():
        raise ProtocolError(path, "score file not found")
    utts: list[str] = []
    raw_scores: list[str] = []
    cols: dict[str, list[str]] = {name: [] for name in OPTIONAL}
    lines: list[int] = []
    seen: dict[str, int] = {}
    label_of: dict[str, str] = {}  # raw label -> normalised (few distinct values; parse each once)
    names: list[str] | None = None
    for lineno, line in text_lines(path, SCORE_FILE):
        if not line.strip():
            continue
        if names is None:
            names, has_header = _parse_header(path, line, lineno)
            index = {name: names.index(name) for name in names}
            optional = [(name, index.get(name)) for name in OPTIONAL]
            tabbed = has_header and "\t" in line
            if has_header:
                continue
        # A tab-separated header fixes tabs for every line (utts may hold spaces); else ASVspoof-style whitespace.
        cells = line.rstrip("\r\n").split("\t") if tabbed else _split_line(line)
        if len(cells) != len(names):
            raise ProtocolError(path, f"expected {len(names)} fields ({', '.join(names)}), found {len(cells)}",
                                lineno, line)
        utt = cells[index["utt"]].strip()
        if not utt:
            raise ProtocolError(path, "empty utt", lineno, line)
        if utt in seen:
            raise ProtocolError(path, f"utt {utt!r} is scored twice (first on line {seen[utt]})", lineno, line)
        seen[utt] = lineno
        utts.append(utt)
        raw_scores.append(cells[index["score"]])
        lines.append(lineno)
        for name, i in optional:
            raw = cells[i].strip() if i is not None else UNKNOWN
            if name == "label":
                if raw not in label_of:
                    label_of[raw] = _parse_label(path, raw, lineno, line)
                raw = label_of[raw]
            cols[name].append(raw or UNKNOWN)
    if not utts:
        raise ProtocolError(path, "no scores in file" + (" (header only)" if names else " (empty file)"))
    scores = _parse_scores(path, raw_scores, lines)
    return ScoreTable(utts, scores, cols["label"], cols["attack"], cols["condition"], str(path), lines)


def _line_text(path: Path, lineno: int) -> str:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh, start=1):
            if i == lineno:
                return line
    return ""


def _parse_scores(path: Path, raw: list[str], lines: list[int]) -> np.ndarray:
    """All scores at once (fast); on failure, find the first bad one to name its line."""
    try:
        scores = np.array(raw, dtype=np.float64)
    except ValueError:
        for text, lineno in zip(raw, lines):
            try:
                float(text)
            except ValueError:
                raise ProtocolError(path, f"score {text.strip()!r} is not a number", lineno,
                                    _line_text(path, lineno)) from None
        raise
    bad = ~np.isfinite(scores)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ProtocolError(path, f"score is {raw[i].strip()} (NaN and infinite scores cannot be evaluated; "
                                  f"{int(bad.sum())} such row(s))", lines[i], _line_text(path, lines[i]))
    return scores


# --------------------------------------------------------------------------------------------- keys

def load_key(path: str | Path) -> dict[str, Utterance]:
    """Labels keyed by utterance id, from a spoofrl manifest or a supported protocol file."""
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(path, "key file not found")
    first = next(text_lines(path, "key (manifest or protocol file)"), (1, ""))[1]
    header = [c.strip().lower() for c in first.split(",")]
    if "path" in header and "label" in header:
        from spoofrl.data.manifest import read_manifest
        return {u.path: u for u in read_manifest(path)}
    from spoofrl.data.importers import read_protocol_key
    return read_protocol_key(path)


class _KeyLookup:
    """Finds a score file's utt in a key: the exact id first, then the file name without folder and extension
    (so `LA_E_1000147` matches a manifest path `ASVspoof2021_LA_eval/flac/LA_E_1000147.flac`)."""

    def __init__(self, key: dict[str, Utterance]):
        self.key = key
        self._by_stem: dict[str, Utterance | None] | None = None

    @staticmethod
    def _stem(utt: str) -> str:
        name = utt.replace("\\", "/").rsplit("/", 1)[-1]
        return name.rsplit(".", 1)[0] if "." in name else name

    def get(self, utt: str) -> Utterance | None:
        hit = self.key.get(utt)
        if hit is not None:
            return hit
        if self._by_stem is None:
            self._by_stem = {}
            for k, u in self.key.items():
                stem = self._stem(k)
                self._by_stem[stem] = None if stem in self._by_stem else u  # None marks an ambiguous stem
        return self._by_stem.get(self._stem(utt))


def _join_key(table: ScoreTable, key_path: Path) -> ScoreTable:
    lookup = _KeyLookup(load_key(key_path))
    unknown: list[int] = []
    used: set[int] = set()
    for i, utt in enumerate(table.utt):
        ref = lookup.get(utt)
        if ref is None:
            unknown.append(i)
            continue
        used.add(id(ref))
        lineno = table.lines[i] if table.lines else None
        if table.label[i] != UNKNOWN and table.label[i] != ref.label:
            raise ProtocolError(table.path, f"utt {utt!r} is labelled {table.label[i]} here but {ref.label} in the "
                                            f"key {key_path}", lineno)
        table.label[i] = ref.label
        if table.attack[i] == UNKNOWN:
            table.attack[i] = ref.attack
        if table.condition[i] == UNKNOWN:
            table.condition[i] = ref.condition
    if unknown:
        i = unknown[0]
        raise ProtocolError(table.path, f"utt {table.utt[i]!r} is not in the key {key_path} "
                                        f"({len(unknown)} of {len(table)} scored utterances are unknown to it)",
                            table.lines[i] if table.lines else None)
    if len(used) < len(lookup.key):
        LOG.warning("%s: %d of %d utterances of the key %s have no score; evaluating the %d scored ones",
                    table.path, len(lookup.key) - len(used), len(lookup.key), key_path, len(table))
    return table


def read_scores(path: str | Path, key: str | Path | None = None, *, require_labels: bool = True) -> ScoreTable:
    """Read a score TSV; with `key` (manifest or protocol file) labels, attacks and conditions come from it.

    Every error names the file and line: NaN score, bad label, duplicate or unknown utt, wrong field count.
    """
    path = Path(path)
    table = _read_rows(path)
    if key is not None:
        table = _join_key(table, Path(key))
    if require_labels:
        missing = [i for i, lab in enumerate(table.label) if lab == UNKNOWN]
        if missing:
            i = missing[0]
            hint = "" if key is not None else "; add a label column or pass a key (manifest or protocol file)"
            raise ProtocolError(path, f"utt {table.utt[i]!r} has no label ({len(missing)} of {len(table)} rows "
                                      f"unlabelled){hint}", table.lines[i])
    return table


def group_masks(table: ScoreTable, by: str) -> list[tuple[str, np.ndarray]]:
    """(group, row mask) per attack or condition, as the ASVspoof tools report them, in sorted order.

    - by attack: each spoofing attack against *all* bona fide trials (bona fide have attack `-`);
    - by condition: bona fide and spoof trials of that condition only (a codec/channel pools both classes).
    """
    if by not in ("attack", "condition"):
        raise SpoofrlError(f"cannot break results down by {by!r}; choose attack or condition")
    names, inverse = np.unique(np.asarray(getattr(table, by), dtype=object).astype(str), return_inverse=True)
    is_bona = table.is_bonafide
    groups = []
    for k, name in enumerate(names.tolist()):
        mask = inverse == k
        if by == "attack":
            if not (mask & ~is_bona).any():
                continue  # only bona fide carry this value (normally `-`)
            mask = mask | is_bona
        groups.append((name, mask))
    return groups


def iter_groups(table: ScoreTable, by: str) -> Iterable[tuple[str, ScoreTable]]:
    """Sub-tables per attack or condition (see `group_masks`)."""
    for name, mask in group_masks(table, by):
        yield name, table.select(mask)
