"""`spoofrl data synth`: turn the plan of a preset into FLAC files, manifest.csv, meta.jsonl and README.md.

Deterministic: every random choice is drawn either in the plan (one generator per subset / utterance,
seeded by seed + name) or from a generator seeded by seed + file id, so the worker count, the order of
execution and interruptions do not change a single sample.

Resumable: each file is written to a temporary name and renamed when complete; a rerun skips files that
exist. The manifest is written last, after every file exists, so a folder with a manifest is complete.
"""
from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from spoofrl.data.manifest import Utterance, write_manifest
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.synth import dsp
from spoofrl.synth.attacks import ATTACKS, Attack
from spoofrl.synth.channels import CHANNELS, Channel, _coloured_noise
from spoofrl.codecs import CodecRequest, codec_roundtrip_many
from spoofrl.synth.sources import SR, Voice, check_voices, optional_voice_problems, synthesize, trim_silence
from spoofrl.synth.splits import (PRESETS, BasePlan, ItemPlan, check_design, check_espeak_pools, make_plan,
                                  optional_voices, rng_for)
from spoofrl.workers import pool_initializer  # workers die with the build (kill -9 leaves no orphans)


log = logging.getLogger(__name__)

STAMP = "synth.json"
SOURCE_LEVEL_DB = -26.0        # active level the raw synthesizer output is brought to before anything else
BASES_PER_CHUNK = 10         # per worker call; codec round trips of a chunk share two ffmpeg processes


@dataclass
class SynthReport:
    out_dir: Path
    files: int
    written: int
    skipped: int
    seconds: float
    audio_seconds: float
    fallbacks: int = 0           # spoofs made with a fallback voice (design real)
    left_out_clips: int = 0      # clips left out because nothing could be made of them (design real)


# ------------------------------------------------------------------------------------------ signals

def prepare_source(raw: np.ndarray, base: BasePlan, seed: int) -> np.ndarray:
    """Raw synthesizer output -> the bona fide 'recording': trimmed, levelled, with the planned leading
    and trailing silence and a faint noise floor (synthesizers emit exact digital silence, which would
    otherwise separate untouched bona fide audio from vocoded audio for a trivial reason)."""
    rng = rng_for(seed, base.base_id + "/source")
    x = dsp.set_level(trim_silence(raw, SR), SR, SOURCE_LEVEL_DB)
    x = np.concatenate([np.zeros(int(base.lead_s * SR)), x, np.zeros(int(base.trail_s * SR))])
    floor = _coloured_noise(len(x), rng, base.floor_slope, SR) * 10 ** (base.floor_db / 20)
    return x + floor


def render_items(jobs: list[tuple[ItemPlan, np.ndarray]], seed: int) -> list[np.ndarray]:
    """Bona fide copies or copy-synthesis spoofs of their sources, through the planned channels, at the
    planned levels. Codec attacks and codec channels of all jobs go through ffmpeg together (two processes
    per stage instead of two per file); results equal those of rendering each job alone."""
    rngs = [rng_for(seed, item.item_id) for item, _ in jobs]
    sources = [src for _, src in jobs]
    stage: list[np.ndarray | None] = [None] * len(jobs)
    batch: list[tuple[int, CodecRequest]] = []
    for k, (item, src) in enumerate(jobs):
        attack = ATTACKS[item.attack] if item.attack != "-" else None
        if attack is None:
            stage[k] = src
        elif attack.codec is not None:
            batch.append((k, attack.codec(item.attack_params)))
        else:
            stage[k] = attack(src, SR, rngs[k], **item.attack_params)
    for (k, _), y in zip(batch, codec_roundtrip_many([sources[k] for k, _ in batch], SR, [r for _, r in batch])):
        stage[k] = Attack.finish(sources[k], y, SR)
    attacked = list(stage)
    batch = []
    for k, (item, _) in enumerate(jobs):
        channel = CHANNELS[item.channel]
        if channel.codec is not None:
            batch.append((k, channel.codec(item.channel_params)))
        else:
            stage[k] = channel(attacked[k], SR, rngs[k], **item.channel_params)
    for (k, _), y in zip(batch, codec_roundtrip_many([attacked[k] for k, _ in batch], SR, [r for _, r in batch])):
        stage[k] = Channel.finish(attacked[k], y)
    return [dsp.set_level(y, SR, item.level_db) for y, (item, _) in zip(stage, jobs)]


