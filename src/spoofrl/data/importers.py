"""Importers of public corpora into the spoofrl manifest format.

Each corpus format is one small function `(root, protocols, options) -> Iterator[Utterance]` yielding rows
whose `path` is where the audio should be, plus one line in `IMPORTERS`. `import_corpus` then finds every
audio file (at its standard place, else anywhere under the root by file name), reports all missing ones at
once, filters subsets, and writes paths relative to the manifest's folder when the audio lies under it.

Protocol layouts follow the official releases (see the notes on datasets):
- ASVspoof 2019 LA   `SPEAKER FILE - ATTACK KEY`, audio `ASVspoof2019_LA_<split>/flac/FILE.flac`
- ASVspoof 2021 LA   `SPK TRIAL CODEC TRANSMISSION ATTACK KEY TRIM SUBSET` (keys/LA/CM/trial_metadata.txt)
- ASVspoof 2021 DF   13 columns `SPK TRIAL COMPRESSION SOURCE ATTACK KEY TRIM SUBSET VOCODER ...`
- ASVspoof 5         space-separated `.tsv`, `SPEAKER FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP`
- In-the-Wild        `meta.csv` with header `file,speaker,label`, label `spoof` / `bona-fide`
- folders            label from the nearest folder named real/bonafide or fake/spoof (any depth)
- WaveFake           one folder per generator (fake only; bona fide LJSpeech/JSUT via `bonafide_roots`)
- MLAAD              `fake/<language>/<model>/...` (fake only; bona fide M-AILABS via `bonafide_roots`)
- FT-GRPO            ms-swift conversation records (`messages` + `audios`, or `solution`), JSON lines or an array
Every malformed protocol line raises `ProtocolError` with file:line and the line's text; so does a line whose audio
lies outside --root (`check_audio_inside`, applied by `import_corpus` to every row of every importer).
"""
from __future__ import annotations

import functools
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, NoReturn, Sequence

from spoofrl.audio import AUDIO_SUFFIXES
from spoofrl.config import option
from spoofrl.data.manifest import BONAFIDE, SPOOF, Utterance, csv_records, normalise_label, text_lines
from spoofrl.errors import ProtocolError

LOG = logging.getLogger(__name__)

UNKNOWN_ATTACK = "unknown"  # spoof of a corpus that does not name its attacks (In-the-Wild, plain folders)
# Split folder names found in public corpora (e.g. FakeOrReal's training/validation/testing) -> subset names.
SPLIT_ALIASES = {"train": "train", "training": "train", "trn": "train",
                 "dev": "dev", "development": "dev", "val": "dev", "valid": "dev", "validation": "dev",
                 "eval": "eval", "evaluation": "eval", "test": "eval", "testing": "eval"}
LABEL_FOLDERS = {"real": BONAFIDE, "bonafide": BONAFIDE, "bona-fide": BONAFIDE, "bona_fide": BONAFIDE,
                 "genuine": BONAFIDE, "fake": SPOOF, "spoof": SPOOF, "spoofed": SPOOF, "deepfake": SPOOF}


@dataclass
class ImportOptions:
    """Options shared by the importers; each importer reads the ones that apply to its corpus."""
    subsets: list[str] | None = option(None, "keep only these subsets (2019 LA / ASVspoof 5: train, dev, eval; "
                                             "2021 LA / DF: eval, progress, hidden); ['all'] keeps every subset; "
                                             "None: the format's default (all, but only the official evaluation "
                                             "subset 'eval' for 2021 LA / DF)")
    subset_name: str | None = option(None, "subset written for corpora without official splits (default: eval "
                                           "for in-the-wild, the split folder or 'all' for folders, 'all' for "
                                           "wavefake / mlaad)")
    bonafide_roots: list[str] = option(factory=list, doc="folders of bona fide audio added to fake-only corpora "
                                                         "(wavefake: LJSpeech / JSUT; mlaad: M-AILABS)")


@dataclass
class ProtocolRow(Utterance):
    """A row read from a protocol or label file, with the file, line number and text it came from: what an
    error found after parsing (its audio outside --root) names."""
    protocol: str = ""
    line: int | None = None
    line_text: str | None = None

    @property
    def origin(self) -> str:
        return f"{self.protocol}:{self.line}"


# --------------------------------------------------------------------------------------------- helpers

def _require_protocol_file(path: Path) -> None:
    if not path.is_file():
        raise ProtocolError(path, "is a folder, not a protocol file" if path.is_dir() else "protocol file not found")


def _protocol_fields(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, line, whitespace-separated fields) of every non-blank line; an empty file fails."""
    _require_protocol_file(path)
    empty = True
    for lineno, line in text_lines(path, "protocol file"):
        fields = line.split()
        if fields:
            empty = False
            yield lineno, line, fields
    if empty:
        raise ProtocolError(path, "empty protocol file (no trials)")


def _expect_width(path: Path, lineno: int, line: str, fields: list[str], width: int, layout: str) -> None:
    if len(fields) != width:
        raise ProtocolError(path, f"expected {width} fields ({layout}), found {len(fields)}", lineno, line)


def _key_label(path: Path, lineno: int, line: str, raw: str) -> str:
    label = normalise_label(raw)
    if label is None:
        raise ProtocolError(path, f"key must be bonafide or spoof, found {raw!r}", lineno, line)
    return label


def _attack_for(path: Path, lineno: int, line: str, label: str, raw: str) -> str:
    """Bona fide rows get attack `-` (protocols write `-` or `bonafide` there); a spoof row must name its attack."""
    if label == BONAFIDE:
        if raw not in ("-", BONAFIDE):
            raise ProtocolError(path, f"bona fide trial with attack id {raw!r} (columns shifted?)", lineno, line)
        return "-"
    if raw in ("-", "", BONAFIDE):
        raise ProtocolError(path, f"spoof trial without an attack id ({raw!r})", lineno, line)
    return raw


class _Seen:
    """Refuses a file id listed twice in one protocol (naming both lines)."""

    def __init__(self, path: Path):
        self.path = path
        self.first: dict[str, int] = {}

    def check(self, file_id: str, lineno: int, line: str) -> None:
        if file_id in self.first:
            raise ProtocolError(self.path, f"{file_id!r} listed twice (first on line {self.first[file_id]})",
                                lineno, line)
        self.first[file_id] = lineno


def _find_protocol(root: Path, name: str, likely_dirs: Iterable[str]) -> Path | None:
    """A protocol file at one of its usual places under `root`, else anywhere below it."""
    for folder in likely_dirs:
        candidate = root / folder / name
        if candidate.is_file():
            return candidate
    return next(iter(sorted(root.rglob(name))), None)


def _split_from_name(path: Path, splits: Iterable[str]) -> str | None:
    parts = path.name.lower().split(".")
    hits = [s for s in splits if s in parts]
    return hits[0] if len(hits) == 1 else None


def _walk_audio(root: Path) -> list[Path]:
    """Every audio file below `root`, sorted, skipping hidden files and folders (e.g. macOS `._x.wav`)."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_SUFFIXES]
    return sorted(found)


