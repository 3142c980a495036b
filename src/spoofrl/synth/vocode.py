"""`spoofrl vocode`: spoofed copies of a user's bona fide recordings with the benchmark's attacks.

A user with only real recordings gets training data for a detector: every bona fide file is copied
through each chosen attack (copy-synthesis), and a manifest pairs each spoof with its original (`origin`
column). Bad inputs never stop the run silently: unreadable files are listed by name at the end (the
others are processed and the manifest is written first), then the command fails.

Failures: every unusable input and malformed manifest line is named (the name the user gave: the path as
listed in the manifest, or as found in the folder, never a symlink's target) and also written to
`OUT/failures.tsv`. A failed file found in a folder gets no rows; a failed bona fide row of a manifest is
kept as it was, marked with its reason in a `vocode_error` column (`-` on the other rows), since every row
of a user's manifest is kept.

Output paths: spoofs go to `OUT/audio/<attack>/<key>.flac`, the key made from the input's path with every
`..`, `.` and empty part dropped (`/` and `\\` both separate parts; control characters and `:` become
`_`), so a key never leaves its folder; keys that clash are disambiguated in input order. As a last guard
every file written (spoofs, their temporary `.part` files, the manifest, failures.tsv) must resolve inside
OUT (through any symlinks there), else it is refused.
"""
from __future__ import annotations

import csv
import logging
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from spoofrl.audio import AUDIO_SUFFIXES, load_audio
from spoofrl.data.manifest import BONAFIDE, SPOOF, Utterance, read_manifest, write_manifest
from spoofrl.errors import AudioError, ConfigError, ProtocolError, SpoofrlError
from spoofrl.synth.attacks import ATTACKS, get_attack
from spoofrl.synth.generate import write_flac_atomic
from spoofrl.synth.sources import SR
from spoofrl.synth.splits import rng_for
from spoofrl.workers import pool_initializer  # workers die with the build (kill -9 leaves no orphans)


log = logging.getLogger(__name__)

BLOCK_SECONDS = 20.0   # long recordings are vocoded in blocks (bounded memory and time per call)
FADE_SECONDS = 0.05    # cross-fade between blocks
MIN_SECONDS = 0.1      # shorter inputs hold too few analysis frames for the vocoders


FAILURES_FILE = "failures.tsv"
ERROR_COLUMN = "vocode_error"   # reason a kept manifest row was not vocoded ('-' when it was)


@dataclass
class Job:
    """One input recording: its manifest row (the very object of the kept rows), the key its spoofs are filed
    under, and the name the user gave it (the path as listed in the manifest / as found in the folder)."""
    row: Utterance
    key: str
    name: str

    @property
    def path(self) -> Path:
        return self.row.audio_path


@dataclass
class VocodeReport:
    out_dir: Path
    inputs: int
    spoofs_written: int
    spoofs_skipped: int
    failed: list[tuple[str, str]] = field(default_factory=list)   # (input as the user named it, reason)
    bad_lines: list[str] = field(default_factory=list)     # malformed manifest lines ("file:line: reason")
    failures_file: Path | None = None                      # OUT/failures.tsv when something failed


def parse_attacks(text: str) -> list[str]:
    """'all' or a comma-separated list of attack ids; unknown ids are refused with the known ones listed."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError("--attacks is empty; give ids such as world,griffinlim or 'all'")
    if names == ["all"]:
        return list(ATTACKS)
    for name in names:
        get_attack(name)
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------ inputs

_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f:]")


def safe_parts(path: str) -> list[str]:
    """The parts of `path` that name folders and a file below an output folder: `/` and `\\` both split,
    empty, `.` and `..` parts are dropped (an absolute path becomes relative), control characters (NUL
    included) and `:` (drive letters, streams) become `_`. Never empty: `input` if nothing is left."""
    parts = [_UNSAFE_CHARS.sub("_", part) for part in re.split(r"[/\\]", path)]
    parts = [part for part in parts if part not in ("", ".", "..")]
    return parts or ["input"]


class KeyMaker:
    """Unique, safe spoof keys (relative paths without suffix) in input order.

    A key is the input's safe path without its suffix; if that is taken, the suffix is kept (dots as `_`),
    then `~2`, `~3`, ... is appended. Keys are compared case-insensitively (case-insensitive file systems),
    and a key whose file would be another key's folder (or the other way round) counts as taken."""

    def __init__(self):
        self.keys: set[str] = set()
        self.files: set[str] = set()
        self.dirs: set[str] = set()

    def _free(self, key: str) -> bool:
        low = key.casefold()
        parts = low.split("/")
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
        return (low not in self.keys and f"{low}.flac" not in self.dirs
                and not any(d in self.files for d in prefixes))

    def key_for(self, path: str) -> str:
        parts = safe_parts(path)
        stem = Path(parts[-1]).stem or parts[-1]
        plain = "/".join(parts[:-1] + [stem])
        full = "/".join(parts).replace(".", "_")
        candidates = [plain, full] + [f"{full}~{n}" for n in range(2, len(self.keys) + 3)]
        key = next(k for k in candidates if self._free(k))
        low = key.casefold()
        self.keys.add(low)
        self.files.add(f"{low}.flac")
        parts = low.split("/")
        self.dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return key


