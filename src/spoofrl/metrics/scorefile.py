"""Score files: TSV with header `utt<TAB>score<TAB>label[<TAB>attack<TAB>condition]` (what spoofrl writes),
and the layouts users already hold (ASVspoof 5 `filename<TAB>cm-score`, ASVspoof 2019 `utt attack key score`,
the ASVspoof 5 AASIST baseline's `speaker utt score key`, `utt label score`, ...; see `accepted_formats`), told
from the header or the first line's shape, plain or gzip-compressed.

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
# The layouts people already hold. Column roles: utt, score, label, attack, condition; None = ignored (speaker).

@dataclass(frozen=True)
class ScoreLayout:
    name: str
    columns: tuple[str | None, ...]  # headerless layouts: the role of each column, in order
    description: str


HEADERLESS_LAYOUTS = (
    ScoreLayout("utt-score", ("utt", "score"), "utt score (ASVspoof 2019/2021 submissions)"),
    ScoreLayout("utt-score-label", ("utt", "score", "label"), "utt score label (spoofrl without header)"),
    ScoreLayout("utt-label-score", ("utt", "label", "score"), "utt label score"),
    ScoreLayout("spoofrl-attack", ("utt", "score", "label", "attack"), "utt score label attack"),
    ScoreLayout("asvspoof2019", ("utt", "attack", "label", "score"),
                "utt attack key score (ASVspoof 2019 CM score files of the official t-DCF scripts and AASIST)"),
    ScoreLayout("asvspoof5-aasist", (None, "utt", "score", "label"), "speaker utt score key (ASVspoof 5 AASIST "
                                                                      "baseline)"),
    ScoreLayout("spoofrl-condition", ("utt", "score", "label", "attack", "condition"),
                "utt score label attack condition"),
    ScoreLayout("asvspoof5-aasist-src", (None, "utt", "attack", "label", "score"),
                "speaker utt attack key score (ASVspoof 5 AASIST baseline, 2019-style)"),
)
HEADER_LAYOUTS = {
    "spoofrl": "header utt<TAB>score[<TAB>label<TAB>attack<TAB>condition] (what spoofrl writes)",
    "asvspoof5": "header filename<TAB>cm-score[<TAB>cm-label] (ASVspoof 5 submission / key files)",
}
SCORE_FORMATS = ("auto", *HEADER_LAYOUTS, *(layout.name for layout in HEADERLESS_LAYOUTS))
# Header names of other tools, mapped to spoofrl's column roles.
_HEADER_ALIASES = {"utt": "utt", "filename": "utt", "trial_anon": "utt", "score": "score", "cm-score": "score",
                   "label": "label", "cm-label": "label", "cm_label": "label", "key": "label", "attack": "attack",
                   "attack_anon": "attack", "condition": "condition", "codec": "condition"}


def accepted_formats() -> str:
    """One line per readable layout (for error messages and --help)."""
    lines = [f"  {name}: {text}" for name, text in HEADER_LAYOUTS.items()]
    lines += [f"  {layout.name}: {layout.description}" for layout in HEADERLESS_LAYOUTS]
    return "\n".join(lines) + "\n  (any of these gzip-compressed, .gz)"


def _split_line(line: str) -> list[str]:
    # Tab-separated when there are tabs (paths may hold spaces); otherwise any whitespace (ASVspoof style).
    line = line.rstrip("\r\n")
    return line.split("\t") if "\t" in line else line.split()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _fits(layout: ScoreLayout, cells: list[str]) -> bool:
    """Does a first data line have this layout's shape (a number where the score is, a label where the key is)?"""
    if len(cells) != len(layout.columns):
        return False
    for role, cell in zip(layout.columns, cells):
        if role == "score" and not _is_number(cell):
            return False
        if role == "label" and cell != UNKNOWN and normalise_label(cell) is None:
            return False
        if role in ("utt", "attack") and normalise_label(cell) is not None:
            return False  # a label where an id belongs: the columns are elsewhere
    return True


def _header_roles(path: Path, cells: list[str], lineno: int, line: str) -> list[str | None] | None:
    """Column roles from a header line, or None when the line is data. Unknown header names are ignored columns."""
    names = [c.strip().lower() for c in cells]
    if names[0] not in ("utt", "filename", "trial_anon") and not {"cm-score", "filename"} <= set(names):
        return None
    roles = [_HEADER_ALIASES.get(n) for n in names]
    if "score" not in roles:
        raise ProtocolError(path, "header has no score column (expected utt<TAB>score<TAB>label... or "
                                  "filename<TAB>cm-score)", lineno, line)
    dup = sorted({n for n, r in zip(names, roles) if r is not None and roles.count(r) > 1})
    if dup:
        raise ProtocolError(path, f"header repeats column {', '.join(dup)}", lineno, line)
    return roles


def _unknown_layout(path: Path, lineno: int, line: str, reason: str) -> ProtocolError:
    return ProtocolError(path, f"{reason}; readable layouts (force one with --format):\n{accepted_formats()}",
                         lineno, line)


def _headerless_roles(path: Path, cells: list[str], lineno: int, line: str, forced: str) -> list[str | None]:
    candidates = [lay for lay in HEADERLESS_LAYOUTS if forced in ("auto", lay.name)]
    if forced != "auto":
        if len(cells) != len(candidates[0].columns):
            raise ProtocolError(path, f"--format {forced} has {len(candidates[0].columns)} columns "
                                      f"({candidates[0].description}), this line has {len(cells)}", lineno, line)
        return list(candidates[0].columns)
    fitting = [lay for lay in candidates if _fits(lay, cells)]
    if len(fitting) == 1:
        return list(fitting[0].columns)
    if not fitting:
        raise _unknown_layout(path, lineno, line, f"not a score file layout spoofrl knows ({len(cells)} columns, "
                                                  f"no header)")
    names = ", ".join(lay.name for lay in fitting)
    raise _unknown_layout(path, lineno, line, f"ambiguous layout: the first line fits {names}")