def render_item(item: ItemPlan, source: np.ndarray, seed: int) -> np.ndarray:
    """One file's audio (see `render_items`)."""
    return render_items([(item, source)], seed)[0]


def write_flac_atomic(path: Path, x: np.ndarray, sr: int = SR) -> None:
    """Write 16-bit FLAC under a temporary name, then rename: a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(x, -1.0, 1.0).astype(np.float32), sr, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ work units

def _chunks(plan: list[BasePlan]) -> list[list[BasePlan]]:
    """Groups of utterances for one worker call; festival utterances are grouped by voice so that one
    festival process serves a whole group."""
    groups: dict[tuple[str, str], list[BasePlan]] = {}
    for base in plan:
        key = (base.subset, base.voice.id if base.voice.engine == "festival" else "other")
        groups.setdefault(key, []).append(base)
    chunks = []
    for bases in groups.values():
        for i in range(0, len(bases), BASES_PER_CHUNK):
            chunks.append(bases[i:i + BASES_PER_CHUNK])
    return chunks


def run_chunk(bases: list[BasePlan], seed: int, out_dir: str) -> tuple[int, int]:
    """Make every missing file of `bases`. Returns (written, skipped)."""
    out = Path(out_dir)
    todo = [b for b in bases if any(not (out / it.rel_path).is_file() for it in b.items)]
    skipped = sum(len(b.items) for b in bases if b not in todo)
    if not todo:
        return 0, skipped
    try:
        raws = synthesize([(b.voice, b.text, b.prosody) for b in todo])
    except SpoofrlError as err:
        raise SpoofrlError(f"{todo[0].base_id}..: {err}") from None
    jobs = []
    for base, raw in zip(todo, raws):
        source = prepare_source(raw, base, seed)
        jobs += [(item, source) for item in base.items if not (out / item.rel_path).is_file()]
    skipped += sum(len(b.items) for b in todo) - len(jobs)
    try:
        audio = render_items(jobs, seed)
    except SpoofrlError as err:
        raise SpoofrlError(f"{jobs[0][0].item_id}..{jobs[-1][0].item_id}: {err}") from None
    for (item, _), y in zip(jobs, audio):
        write_flac_atomic(out / item.rel_path, y)
    return len(jobs), skipped


def _run_chunk_star(args) -> tuple[int, int]:
    return run_chunk(*args)


# ------------------------------------------------------------------------------------------ outputs

def manifest_rows(plan: list[BasePlan]) -> list[Utterance]:
    rows = []
    for base in plan:
        for item in base.items:
            rows.append(Utterance(path=item.rel_path, label=item.label, attack=item.attack, source=base.voice.id,
                                  condition=item.channel, subset=base.subset,
                                  extra={"speaker": base.voice.speaker, "base": base.base_id, "text": base.text}))
    return rows


def write_meta(plan: list[BasePlan], path: Path) -> None:
    """One JSON line per file with every parameter that made it (voice, prosody, attack, channel, level)."""
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as fh:
        for base in plan:
            for item in base.items:
                fh.write(json.dumps({
                    "path": item.rel_path, "label": item.label, "subset": base.subset, "base": base.base_id,
                    "engine": base.voice.engine, "voice": base.voice.name, "speaker": base.voice.speaker,
                    "text": base.text, "style": base.style, "rate": base.prosody.rate, "pitch": base.prosody.pitch,
                    "lead_s": base.lead_s, "trail_s": base.trail_s, "floor_db": base.floor_db,
                    "attack": item.attack, "attack_params": item.attack_params,
                    "channel": item.channel, "channel_params": item.channel_params, "level_db": item.level_db,
                }, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_stamp(out: Path) -> dict | None:
    """The synth.json of a benchmark folder (what `spoofrl data synth` made it with), None when it has none; an
    unreadable one is a one-line error naming it."""
    stamp = out / STAMP
    if not stamp.is_file():
        return None
    try:
        made = json.loads(stamp.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        made = None
    if not isinstance(made, dict):
        raise ConfigError(f"{stamp}: unreadable; delete the folder or choose another --out") from None
    return made


def read_stamp(out: Path, design: str, hint: str) -> dict | None:
    """The synth.json of a benchmark folder made with `design`, or None for a new or empty folder; a file, an
    unreadable stamp, another design or a foreign non-empty folder are refused (both designs use this).
    `hint` tells how to finish a folder of the other design."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; --out must be a folder")
    made = load_stamp(out)
    if made is None:
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(f"{out} is not empty and was not made by 'spoofrl data synth'; choose an empty or new "
                              f"folder")
        return None
    if made.get("design", "v1") != design:
        raise ConfigError(f"{out} holds a benchmark of design '{made.get('design', 'v1')}'; {hint}")
    return made