def _absolute(path: Path) -> Path:
    """Absolute path naming the file itself: its folders resolved, but a symlinked file keeps its own name."""
    path = path if path.is_absolute() else Path.cwd() / path
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def inside(out_real: Path, path: Path) -> bool:
    """Whether `path` resolves (through any symlinks) to a place inside the resolved output folder."""
    return path.resolve().is_relative_to(out_real)


def _checked(out: Path, path: Path) -> Path:
    """`path` if it and its temporary twin resolve inside `out`, else a refusal naming both."""
    out_real = out.resolve()
    for candidate in (path, path.with_name(path.name + ".tmp")):
        if not inside(out_real, candidate):
            raise SpoofrlError(f"{candidate}: resolves to {candidate.resolve()}, outside --out {out_real}; "
                               f"refusing to write it (remove the symlink)")
    return path


def collect_jobs(inp: str | Path, subset: str,
                 exclude: Path | None = None) -> tuple[list[Utterance], list[Job], list[ProtocolError]]:
    """(rows to keep in the output manifest, bona fide recordings to vocode, malformed manifest lines)
    from a folder, a manifest or one audio file. Files under `exclude` (the output folder, when it lies
    inside the input folder) are not inputs: a rerun must not vocode its own spoofs."""
    inp = Path(inp)
    if not inp.exists():
        raise SpoofrlError(f"{inp}: not found (give a folder of audio files or a manifest .csv)")
    keys = KeyMaker()
    if inp.is_file() and inp.suffix.lower() == ".csv":
        # a user's manifest with a few bad lines still gets its good rows vocoded; the bad ones are reported
        bad_lines: list[ProtocolError] = []
        rows = read_manifest(inp, bad_lines=bad_lines)
        kept = []
        jobs = []
        for r in rows:
            extra = {k: v for k, v in r.extra.items() if k != ERROR_COLUMN}  # an earlier run's marks are stale
            absolute = Utterance(path=str(_absolute(r.audio_path)), label=r.label, attack=r.attack, source=r.source,
                                 condition=r.condition, subset=r.subset, extra=extra)
            kept.append(absolute)
            if r.label == BONAFIDE:
                jobs.append(Job(absolute, keys.key_for(r.path), r.path))
        if not jobs:
            detail = f" ({len(bad_lines)} malformed line{'s' * (len(bad_lines) > 1)}, first: {bad_lines[0]})" if bad_lines else ""
            raise SpoofrlError(f"{inp}: no bona fide rows to vocode{detail}")
        return kept, jobs, bad_lines
    if inp.is_file():
        files, root = [inp], inp.parent
    else:
        skip = exclude.resolve() if exclude is not None else None
        files = sorted(p for p in inp.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                       and not (skip is not None and p.resolve().is_relative_to(skip)))
        root = inp
        if not files:
            raise SpoofrlError(f"{inp}: no audio files found (looked for {', '.join(sorted(AUDIO_SUFFIXES))})")
    kept, jobs = [], []
    for f in files:
        row = Utterance(path=str(_absolute(f)), label=BONAFIDE, source=root.resolve().name or "user",
                        condition="-", subset=subset)
        kept.append(row)
        jobs.append(Job(row, keys.key_for(f.relative_to(root).as_posix()), str(f)))
    return kept, jobs, []


# ------------------------------------------------------------------------------------------ processing

