"""The one manifest format of spoofrl.

CSV with header `path,label,attack,source,condition,subset`:
- `path`: absolute, or relative to the manifest's folder;
- `label`: `bonafide` or `spoof`;
- `attack`: attack / generator id, `-` for bona fide;
- `source`: where the audio comes from (corpus, speaker source, TTS voice, ...);
- `condition`: channel / codec condition (`clean`, `mp3`, `alaw`, ...; `-` if unknown);
- `subset`: split name (`train`, `dev`, `eval`, `posttrain`, `ood_attack`, ...).
Extra columns are kept in `Utterance.extra`. The utterance id used in score files is `path` as written.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from spoofrl.errors import ProtocolError

COLUMNS = ["path", "label", "attack", "source", "condition", "subset"]
LABELS = ("bonafide", "spoof")
BONAFIDE, SPOOF = "bonafide", "spoof"
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


def read_manifest(path: str | Path, subsets: Iterable[str] | None = None) -> list[Utterance]:
    """Read a manifest, optionally keeping only some subsets. Errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(path, "manifest not found")
    wanted = set(subsets) if subsets is not None else None
    rows: list[Utterance] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ProtocolError(path, "empty manifest (no header)") from None
        header = [h.strip() for h in header]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ProtocolError(path, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                      f"(header must include {','.join(COLUMNS)})", line=1, text=",".join(header))
        idx = {c: header.index(c) for c in header}
        for lineno, cells in enumerate(reader, start=2):
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise ProtocolError(path, f"expected {len(header)} fields, found {len(cells)}", lineno, ",".join(cells))
            rec = {c: cells[i].strip() for c, i in idx.items()}
            if rec["label"] not in LABELS:
                raise ProtocolError(path, f"label must be 'bonafide' or 'spoof', found {rec['label']!r}", lineno, ",".join(cells))
            if not rec["path"]:
                raise ProtocolError(path, "empty path", lineno, ",".join(cells))
            if wanted is not None and rec["subset"] not in wanted:
                continue
            extra = {c: v for c, v in rec.items() if c not in COLUMNS}
            rows.append(Utterance(**{c: rec[c] for c in COLUMNS}, extra=extra, root=path.parent.resolve()))
    if wanted is not None:
        present = {r.subset for r in rows}
        absent = sorted(wanted - present)
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
