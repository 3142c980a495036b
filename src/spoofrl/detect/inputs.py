"""Turn the PATH arguments of `spoofrl detect` (files, folders, globs) into a list of files to score.

Files named explicitly are tried whatever their suffix (the decoder decides); inside folders only files
with a known audio suffix are taken, recursively, in sorted order. A path that matches nothing is kept
as an input of its own so it is reported as an error instead of being silently dropped.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from spoofrl.audio import AUDIO_SUFFIXES

GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputFile:
    path: str
    problem: str | None = None  # set when the argument itself cannot be scored (no match, empty folder)


def _audio_files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _expand_one(arg: str) -> list[InputFile]:
    path = Path(arg)
    if path.is_dir():
        found = _audio_files_under(path)
        if not found:
            known = ", ".join(sorted(AUDIO_SUFFIXES))
            return [InputFile(arg, f"folder contains no audio files (looked recursively for {known})")]
        return [InputFile(str(p)) for p in found]
    if path.exists() or not (GLOB_CHARS & set(arg)):
        return [InputFile(arg)]  # a missing plain path is reported by the decoder as "file not found"
    matches = sorted(glob.glob(arg, recursive=True))
    if not matches:
        return [InputFile(arg, "pattern matched no files")]
    out: list[InputFile] = []
    for match in matches:
        out.extend(_expand_one(match) if Path(match).is_dir() else [InputFile(match)])
    return out


def expand_inputs(args: list[str]) -> list[InputFile]:
    """Files to score, in argument order, each listed once."""
    seen: set[str] = set()
    files: list[InputFile] = []
    for arg in args:
        for item in _expand_one(arg):
            key = str(Path(item.path).resolve()) if item.problem is None else f"?{item.path}"
            if key not in seen:
                seen.add(key)
                files.append(item)
    return files