def _wanted(opts: ImportOptions, subset: str) -> bool:
    return opts.subsets is None or subset in opts.subsets


# --------------------------------------------------------------------------------------------- protocol parsers
# Each yields Utterance rows whose `path` is the protocol's file id (what score files of that corpus use).

LAYOUT_2019 = "SPEAKER FILE - ATTACK KEY"
LAYOUT_2021_LA = "SPK TRIAL CODEC TRANSMISSION ATTACK KEY TRIM SUBSET"
LAYOUT_2021_DF = "SPK TRIAL COMPRESSION SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER_PAIR LANGUAGE"
LAYOUT_ASV5 = "SPEAKER FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP"


def parse_asvspoof2019_la(path: Path, split: str) -> Iterator[Utterance]:
    seen = _Seen(path)
    for lineno, line, f in _protocol_fields(path):
        _expect_width(path, lineno, line, f, 5, LAYOUT_2019)
        seen.check(f[1], lineno, line)
        label = _key_label(path, lineno, line, f[4])
        yield ProtocolRow(f[1], label, _attack_for(path, lineno, line, label, f[3]), "asvspoof2019-la", "clean",
                          split, extra={"speaker": f[0]}, protocol=str(path), line=lineno, line_text=line)


def parse_asvspoof2021_la(path: Path) -> Iterator[Utterance]:
    seen = _Seen(path)
    for lineno, line, f in _protocol_fields(path):
        _expect_width(path, lineno, line, f, 8, LAYOUT_2021_LA)
        seen.check(f[1], lineno, line)
        label = _key_label(path, lineno, line, f[5])
        yield ProtocolRow(f[1], label, _attack_for(path, lineno, line, label, f[4]), "asvspoof2021-la", f[2], f[7],
                          extra={"speaker": f[0], "transmission": f[3], "trim": f[6]}, protocol=str(path),
                          line=lineno, line_text=line)


def parse_asvspoof2021_df(path: Path) -> Iterator[Utterance]:
    seen = _Seen(path)
    for lineno, line, f in _protocol_fields(path):
        _expect_width(path, lineno, line, f, 13, LAYOUT_2021_DF)
        seen.check(f[1], lineno, line)
        label = _key_label(path, lineno, line, f[5])
        yield ProtocolRow(f[1], label, _attack_for(path, lineno, line, label, f[4]), f[3], f[2], f[7],
                          extra={"speaker": f[0], "trim": f[6], "vocoder": f[8]}, protocol=str(path), line=lineno,
                          line_text=line)


def parse_asvspoof5(path: Path, split: str) -> Iterator[Utterance]:
    seen = _Seen(path)
    for lineno, line, f in _protocol_fields(path):
        _expect_width(path, lineno, line, f, 10, LAYOUT_ASV5)
        seen.check(f[1], lineno, line)
        label = _key_label(path, lineno, line, f[8])
        # CODEC `-` means no codec; ATTACK_TAG (AC1-AC3) is an attacker condition, kept as an extra column.
        yield ProtocolRow(f[1], label, _attack_for(path, lineno, line, label, f[7]), "asvspoof5", f[3], split,
                          extra={"speaker": f[0], "gender": f[2], "codec_q": f[4], "codec_seed": f[5],
                                 "attack_tag": f[6]}, protocol=str(path), line=lineno, line_text=line)


def _itw_file_name(path: Path, lineno: int, text: str, raw: str) -> str:
    """The `file` cell: a name relative to meta.csv's folder (the release lists `0.wav`, `1.wav`, ...)."""
    name = raw.strip()
    if not name:
        raise ProtocolError(path, "empty file name", lineno, text)
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ProtocolError(path, f"file {name!r} must be a name relative to the folder of {path.name}", lineno, text)
    return name


def parse_in_the_wild(path: Path, subset: str = "eval") -> Iterator[Utterance]:
    _require_protocol_file(path)
    seen = _Seen(path)
    records = csv_records(path, "In-the-Wild meta.csv (file,speaker,label)", single_line=True)
    lineno, header = next(records, (1, []))
    header = [h.strip().lower() for h in header]
    if "file" not in header or "label" not in header:
        raise ProtocolError(path, "expected a CSV header with columns file,speaker,label", lineno, ",".join(header))
    col = {name: header.index(name) for name in header}
    for lineno, cells in records:
        if not cells or all(not c.strip() for c in cells):
            continue
        text = ",".join(cells)
        if len(cells) != len(header):
            raise ProtocolError(path, f"expected {len(header)} fields ({','.join(header)}), found {len(cells)}",
                                lineno, text)
        name = _itw_file_name(path, lineno, text, cells[col["file"]])
        seen.check(name, lineno, text)
        label = normalise_label(cells[col["label"]])
        if label is None:
            raise ProtocolError(path, f"label must be 'spoof' or 'bona-fide', found {cells[col['label']]!r}",
                                lineno, text)
        speaker = cells[col["speaker"]].strip() if "speaker" in col else "-"
        yield ProtocolRow(name, label, "-" if label == BONAFIDE else UNKNOWN_ATTACK, "in-the-wild", "-", subset,
                          extra={"speaker": speaker}, protocol=str(path), line=lineno, line_text=text)


def read_protocol_key(path: str | Path) -> dict[str, Utterance]:
    """Labels by file id from any supported protocol file, its format told by its shape (for score keys)."""
    path = Path(path)
    first = next(_protocol_fields(path), None)
    if first is None:
        raise ProtocolError(path, "empty protocol file")
    _, line, fields = first
    if "," in line and line.split(",")[0].strip().lower() == "file":
        rows: Iterable[Utterance] = parse_in_the_wild(path)
    elif len(fields) == 5:
        rows = parse_asvspoof2019_la(path, _split_from_name(path, ("train", "dev", "eval")) or "-")
    elif len(fields) == 8:
        rows = parse_asvspoof2021_la(path)
    elif len(fields) == 13:
        rows = parse_asvspoof2021_df(path)
    elif len(fields) == 10:
        rows = parse_asvspoof5(path, _split_from_name(path, ("train", "dev", "eval")) or "-")
    else:
        raise ProtocolError(path, "not a spoofrl manifest nor a known protocol (ASVspoof 2019 LA: 5 fields, "
                                  "2021 LA: 8, 2021 DF: 13, ASVspoof 5: 10, In-the-Wild: CSV file,speaker,label)",
                            first[0], line)
    return {u.path: u for u in rows}