def apply_blockwise(attack, x: np.ndarray, sr: int, rng: np.random.Generator, block_s: float = BLOCK_SECONDS,
                    fade_s: float = FADE_SECONDS) -> np.ndarray:
    """Run `attack` on blocks of at most `block_s` seconds, joined by linear cross-fades."""
    block, fade = int(block_s * sr), int(fade_s * sr)
    if len(x) <= block:
        return attack(x, sr, rng)
    out = np.zeros(len(x))
    weight = np.zeros(len(x))
    start = 0
    while start < len(x):
        end = min(start + block, len(x))
        y = attack(x[start:end], sr, rng)
        w = np.ones(end - start)
        ramp = min(fade, (end - start) // 2)
        if start > 0:
            w[:ramp] = np.linspace(0, 1, ramp, endpoint=False)
        if end < len(x):
            w[-ramp:] = np.linspace(1, 0, ramp, endpoint=False)
        out[start:end] += y * w
        weight[start:end] += w
        if end == len(x):
            break
        start = end - fade
    return out / np.maximum(weight, 1e-6)


def spoof_path(out_dir: Path, attack: str, key: str) -> Path:
    return out_dir / "audio" / attack / f"{key}.flac"


def process_job(job: Job, attacks: list[str], out_dir: str, seed: int) -> tuple[int, int, str | None]:
    """Vocode one recording with every attack. Returns (written, skipped, error message or None)."""
    out = Path(out_dir)
    out_real = out.resolve()
    for name in attacks:  # last guard: never write through a symlink (or a key) that leads out of OUT
        target = spoof_path(out, name, job.key)
        for candidate in (target, target.with_name(target.name + ".part")):
            if not inside(out_real, candidate):
                return 0, 0, (f"refusing to write {candidate}: it resolves to {candidate.resolve()}, outside "
                              f"--out {out_real}")
    todo = [a for a in attacks if not spoof_path(out, a, job.key).is_file()]
    if not todo:
        return 0, len(attacks), None
    try:
        x = load_audio(job.path, SR).astype(np.float64)
    except AudioError as err:
        return 0, 0, err.reason
    if len(x) < MIN_SECONDS * SR:
        return 0, 0, f"too short to vocode ({len(x) / SR:.3f} s; at least {MIN_SECONDS} s)"
    written = 0
    for name in todo:
        rng = rng_for(seed, f"{name}/{job.key}")
        try:
            y = apply_blockwise(ATTACKS[name], x, SR, rng)
        except SpoofrlError as err:  # e.g. a codec missing from this ffmpeg build
            return written, len(attacks) - len(todo), f"attack '{name}' failed: {err}"
        write_flac_atomic(spoof_path(out, name, job.key), y)
        written += 1
    return written, len(attacks) - len(todo), None


def _process_star(args):
    return process_job(*args)


def _write_failures(path: Path, failed: list[tuple[str, str]], bad_lines: list[ProtocolError]) -> None:
    """OUT/failures.tsv: one row per failed input (`input`, name, reason) and malformed manifest line
    (`manifest_line`, file:line, reason); tab-separated, quoted where a name holds a tab or newline."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["kind", "path", "reason"])
        w.writerows(("input", name, why) for name, why in failed)
        w.writerows(("manifest_line", f"{e.path}:{e.line}" if e.line is not None else e.path, e.reason)
                    for e in bad_lines)
    tmp.replace(path)


def vocode(inp: str | Path, out_dir: str | Path, attacks: list[str], seed: int = 0, workers: int = 1,
           subset: str = "train", show_progress: bool = True) -> VocodeReport:
    """Vocode every bona fide input with every attack into `out_dir`; write `out_dir/manifest.csv` (and
    `out_dir/failures.tsv` listing every failure, when there is one)."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; --out must be a folder")
    kept, jobs, bad_lines = collect_jobs(inp, subset, exclude=out)
    from_manifest = Path(inp).suffix.lower() == ".csv" and Path(inp).is_file()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = _checked(out, out / "manifest.csv")       # refused before any work, and again at the end
    failures_path = _checked(out, out / FAILURES_FILE)
    args = [(job, attacks, str(out), seed) for job in jobs]
    from spoofrl.log import progress
    pool = (ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"), **pool_initializer())
            if workers > 1 else None)
    results = pool.map(_process_star, args) if pool is not None else map(_process_star, args)
    report = VocodeReport(out, len(jobs), 0, 0, bad_lines=[str(e) for e in bad_lines])
    for line_error in bad_lines:
        log.warning("skipped %s", line_error)
    errors: dict[int, str] = {}    # id(job.row) -> reason
    try:
        for job, (written, skipped, error) in progress(zip(jobs, results), desc="vocode", total=len(jobs), unit="file",
                                                       disable=None if show_progress else True):
            report.spoofs_written += written
            report.spoofs_skipped += skipped
            if error is not None:
                log.debug("%s: %s", job.name, error)
                report.failed.append((job.name, error))
                errors[id(job.row)] = error
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if from_manifest:
        # every row of the user's manifest is kept; a bona fide row that could not be vocoded says why
        rows = list(kept)
        for r in rows:
            if id(r) in errors:
                r.extra[ERROR_COLUMN] = errors[id(r)]
    else:
        rows = [r for r in kept if id(r) not in errors]   # an unusable file found in a folder gets no row
    for job in jobs:
        if id(job.row) in errors:
            continue
        for name in attacks:
            rows.append(Utterance(path=spoof_path(out, name, job.key).relative_to(out).as_posix(), label=SPOOF,
                                  attack=name, source=job.row.source, condition=job.row.condition,
                                  subset=job.row.subset, extra={**job.row.extra, "origin": job.row.path}))
    for r in rows:
        r.extra.setdefault("origin", "-")
        if from_manifest and errors:
            r.extra.setdefault(ERROR_COLUMN, "-")     # the column is there only when some row failed
    if report.failed or bad_lines:
        _write_failures(_checked(out, failures_path), report.failed, bad_lines)
        report.failures_file = failures_path
    else:
        _checked(out, failures_path).unlink(missing_ok=True)   # a listing left by an earlier failed run is stale
    write_manifest(rows, _checked(out, manifest_path))
    return report