def _layout(path: Path, line: str, lineno: int, forced: str) -> tuple[list[str | None], bool]:
    """(role of each column, whether this line is a header)."""
    if forced not in SCORE_FORMATS:
        raise SpoofrlError(f"--format {forced}: unknown score file format; choose one of {', '.join(SCORE_FORMATS)}")
    cells = _split_line(line)
    if not cells:
        raise _unknown_layout(path, lineno, line, "empty first line")
    roles = _header_roles(path, cells, lineno, line) if forced in ("auto", *HEADER_LAYOUTS) else None
    if roles is not None:
        return roles, True
    if forced in HEADER_LAYOUTS:
        raise ProtocolError(path, f"--format {forced} expects a {HEADER_LAYOUTS[forced]}", lineno, line)
    return _headerless_roles(path, cells, lineno, line, forced), False


def _parse_label(path: Path, text: str, lineno: int, line: str) -> str:
    text = text.strip()
    if text in ("", UNKNOWN):
        return UNKNOWN
    label = normalise_label(text)
    if label is None:
        raise ProtocolError(path, f"label must be 'bonafide' or 'spoof', found {text!r}", lineno, line)
    return label


def _read_rows(path: Path, score_format: str = "auto") -> ScoreTable:
    if not path.is_file():
        raise ProtocolError(path, "score file not found")
    utts: list[str] = []
    raw_scores: list[str] = []
    cols: dict[str, list[str]] = {name: [] for name in OPTIONAL}
    lines: list[int] = []
    seen: dict[str, int] = {}
    label_of: dict[str, str] = {}  # raw label -> normalised (few distinct values; parse each once)
    roles: list[str | None] | None = None
    for lineno, line in text_lines(path, SCORE_FILE):
        if not line.strip():
            continue
        if roles is None:
            roles, has_header = _layout(path, line, lineno, score_format)
            index = {role: i for i, role in enumerate(roles) if role is not None}
            optional = [(name, index.get(name)) for name in OPTIONAL]
            tabbed = has_header and "\t" in line
            if has_header:
                continue
        # A tab-separated header fixes tabs for every line (utts may hold spaces); else ASVspoof-style whitespace.
        cells = line.rstrip("\r\n").split("\t") if tabbed else _split_line(line)
        if len(cells) != len(roles):
            named = ", ".join(r or "(ignored)" for r in roles)
            raise ProtocolError(path, f"expected {len(roles)} fields ({named}), found {len(cells)}", lineno, line)
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
        raise ProtocolError(path, "no scores in file" + (" (header only)" if roles else " (empty file)"))
    scores = _parse_scores(path, raw_scores, lines)
    return ScoreTable(utts, scores, cols["label"], cols["attack"], cols["condition"], str(path), lines)


def _line_text(path: Path, lineno: int) -> str:
    for i, line in text_lines(path, SCORE_FILE):
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
    """Labels keyed by utterance id, from a spoofrl manifest, an ASVspoof 5 key file (header `filename` and
    `cm-label`, tab- or space-separated, optional attack/codec columns) or a supported protocol file."""
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(path, "key file not found")
    first = next(text_lines(path, "key (manifest or protocol file)"), (1, ""))[1]
    header = [c.strip().lower() for c in first.split(",")]
    if "path" in header and "label" in header:
        from spoofrl.data.manifest import read_manifest
        return {u.path: u for u in read_manifest(path)}
    names = [c.strip().lower() for c in _split_line(first)]
    if {"filename", "trial_anon"} & set(names) and {"cm-label", "cm_label"} & set(names):
        return _read_headed_key(path)
    from spoofrl.data.importers import read_protocol_key
    return read_protocol_key(path)


def _read_headed_key(path: Path) -> dict[str, Utterance]:
    """An ASVspoof 5 style key: a header naming the columns, then one trial per line."""
    key: dict[str, Utterance] = {}
    roles: list[str | None] = []
    for lineno, line in text_lines(path, "key file"):
        if not line.strip():
            continue
        cells = _split_line(line)
        if not roles:
            roles = [_HEADER_ALIASES.get(c.strip().lower()) for c in cells]
            continue
        if len(cells) != len(roles):
            raise ProtocolError(path, f"expected {len(roles)} fields as in the header, found {len(cells)}",
                                lineno, line)
        row = {role: cell.strip() for role, cell in zip(roles, cells) if role is not None}
        label = _parse_label(path, row["label"], lineno, line)
        if label == UNKNOWN:
            raise ProtocolError(path, "a key row needs a label (bonafide or spoof)", lineno, line)
        if row["utt"] in key:
            raise ProtocolError(path, f"file {row['utt']!r} appears twice", lineno, line)
        attack = row.get("attack", UNKNOWN) if label == SPOOF else UNKNOWN
        key[row["utt"]] = Utterance(path=row["utt"], label=label, attack=attack or UNKNOWN,
                                    condition=row.get("condition", UNKNOWN) or UNKNOWN)
    if not key:
        raise ProtocolError(path, "no rows in the key file (header only)")
    return key


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


def read_scores(path: str | Path, key: str | Path | None = None, *, require_labels: bool = True,
                score_format: str = "auto") -> ScoreTable:
    """Read a score file; with `key` (manifest or protocol file) labels, attacks and conditions come from it.

    `score_format` is one of SCORE_FORMATS ('auto': told from the header or the first line's shape).

    Every error names the file and line: NaN score, bad label, duplicate or unknown utt, wrong field count.
    """
    path = Path(path)
    table = _read_rows(path, score_format)
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