# --------------------------------------------------------------------------------------------- importers
# Signature: (root, protocols given on the command line (may be empty), options) -> rows with audio paths.

SPLITS_2019 = {"train": "ASVspoof2019.LA.cm.train.trn.txt", "dev": "ASVspoof2019.LA.cm.dev.trl.txt",
               "eval": "ASVspoof2019.LA.cm.eval.trl.txt"}
SPLITS_ASV5 = {"train": ("ASVspoof5.train.tsv", ("flac_T",)),
               "dev": ("ASVspoof5.dev.track_1.tsv", ("flac_D",)),
               "eval": ("ASVspoof5.eval.track_1.tsv", ("flac_E_eval", "flac_E"))}


def _split_protocols(root: Path, protocols: list[Path], opts: ImportOptions, standard: dict[str, str],
                     likely_dirs: tuple[str, ...], corpus: str) -> list[tuple[str, Path]]:
    """(split, protocol file) pairs: the given files (split from the name or a single --subset), else the
    standard files found under root for the wanted splits."""
    if protocols:
        pairs = []
        for p in protocols:
            split = _split_from_name(p, standard)
            if split is None and opts.subsets is not None and len(opts.subsets) == 1:
                split = opts.subsets[0]
            if split is None:
                raise ProtocolError(p, f"cannot tell which split ({', '.join(standard)}) this {corpus} protocol is "
                                       f"from its name; pass a single --subset")
            pairs.append((split, p))
        return [(s, p) for s, p in pairs if _wanted(opts, s)]
    pairs = []
    for split, name in standard.items():
        if not _wanted(opts, split):
            continue
        found = _find_protocol(root, name, likely_dirs)
        if found is not None:
            pairs.append((split, found))
        elif opts.subsets is not None:
            raise ProtocolError(root, f"no {name} found for split {split!r}; pass it with --protocol")
        else:
            LOG.warning("%s: no %s found; the %s split is not imported", root, name, split)
    if not pairs:
        raise ProtocolError(root, f"no {corpus} protocol found (looked for {', '.join(standard.values())}); "
                                  f"pass one with --protocol")
    return pairs


def import_asvspoof2019_la(root: Path, protocols: list[Path], opts: ImportOptions) -> Iterator[Utterance]:
    for split, proto in _split_protocols(root, protocols, opts, SPLITS_2019, ("ASVspoof2019_LA_cm_protocols", ".",
                                         "LA/ASVspoof2019_LA_cm_protocols"), "ASVspoof 2019 LA"):
        audio_dir = root / f"ASVspoof2019_LA_{split}" / "flac"
        for u in parse_asvspoof2019_la(proto, split):
            u.path = str(audio_dir / f"{u.path}.flac")
            yield u


def _import_2021(root: Path, protocols: list[Path], opts: ImportOptions, track: str,
                 parse: Callable[[Path], Iterator[Utterance]]) -> Iterator[Utterance]:
    if len(protocols) > 1:
        raise ProtocolError(protocols[1], f"ASVspoof 2021 {track} has one protocol (trial_metadata.txt); got several")
    proto = protocols[0] if protocols else (root / "keys" / track / "CM" / "trial_metadata.txt")
    if not protocols and not proto.is_file():
        # Elsewhere below root, but never the other track's key (LA and DF keys share the file name).
        found = [p for p in sorted(root.rglob("trial_metadata.txt")) if track in p.parts or
                 not ({"LA", "DF", "PA"} & set(p.parts))]
        proto = found[0] if found else None
        if proto is None:
            raise ProtocolError(root, f"no keys/{track}/CM/trial_metadata.txt found (from {track}-keys-full.tar.gz); "
                                      f"pass it with --protocol")
    audio_dir = root / f"ASVspoof2021_{track}_eval" / "flac"
    for u in parse(proto):  # every subset: import_corpus filters them (and counts what it skips)
        u.path = str(audio_dir / f"{u.path}.flac")
        yield u


def import_asvspoof2021_la(root: Path, protocols: list[Path], opts: ImportOptions) -> Iterator[Utterance]:
    return _import_2021(root, protocols, opts, "LA", parse_asvspoof2021_la)


def import_asvspoof2021_df(root: Path, protocols: list[Path], opts: ImportOptions) -> Iterator[Utterance]:
    return _import_2021(root, protocols, opts, "DF", parse_asvspoof2021_df)


def import_asvspoof5(root: Path, protocols: list[Path], opts: ImportOptions) -> Iterator[Utterance]:
    names = {split: name for split, (name, _) in SPLITS_ASV5.items()}
    for split, proto in _split_protocols(root, protocols, opts, names, ("ASVspoof5_protocols", ".", "protocols"),
                                         "ASVspoof 5"):
        folders = [root / d for d in SPLITS_ASV5[split][1]]
        audio_dir = next((d for d in folders if d.is_dir()), folders[0])
        for u in parse_asvspoof5(proto, split):
            u.path = str(audio_dir / f"{u.path}.flac")
            yield u


def import_in_the_wild(root: Path, protocols: list[Path], opts: ImportOptions) -> Iterator[Utterance]:
    if len(protocols) > 1:
        raise ProtocolError(protocols[1], "In-the-Wild has one protocol (meta.csv); got several")
    meta = protocols[0] if protocols else _find_protocol(root, "meta.csv", (".", "release_in_the_wild"))
    if meta is None:
        raise ProtocolError(root, "no meta.csv found (release_in_the_wild/meta.csv); pass it with --protocol")
    # Audio lies beside meta.csv in the release (a meta.csv from outside --root names audio under it); elsewhere
    # under root is found by file name.
    folder = meta.parent if meta.resolve().is_relative_to(root.resolve()) else root
    for u in parse_in_the_wild(meta, opts.subset_name or "eval"):
        u.path = str(folder / u.path)
        yield u


def _no_protocol(protocols: list[Path], fmt: str) -> None:
    if protocols:
        raise ProtocolError(protocols[0], f"format {fmt} takes its labels from folder names, not a protocol file")


def _split_of(parts: Iterable[str]) -> str | None:
    hits = [SPLIT_ALIASES[p.lower()] for p in parts if p.lower() in SPLIT_ALIASES]
    return hits[-1] if hits else None


