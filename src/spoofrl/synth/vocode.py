"""`spoofrl vocode`: spoofed copies of a user's bona fide recordings with the benchmark's attacks.

A user with only real recordings gets training data for a detector: every bona fide file is copied
through each chosen attack (copy-synthesis), and a manifest pairs each spoof with its original (`origin`
column). Bad inputs never stop the run silently: unreadable files are listed by name at the end (the
others are processed and the manifest is written first), then the command fails.
"""
from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

BLOCK_SECONDS = 20.0   # long recordings are vocoded in blocks (bounded memory and time per call)
FADE_SECONDS = 0.05    # cross-fade between blocks
MIN_SECONDS = 0.1      # shorter inputs hold too few analysis frames for the vocoders


@dataclass
class Job:
    """One input recording: where it is, the key its spoofs are filed under, its manifest row."""
    row: Utterance
    key: str

    @property
    def path(self) -> Path:
        return self.row.audio_path


@dataclass
class VocodeReport:
    out_dir: Path
    inputs: int
    spoofs_written: int
    spoofs_skipped: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)     # malformed manifest lines ("file:line: reason")


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

def _key_for(rel: Path, used: set[str]) -> str:
    """File key for spoofs of `rel`: its relative path without suffix (suffix kept if two files clash)."""
    key = rel.with_suffix("").as_posix()
    if key in used:
        key = rel.as_posix().replace(".", "_")
    used.add(key)
    return key


def collect_jobs(inp: str | Path, subset: str,
                 exclude: Path | None = None) -> tuple[list[Utterance], list[Job], list[ProtocolError]]:
    """(rows to keep in the output manifest, bona fide recordings to vocode, malformed manifest lines)
    from a folder, a manifest or one audio file. Files under `exclude` (the output folder, when it lies
    inside the input folder) are not inputs: a rerun must not vocode its own spoofs."""
    inp = Path(inp)
    if not inp.exists():
        raise SpoofrlError(f"{inp}: not found (give a folder of audio files or a manifest .csv)")
    used: set[str] = set()
    if inp.is_file() and inp.suffix.lower() == ".csv":
        # a user's manifest with a few bad lines still gets its good rows vocoded; the bad ones are reported
        bad_lines: list[ProtocolError] = []
        rows = read_manifest(inp, bad_lines=bad_lines)
        kept = []
        jobs = []
        for r in rows:
            absolute = Utterance(path=str(r.audio_path.resolve()), label=r.label, attack=r.attack, source=r.source,
                                 condition=r.condition, subset=r.subset, extra=dict(r.extra))
            kept.append(absolute)
            if r.label == BONAFIDE:
                rel = Path(r.path.lstrip("/"))
                jobs.append(Job(absolute, _key_for(rel, used)))
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
        row = Utterance(path=str(f.resolve()), label=BONAFIDE, source=root.resolve().name or "user",
                        condition="-", subset=subset)
        kept.append(row)
        jobs.append(Job(row, _key_for(f.relative_to(root), used)))
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


def vocode(inp: str | Path, out_dir: str | Path, attacks: list[str], seed: int = 0, workers: int = 1,
           subset: str = "train", show_progress: bool = True) -> VocodeReport:
    """Vocode every bona fide input with every attack into `out_dir`; write `out_dir/manifest.csv`."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; --out must be a folder")
    kept, jobs, bad_lines = collect_jobs(inp, subset, exclude=out)
    out.mkdir(parents=True, exist_ok=True)
    args = [(job, attacks, str(out), seed) for job in jobs]
    from spoofrl.log import progress
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) if workers > 1 else None
    results = pool.map(_process_star, args) if pool is not None else map(_process_star, args)
    report = VocodeReport(out, len(jobs), 0, 0, bad_lines=[str(e) for e in bad_lines])
    for line_error in bad_lines:
        log.warning("skipped %s", line_error)
    bad: set[str] = set()
    try:
        for job, (written, skipped, error) in progress(zip(jobs, results), desc="vocode", total=len(jobs), unit="file",
                                                       disable=None if show_progress else True):
            report.spoofs_written += written
            report.spoofs_skipped += skipped
            if error is not None:
                log.debug("%s: %s", job.path, error)
                report.failed.append((str(job.path), error))
                bad.add(job.row.path)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    rows = [r for r in kept if r.path not in bad]
    for job in jobs:
        if job.row.path in bad:
            continue
        for name in attacks:
            rows.append(Utterance(path=spoof_path(out, name, job.key).relative_to(out).as_posix(), label=SPOOF,
                                  attack=name, source=job.row.source, condition=job.row.condition,
                                  subset=job.row.subset, extra={**job.row.extra, "origin": job.row.path}))
    for r in rows:
        r.extra.setdefault("origin", "-")
    write_manifest(rows, out / "manifest.csv")
    return report