def write_stamp(out: Path, stamp: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")


def _check_stamp(out: Path, preset: str, seed: int, left_out: list[str]) -> None:
    """Refuse to mix two different benchmarks in one folder (other preset, seed or set of optional voices)."""
    made = read_stamp(out, "v1", "rerun without --design v1 (real is the default) to finish it, or choose "
                                 "another --out")
    if made is not None:
        if made.get("preset") != preset or made.get("seed") != seed:
            raise ConfigError(f"{out} holds a benchmark made with --preset {made.get('preset')} --seed {made.get('seed')}; "
                              f"rerun with those options to finish it, or choose another --out")
        if sorted(made.get("left_out", [])) != left_out:
            raise ConfigError(f"{out} was made with optional voices left out: {', '.join(made.get('left_out', [])) or 'none'}; "
                              f"now left out: {', '.join(left_out) or 'none'}. The files would differ: install or remove "
                              f"the optional sources to match, or choose another --out")
    from spoofrl import __version__
    write_stamp(out, {"preset": preset, "seed": seed, "left_out": left_out, "spoofrl": __version__})


def unavailable_optional_voices() -> dict[Voice, str]:
    """Optional voices that cannot be used here, each with the reason, each logged as a warning: the
    benchmark is made without them (never silently)."""
    problems = optional_voice_problems(optional_voices())
    for voice, why in sorted(problems.items(), key=lambda kv: kv[0].id):
        log.warning("optional speech source %s left out: %s", voice.id, why)
    return problems


def generate(out_dir: str | Path, preset: str = "demo", seed: int = 0, workers: int = 1,
             show_progress: bool = True) -> SynthReport:
    """Make (or finish making) the benchmark `preset` with `seed` in `out_dir`."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; known: {', '.join(PRESETS)}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    check_design()
    out = Path(out_dir)
    start = time.time()
    missing = unavailable_optional_voices()
    plan = make_plan(preset, seed, missing)
    check_voices(sorted({b.voice for b in plan}, key=lambda v: v.id))
    check_espeak_pools()
    left_out = sorted(v.id for v in missing)
    _check_stamp(out, preset, seed, left_out)
    chunks = _chunks(plan)
    total = sum(len(b.items) for b in plan)
    args = [(chunk, seed, str(out)) for chunk in chunks]
    log.info("benchmark '%s' (seed %d): %d files from %d utterances into %s, %d worker%s", preset, seed, total,
             len(plan), out, workers, "s" * (workers > 1))
    written = skipped = 0
    from spoofrl.log import progress
    if workers == 1:
        results = map(_run_chunk_star, args)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"), **pool_initializer())
        results = pool.map(_run_chunk_star, args)
    try:
        def per_file():  # one tick per file as chunks finish: the bar counts files, not chunks
            nonlocal written, skipped
            for w, s in results:
                written += w
                skipped += s
                yield from range(w + s)
        for _ in progress(per_file(), desc=f"synth {preset}", total=total, unit="file", disable=None if show_progress else True):
            pass
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    write_meta(plan, out / "meta.jsonl")
    from spoofrl.synth.readme import write_readme
    write_readme(plan, out / "README.md", preset, seed, missing)
    write_manifest(manifest_rows(plan), out / "manifest.csv")   # last: its presence means complete
    audio_seconds = _total_seconds(out, plan)
    return SynthReport(out, total, written, skipped, time.time() - start, audio_seconds)


def _total_seconds(out: Path, plan: list[BasePlan]) -> float:
    total = 0.0
    for base in plan:
        for item in base.items:
            total += sf.info(str(out / item.rel_path)).duration
    return total