def import_folders(root: Path, protocols: list[Path], opts: ImportOptions) -> Iterator[Utterance]:
    """Label = the nearest enclosing folder named real/bonafide/bona-fide/genuine or fake/spoof/spoofed/deepfake;
    attack = the first folder below a fake/spoof folder (else `unknown`); subset = a train/training/dev/
    validation/eval/test(ing) folder name (else --subset-name or `all`); source = the first other folder above
    the label folder (else the root's name)."""
    _no_protocol(protocols, "folders")
    files = _walk_audio(root)
    if not files:
        raise ProtocolError(root, "no audio files found")
    unlabelled = []
    for path in files:
        parts = path.relative_to(root).parts[:-1]
        label_at = [i for i, p in enumerate(parts) if p.lower() in LABEL_FOLDERS]
        if not label_at:
            unlabelled.append(path)
            continue
        i = label_at[-1]
        label = LABEL_FOLDERS[parts[i].lower()]
        below = [p for p in parts[i + 1:] if p.lower() not in SPLIT_ALIASES]
        attack = "-" if label == BONAFIDE else (below[0] if below else UNKNOWN_ATTACK)
        above = [p for p in parts[:i] if p.lower() not in SPLIT_ALIASES]
        source = above[0] if above else root.name
        subset = opts.subset_name or _split_of(parts) or "all"
        yield Utterance(str(path), label, attack, source, "-", subset)
    if unlabelled:
        shown = "; ".join(str(p.relative_to(root)) for p in unlabelled[:5])
        raise ProtocolError(root, f"{len(unlabelled)} of {len(files)} audio files are not inside a real/bonafide or "
                                  f"fake/spoof folder: {shown}{' ...' if len(unlabelled) > 5 else ''}")


def _corpus_of(path: Path, known: Iterable[str], default: str) -> str:
    low = str(path).lower()
    return next((k for k in known if k in low), default)


def _bonafide_rows(opts: ImportOptions, source_of: Callable[[Path, Path], str], subset: str,
                   fmt: str) -> Iterator[Utterance]:
    if not opts.bonafide_roots:
        LOG.warning("%s is fake only: the manifest has no bona fide audio (add --bonafide-root)", fmt)
    for broot in map(Path, opts.bonafide_roots):
        if not broot.is_dir():
            raise ProtocolError(broot, "bona fide folder not found")
        files = _walk_audio(broot)
        if not files:
            raise ProtocolError(broot, "no audio files in the bona fide folder")
        for path in files:
            yield Utterance(str(path), BONAFIDE, "-", source_of(broot, path), "-", subset)


def import_wavefake(root: Path, protocols: list[Path], opts: ImportOptions) -> Iterator[Utterance]:
    """attack = generator folder (e.g. ljspeech_melgan); source = the corpus it imitates (ljspeech / jsut)."""
    _no_protocol(protocols, "wavefake")
    subset = opts.subset_name or "all"
    files = _walk_audio(root)
    if not files:
        raise ProtocolError(root, "no audio files found (expected one folder per generator)")
    for path in files:
        parts = [p for p in path.relative_to(root).parts[:-1] if p != "generated_audio"]
        if not parts:
            raise ProtocolError(path, "audio directly in the WaveFake root; expected one folder per generator")
        yield Utterance(str(path), SPOOF, parts[0], _corpus_of(Path(parts[0]), ("jsut", "ljspeech"), "wavefake"),
                        "-", subset)
    yield from _bonafide_rows(opts, lambda broot, p: _corpus_of(p, ("jsut", "ljspeech"), broot.name.lower()),
                              subset, "wavefake")


_MAILABS_LOCALE = re.compile(r"^([a-z]{2})_[A-Z]{2}$")


def _mailabs_language(broot: Path, path: Path) -> str:
    for part in path.relative_to(broot).parts[:-1]:
        m = _MAILABS_LOCALE.match(part)
        if m:
            return m.group(1)
    m = _MAILABS_LOCALE.match(broot.name)
    return m.group(1) if m else broot.name.lower()


def import_mlaad(root: Path, protocols: list[Path], opts: ImportOptions) -> Iterator[Utterance]:
    """Layout fake/<language>/<model>/...: attack = model folder, source = language code; M-AILABS bona fide
    (<locale>/by_book/...) gets source = the locale's language (de_DE -> de)."""
    _no_protocol(protocols, "mlaad")
    fake = root / "fake" if (root / "fake").is_dir() else root
    subset = opts.subset_name or "all"
    files = _walk_audio(fake)
    if not files:
        raise ProtocolError(fake, "no audio files found (expected fake/<language>/<model>/*.wav)")
    for path in files:
        parts = path.relative_to(fake).parts[:-1]
        if len(parts) < 2:
            raise ProtocolError(path, f"not in a <language>/<model> folder under {fake}")
        yield Utterance(str(path), SPOOF, parts[1], parts[0], "-", subset)
    yield from _bonafide_rows(opts, _mailabs_language, subset, "mlaad")


# --------------------------------------------------------------------------------------------- FT-GRPO
# The label files of FT-GRPO (arXiv 2601.02983, github.com/xieyuankun/ALLM-ADD-FT-GRPO): ms-swift conversation
# records, one per line (.jsonl) or one JSON array (.json):
#   {"messages": [{"role": "system", "content": ...}, {"role": "user", "content": "<audio>..."},
#                 {"role": "assistant", "content": "<think>\n<Frequency Domain>...\n<Time Domain>...\n</think>\n"
#                                                  "<answer>real|fake</answer>"}],
#    "audios": ["path"], "solution": "<answer>fake</answer>"}            (solution: GRPO ground truth, optional)
# ms-swift's query/response/system keys are read as the same turns.

FTGRPO_SOURCE = "ftgrpo"
_FTGRPO_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_FTGRPO_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FTGRPO_ANSWER_WORDS = re.compile(r"\b(real|fake)\b", re.IGNORECASE)
_JSON_SPACE = " \t\r\n"
# A record nests 3 deep and holds a few kB of prompts and rationale. The bounds keep a hostile line from the
# parser's recursion limit (RecursionError, no file:line) and from a runaway line.
MAX_JSON_DEPTH = 100
MAX_RECORD_CHARS = 1 << 20
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)   # strings (skipped) and brackets
_NESTING_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


@dataclass
class ConversationRow(ProtocolRow):
    """A manifest row imported from a conversation record, with the texts of that record: the target
    `completion` (answer renamed to bonafide / spoof), its <think> block (`rationale`, empty for an answer-only
    target), the record's system and user turns; where the record is: `origin` (FILE:LINE)."""
    completion: str = ""
    rationale: str = ""
    system: str | None = None
    prompt: str | None = None


def _too_deep_at(text: str, limit: int = MAX_JSON_DEPTH) -> int | None:
    """Where the arrays and objects of `text` first nest deeper than `limit` (brackets in strings are text),
    else None."""
    if text.count("[") + text.count("{") <= limit:   # too few brackets to get there: no scan
        return None
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        depth += _NESTING_STEP.get(match.group(), 0)
        if depth > limit:
            return match.start()
    return None


def _too_long(chars: int) -> str | None:
    """What is wrong with a record of `chars` characters (None: nothing)."""
    if chars <= MAX_RECORD_CHARS:
        return None
    return f"{chars} characters, more than the {MAX_RECORD_CHARS} a record may have"


def _json_line(path: Path, lineno: int, line: str) -> object:
    """One record of a JSON-lines file, within the bounds on length and nesting."""
    import json
    too_long = _too_long(len(line))
    if too_long:
        raise ProtocolError(path, f"record has {too_long}", lineno, line)
    deep = _too_deep_at(line)
    if deep is not None:
        raise ProtocolError(path, f"JSON nested deeper than {MAX_JSON_DEPTH} levels (at column {deep + 1})",
                            lineno, line)
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ProtocolError(path, f"not a JSON record ({err.msg} at column {err.colno}); expected one JSON "
                                  f"object per line or one JSON array", lineno, line) from None


def _json_records(path: Path) -> Iterator[tuple[int, str, object, str]]:
    """(line, where, value, its source text) of each record of a JSON-lines file or of a JSON array (told by
    the first character); `where` names the record (`record N` in an array). Bad JSON names file and line."""
    _require_protocol_file(path)
    text = "".join(line for _, line in text_lines(path, "FT-GRPO label file (JSON lines or a JSON array)"))
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    if not text[start:]:
        raise ProtocolError(path, "empty label file (no records)")
    if text[start] == "[":
        yield from _json_array(path, text, start)
        return
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield lineno, "", _json_line(path, lineno, line), line


def _json_array(path: Path, text: str, i: int) -> Iterator[tuple[int, str, object, str]]:
    import json
    decoder = json.JSONDecoder()

    def skip(k: int) -> int:
        while k < len(text) and text[k] in _JSON_SPACE:
            k += 1
        return k

    def fail(reason: str, pos: int) -> NoReturn:
        lineno = text.count("\n", 0, pos) + 1
        raise ProtocolError(path, reason, lineno, text.split("\n")[lineno - 1])

    deep = _too_deep_at(text, MAX_JSON_DEPTH + 1)   # + the array itself
    if deep is not None:
        fail(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", deep)
    lineno, counted, index = 1, 0, 0
    i = skip(i + 1)
    if i < len(text) and text[i] == "]":
        fail("the JSON array has no records", i)
    while True:
        if i >= len(text):
            fail(f"the JSON array is not closed (after record {index})", len(text))
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as err:
            fail(f"not valid JSON in record {index + 1} ({err.msg} at column {err.colno})", err.pos)
        index += 1
        too_long = _too_long(end - i)
        if too_long:
            fail(f"record {index} has {too_long}", i)
        lineno += text.count("\n", counted, i)
        counted = i
        yield lineno, f"record {index}", value, text[i:end]
        i = skip(end)
        if i < len(text) and text[i] == ",":
            i = skip(i + 1)
            if i < len(text) and text[i] == "]":
                fail(f"trailing comma after record {index}", i)
            continue
        if i < len(text) and text[i] == "]":
            if skip(i + 1) < len(text):
                fail("text after the end of the JSON array", skip(i + 1))
            return
        fail(f"expected ',' or ']' after record {index}", min(i, len(text)))


def _ftgrpo_label(raw: str) -> str | None:
    """bonafide / spoof for the paper's real / fake (any case; spoofrl's own names are accepted too)."""
    return normalise_label(raw) if raw.strip() else None


def _rename_answers(text: str, fail: Callable[[str], NoReturn]) -> tuple[str, str | None]:
    """`text` with every <answer>real|fake</answer> written <answer>bonafide|spoof</answer>, and the last
    answer's label (None without an answer tag); an answer that is no label fails."""
    label = None

    def one(match: re.Match) -> str:
        nonlocal label
        label = _ftgrpo_label(match.group(1))
        if label is None:
            fail(f"unknown label {match.group(1).strip()!r} in <answer> (expected real or fake)")
        return f"<answer>{label}</answer>"

    return _FTGRPO_ANSWER.sub(one, text), label


def _template_text(text: str) -> str:
    """A prompt as a generation template: real/fake inside <answer> tags renamed as the targets are, braces
    doubled (templates read `{column}`)."""
    def rename(match: re.Match) -> str:
        return _FTGRPO_ANSWER_WORDS.sub(lambda w: BONAFIDE if w.group(1).lower() == "real" else SPOOF,
                                        match.group(0))
    return _FTGRPO_ANSWER.sub(rename, text).replace("{", "{{").replace("}", "}}")


def _turns(record: dict, fail: Callable[[str], NoReturn]) -> list[tuple[str, str]]:
    """(role, content) of the record's turns: `messages`, else ms-swift's system / query / response keys
    (none: the record has no conversation)."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list):
            fail(f"'messages' must be a list of {{role, content}} turns, found {type(messages).__name__}")
        turns = []
        for n, turn in enumerate(messages, start=1):
            if not isinstance(turn, dict) or not isinstance(turn.get("role"), str):
                fail(f"messages[{n}] is not a {{role, content}} turn")
            content = turn.get("content")
            if content is None:
                content = ""
            if not isinstance(content, str):
                fail(f"messages[{n}] ({turn['role']}): content must be text, found {type(content).__name__}")
            turns.append((turn["role"].strip().lower(), content))
        return turns
    turns = [(role, record[key]) for key, role in (("system", "system"), ("query", "user"),
                                                     ("response", "assistant")) if record.get(key) is not None]
    for role, content in turns:
        if not isinstance(content, str):
            fail(f"{role} turn must be text, found {type(content).__name__}")
    return turns   # none: a record of audio and solution only still gives a label and an answer-only target


def _record_audio(record: dict, fail: Callable[[str], NoReturn]) -> str:
    audios = record.get("audios")
    if isinstance(audios, str):
        audios = [audios]
    if audios is None or audios == []:
        fail("record without audio (expected \"audios\": [one audio path])")
    if not isinstance(audios, list) or not all(isinstance(a, str) for a in audios):
        fail(f"'audios' must be a list of audio paths, found {audios!r:.60}")
    if len(audios) > 1:
        fail(f"record with {len(audios)} audios; spoofrl takes one clip per record")
    if not audios[0].strip():
        fail("empty audio path")
    return audios[0].strip()


def _ftgrpo_row(path: Path, lineno: int, where: str, record: object, text: str, subset: str,
                root: Path) -> ConversationRow:
    """The row of one record (its path `root / audio`, checked by import_corpus); a bad record fails naming its
    line."""
    def fail(reason: str) -> NoReturn:
        raise ProtocolError(path, (f"{where}: " if where else "") + reason, lineno, text)

    if not isinstance(record, dict):
        fail(f"expected a JSON object (a conversation record), found {type(record).__name__}")
    audio = _record_audio(record, fail)
    turns = _turns(record, fail)
    assistant = next((c for role, c in reversed(turns) if role == "assistant" and c.strip()), None)
    solution = record.get("solution")
    if solution is not None and not isinstance(solution, str):
        fail(f"'solution' must be text, found {type(solution).__name__}")
    truth = None
    if solution is not None and solution.strip():
        answers = _FTGRPO_ANSWER.findall(solution)
        raw = answers[-1] if answers else solution
        truth = _ftgrpo_label(raw)
        if truth is None:
            fail(f"unknown label {raw.strip()!r} in 'solution' (expected real or fake)")
    if assistant is not None:
        completion, label = _rename_answers(assistant.strip(), fail)
        if label is None:
            label = _ftgrpo_label(assistant)   # a bare verdict (binary SFT): an answer-only target
            if label is None:
                fail("missing answer: the assistant turn has no <answer>real|fake</answer>")
            completion = f"<answer>{label}</answer>"
        if truth is not None and truth != label:
            fail(f"the assistant turn answers {label} but 'solution' says {truth}")
        think = _FTGRPO_THINK.search(completion)
        rationale = think.group(0) if think else ""
    elif truth is not None:
        label, completion, rationale = truth, f"<answer>{truth}</answer>", ""
    else:
        fail("missing answer: no assistant turn and no 'solution'")
    system = next((c for role, c in turns if role == "system" and c.strip()), None)
    prompt = next((c for role, c in reversed(turns) if role == "user"), None)
    return ConversationRow(os.path.normpath(root / audio), label, "-" if label == BONAFIDE else UNKNOWN_ATTACK,
                           FTGRPO_SOURCE, "-", subset, protocol=str(path), line=lineno, line_text=text,
                           completion=completion, rationale=rationale, system=system, prompt=prompt)


def parse_ftgrpo(path: Path, subset: str, root: Path) -> Iterator[ConversationRow]:
    """The rows of one FT-GRPO label file, audio paths resolved against `root` (absolute ones kept; import_corpus
    refuses any outside `root`); an audio listed twice fails, naming both records."""
    seen: dict[str, str] = {}
    for lineno, where, record, text in _json_records(path):
        row = _ftgrpo_row(path, lineno, where, record, text, subset, root)
        if row.path in seen:
            raise ProtocolError(path, (f"{where}: " if where else "") + f"audio {record['audios']!r:.80} listed "
                                      f"twice (first at {seen[row.path]})", lineno, text)
        seen[row.path] = row.origin
        yield row


def _ftgrpo_subset(path: Path, opts: ImportOptions) -> str:
    """--subset-name, else the one split named in the file name (`19la_train.json` -> train, `itw_test.json`
    -> eval), else a single --subset."""
    if opts.subset_name:
        return opts.subset_name
    hits = {SPLIT_ALIASES[t] for t in re.split(r"[._\-\s]+", path.name.lower()) if t in SPLIT_ALIASES}
    if len(hits) == 1:
        return hits.pop()
    if opts.subsets is not None and len(opts.subsets) == 1:
        return opts.subsets[0]
    raise ProtocolError(path, "cannot tell the split (train, dev, eval) of this label file from its name; pass "
                              "--subset-name")


def import_ftgrpo(root: Path, protocols: list[Path], opts: ImportOptions) -> Iterator[Utterance]:
    """label = the record's answer (real -> bonafide, fake -> spoof), attack `unknown` for spoof (the records
    do not name the generator), source `ftgrpo`, subset per label file; the rows carry their texts
    (`ConversationRow`) for `write_ftgrpo_texts`."""
    if not protocols:
        raise ProtocolError(root, "ftgrpo reads the paper's label files: pass each with --protocol FILE "
                                  "(.jsonl or .json, e.g. label/FT-GRPO/1-SFT/19la_train.json)")
    for proto in protocols:
        yield from parse_ftgrpo(proto, _ftgrpo_subset(proto, opts), root)


def ftgrpo_text_paths(manifest: str | Path) -> tuple[Path, Path, Path]:
    """The files written beside an ftgrpo manifest: rationales, system prompt, user prompt."""
    manifest = Path(manifest)
    return (manifest.with_suffix(".rationales.jsonl"), manifest.with_suffix(".system.txt"),
            manifest.with_suffix(".prompt.txt"))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _most_common(texts: list[str | None], path: Path, what: str, option_name: str) -> tuple[str | None, str]:
    """Write the most common of `texts` to `path` as a generation template; a line saying what was found."""
    counts = Counter(t for t in texts if t is not None)
    if not counts:
        path.unlink(missing_ok=True)   # a stale one from an earlier import would mislead
        return None, f"no {what} in the records"
    text, n = counts.most_common(1)[0]
    _write_atomic(path, _template_text(text) + "\n")
    others = f"; {len(counts) - 1} other {what}(s) in {sum(counts.values()) - n} records" if len(counts) > 1 else ""
    if len(counts) > 1:
        LOG.warning("%d different %ss in the records; %s has the most common one", len(counts), what, path)
    return text, f"{path}: the {what} of {n} of {len(texts)} records{others} (set generation.{option_name} to it)"


def write_ftgrpo_texts(rows: list[Utterance], manifest: str | Path) -> list[str]:
    """Beside the manifest: `<stem>.rationales.jsonl` (one record per row in the format of `spoofrl data
    rationales`, completion = the record's target with bonafide / spoof answers; no evidence was measured,
    so `claims` and `evidence` are empty), `<stem>.system.txt` and `<stem>.prompt.txt` (the most common
    system / user turn, as generation templates). Returns the lines to print."""
    import json
    manifest = Path(os.path.abspath(manifest))
    rationales, system_path, prompt_path = ftgrpo_text_paths(manifest)
    records = [r for r in rows if isinstance(r, ConversationRow)]
    lines = []
    for r in records:
        audio = r.path if os.path.isabs(r.path) else str(manifest.parent / r.path)
        lines.append(json.dumps({"utt": r.utt, "path": audio, "label": r.label, "subset": r.subset,
                                 "attack": r.attack, "seed": None, "rationale": r.rationale,
                                 "completion": r.completion, "claims": [], "evidence": [], "origin": r.origin},
                                ensure_ascii=False) + "\n")
    rationales.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(rationales, "".join(lines))
    reasoned = sum(1 for r in records if r.rationale)
    said = [(f"{rationales}: {len(records)} targets ({reasoned} with a <think> rationale, "
             f"{len(records) - reasoned} answer only; no measured evidence: claims and evidence are empty) for "
             f"generation.rationales")]
    said.append(_most_common([r.system for r in records], system_path, "system prompt", "system")[1])
    said.append(_most_common([r.prompt for r in records], prompt_path, "user prompt", "prompt")[1])
    return said


@dataclass(frozen=True)
class Importer:
    func: Callable[[Path, list[Path], ImportOptions], Iterable[Utterance]]
    summary: str
    # Subsets kept when the user names none. ASVspoof 2021 results are reported on the SUBSET `eval` only
    # (progress was the leaderboard phase, hidden the hidden-track analysis), so that is the default there.
    default_subsets: tuple[str, ...] | None = None
    # Files written beside the manifest from the imported rows (rows, manifest path) -> lines to print.
    companions: Callable[[list[Utterance], Path], list[str]] | None = None


# Adding a corpus: write one function above and add one entry here (its summary is the CLI's --help text).
IMPORTERS: dict[str, Importer] = {
    "asvspoof2019-la": Importer(import_asvspoof2019_la,
        "protocols ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt (found under --root or given with "
        "--protocol), audio ASVspoof2019_LA_<split>/flac/FILE.flac. attack A01-A19, source asvspoof2019-la, "
        "condition clean, subset train/dev/eval, speaker as an extra column."),
    "asvspoof2021-la": Importer(import_asvspoof2021_la,
        "keys/LA/CM/trial_metadata.txt, audio ASVspoof2021_LA_eval/flac. condition = codec (none, alaw, pstn, "
        "g722, ulaw, gsm, opus), subset = SUBSET column (eval/progress/hidden); transmission, trim, speaker as "
        "extra columns. Default: subset eval only (--subset all keeps progress and hidden).",
        ("eval",)),
    "asvspoof2021-df": Importer(import_asvspoof2021_df,
        "keys/DF/CM/trial_metadata.txt, audio ASVspoof2021_DF_eval/flac (any part layout). condition = "
        "compression (nocodec, low_mp3, ...), source = asvspoof / vcc2018 / vcc2020, subset = SUBSET column; "
        "vocoder, trim, speaker as extra columns. Default: subset eval only (--subset all keeps progress and "
        "hidden).", ("eval",)),
    "asvspoof5": Importer(import_asvspoof5,
        "ASVspoof5.train.tsv, ASVspoof5.dev.track_1.tsv, ASVspoof5.eval.track_1.tsv (space-separated), audio "
        "flac_T / flac_D / flac_E_eval. attack = ATTACK_LABEL, condition = CODEC ('-' = no codec), subset = "
        "split; ATTACK_TAG (attack_tag), gender, codec_q, codec_seed, speaker as extra columns."),
    "in-the-wild": Importer(import_in_the_wild,
        "release_in_the_wild/meta.csv (file,speaker,label; 'bona-fide' spelling), audio beside it. attack "
        "'unknown' for spoof, subset eval (or --subset-name), speaker as an extra column."),
    "folders": Importer(import_folders,
        "label from the nearest folder named real/bonafide/bona-fide/genuine or fake/spoof/spoofed/deepfake, "
        "at any depth (e.g. FakeOrReal). attack = first folder below the fake folder (else 'unknown'); subset "
        "from a train(ing)/dev/val(idation)/eval/test(ing) folder (else --subset-name or 'all'); source = first "
        "other folder above the label folder (else the root's name)."),
    "wavefake": Importer(import_wavefake,
        "one folder per generator ([generated_audio/]<generator>/): attack = generator, source = the corpus "
        "imitated (ljspeech / jsut). Fake only: add LJSpeech / JSUT with --bonafide-root. Subset 'all' (or "
        "--subset-name)."),
    "mlaad": Importer(import_mlaad,
        "[fake/]<language>/<model>/...: attack = model, source = language. Fake only: add M-AILABS with "
        "--bonafide-root (source = its locale's language, de_DE -> de). Subset 'all' (or --subset-name)."),
    "ftgrpo": Importer(import_ftgrpo,
        "FT-GRPO (arXiv 2601.02983) label files given with --protocol: ms-swift records (.jsonl or a .json "
        "array) with messages + audios (one path under --root, resolved against it) and/or solution. label = "
        "the <answer> (real -> bonafide, fake -> spoof), attack 'unknown' for fakes, source ftgrpo, subset from "
        "the file name (19la_train.json -> train) or --subset-name. Also writes beside the manifest "
        "STEM.rationales.jsonl (targets for generation.rationales, answers renamed), STEM.system.txt and "
        "STEM.prompt.txt.",
        companions=write_ftgrpo_texts),
}


# --------------------------------------------------------------------------------------------- driver

class _AudioLocator:
    """Finds audio at its expected path, else by file name anywhere under the root (other unpack layouts,
    e.g. DF eval parts); the index of the tree is built only if some expected path is missing."""

    def __init__(self, root: Path):
        self.root = root
        self._index: dict[str, list[Path]] | None = None

    def _build_index(self) -> dict[str, list[Path]]:
        index: dict[str, list[Path]] = {}
        for path in _walk_audio(self.root):
            index.setdefault(path.name, []).append(path)
            index.setdefault(path.stem, []).append(path)
        return index

    def find(self, expected: Path) -> Path | None:
        if expected.is_file():
            return expected
        if self._index is None:
            LOG.info("%s: audio not at the standard place; indexing the folder by file name", self.root)
            self._index = self._build_index()
        hits = self._index.get(expected.name) or self._index.get(expected.stem) or []
        if len(hits) > 1:  # prefer the copy under the expected folder name (e.g. ASVspoof2019_LA_train)
            hits = [h for h in hits if expected.parent.parent.name in h.parts] or hits
        if len(hits) > 1:
            raise ProtocolError(self.root, f"{expected.stem} found in several places: {hits[0]}, {hits[1]}; "
                                           f"point --root at one copy")
        return hits[0] if hits else None


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_audio_inside(audio: Path, row: Utterance, root: Path, also: Sequence[Path] = (),
                       real_folder: Callable[[str], str] = os.path.realpath) -> None:
    """The one check of the audio paths of every importer: `audio` must lie inside `root` (or one of `also`, the
    --bonafide-root folders a walked row may come from) once `..`, absolute paths and links are resolved, i.e.
    where reading it would really go. Else a ProtocolError naming the protocol line of the row (a walked file:
    the file itself). `real_folder` resolves links in a folder (import_corpus caches it: rows share folders)."""
    # the path as the OS would follow it (not normalised: `link/..` leaves where the link leads)
    raw = os.fspath(audio) if os.path.isabs(audio) else os.path.join(os.getcwd(), audio)
    real = os.path.normpath(os.path.join(real_folder(os.path.dirname(raw)), os.path.basename(raw)))
    if os.path.islink(real):
        real = os.path.realpath(real)
    folders = [root, *also]
    if any(_within(real, real_folder(str(folder))) for folder in folders):
        return
    named = os.path.normpath(raw)
    how = "is outside" if named == real else f"links to {real}, outside"
    where = f"--root {root}" + (f" and --bonafide-root {', '.join(map(str, also))}" if also else "")
    if isinstance(row, ProtocolRow):
        raise ProtocolError(row.protocol, f"audio {named} {how} {where}", row.line, row.line_text)
    raise ProtocolError(named, f"{how} {where}")


def _manifest_path(audio: Path, manifest_dir: Path | None) -> str:
    """Relative to the manifest's folder when the audio lies under it, else absolute (POSIX separators)."""
    audio = Path(os.path.abspath(audio))
    if manifest_dir is not None:
        try:
            return audio.relative_to(manifest_dir).as_posix()
        except ValueError:
            pass
    return audio.as_posix()


def _missing_listing(out: Path) -> Path:
    return out.with_name(out.name + ".missing.txt")


def _report_missing(missing: list[Path], total: int, root: Path, out: Path | None) -> None:
    listing = None
    if out is not None:
        listing = _missing_listing(out)
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{p}\n" for p in missing))
    shown = "; ".join(str(p) for p in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    where = f" (full list in {listing})" if listing else ""
    raise ProtocolError(root, f"{len(missing)} of {total} audio files missing: {shown}{more}{where}")


def _resolve_subsets(fmt: str, opts: ImportOptions) -> ImportOptions:
    """`all` -> every subset; no choice -> the format's default subsets."""
    if opts.subsets is not None and "all" in opts.subsets:
        return replace(opts, subsets=None)
    default = IMPORTERS[fmt].default_subsets
    if opts.subsets is None and default is not None:
        return replace(opts, subsets=list(default))
    return opts


def import_corpus(fmt: str, root: str | Path, *, protocols: Iterable[str | Path] = (),
                  options: ImportOptions | None = None, out: str | Path | None = None) -> list[Utterance]:
    """Rows of a corpus with every audio file located; paths relative to `out`'s folder where possible.

    Missing audio fails, listing all (in `<out>.missing.txt` when `out` is given). `out` is not written here.
    """
    if fmt not in IMPORTERS:
        raise ProtocolError(fmt, f"unknown corpus format; choose one of {', '.join(IMPORTERS)}")
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise ProtocolError(root, "corpus folder not found" if not root.exists() else "not a folder")
    protocols = [Path(p) for p in protocols]
    for p in protocols:
        _require_protocol_file(p)
    opts = _resolve_subsets(fmt, options or ImportOptions())
    out_path = Path(os.path.abspath(out)) if out is not None else None
    manifest_dir = out_path.parent if out_path is not None else None
    locator = _AudioLocator(root)
    rows, missing = [], []
    skipped: Counter[str] = Counter()
    seen: dict[str, int] = {}
    bonafide_roots = [Path(os.path.abspath(b)) for b in opts.bonafide_roots]
    real_folder = functools.lru_cache(maxsize=None)(os.path.realpath)

    def check_inside(audio: Path, u: Utterance) -> None:
        # a protocol names audio under --root only; walked bona fide folders hold their own audio
        check_audio_inside(audio, u, root, () if isinstance(u, ProtocolRow) else bonafide_roots, real_folder)

    from spoofrl.log import progress
    for u in progress(IMPORTERS[fmt].func(root, protocols, opts), desc=f"import {fmt}", unit="file"):
        # `..` resolved as the manifest will write it, so that the path checked is the path read later
        expected = Path(os.path.abspath(u.path))
        check_inside(expected, u)   # every row, even of skipped subsets: the line is wrong whatever is kept
        if not _wanted(opts, u.subset):
            skipped[u.subset] += 1
            continue
        audio = locator.find(expected)
        if audio is None:
            missing.append(expected)
            continue
        if audio != expected:   # found by name elsewhere under --root, maybe through a link
            check_inside(audio, u)
        u.path = _manifest_path(audio, manifest_dir)
        if u.path in seen:
            raise ProtocolError(root, f"{u.path} would appear twice in the manifest")
        seen[u.path] = len(rows)
        rows.append(u)
    if skipped:
        LOG.info("%s: kept subset(s) %s; skipped %s (--subset all keeps every subset)", fmt, ", ".join(opts.subsets),
                 ", ".join(f"{n} {name}" for name, n in sorted(skipped.items())))
    if missing:
        _report_missing(missing, len(rows) + len(missing), root, out_path)
    if out_path is not None:
        _missing_listing(out_path).unlink(missing_ok=True)  # a listing left by an earlier failed run is stale
    _check_subsets_present(rows, opts, root, skipped)
    return rows


def _check_subsets_present(rows: list[Utterance], opts: ImportOptions, root: Path, skipped: Counter) -> None:
    others = f"; the protocol has {', '.join(f'{n} {name}' for name, n in sorted(skipped.items()))}" if skipped else ""
    if not rows:
        raise ProtocolError(root, "no utterances imported" + (f" for subset(s) {', '.join(opts.subsets)}{others}"
                                                              if opts.subsets else ""))
    if opts.subsets is not None:
        absent = sorted(set(opts.subsets) - {r.subset for r in rows})
        if absent:
            raise ProtocolError(root, f"no utterances in subset(s) {', '.join(absent)} "
                                      f"(found: {', '.join(sorted({r.subset for r in rows}))}{others})")
