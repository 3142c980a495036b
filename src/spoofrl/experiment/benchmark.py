"""The built-in benchmark an experiment (or `spoofrl demo`) runs on: fetched real recordings, then `spoofrl data
synth`, skipped when the folder already holds the finished benchmark it needs."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from spoofrl.errors import ConfigError

LOG = logging.getLogger("spoofrl.experiment.demo")

DESIGNS = ("real", "v1")     # `spoofrl data synth --design`; real = design 2, the default


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_reused(folder: Path, preset: str, seed: int, design: str = "real") -> None:
    """A finished benchmark is reused only if it is the one this demo variant needs (`spoofrl demo` and
    `spoofrl demo --fast` use different presets, designs differ); one not made by `spoofrl data synth` is
    used as given."""
    from spoofrl.synth.generate import STAMP, load_stamp
    made = load_stamp(folder)
    if made is None:
        LOG.warning("%s has no %s: not made by `spoofrl data synth`; using its manifest as it is", folder, STAMP)
        return
    made_design = made.get("design", "v1")
    if made_design == "real":
        from spoofrl.synth.real_design import REVISION
        if made.get("revision", 1) != REVISION:  # an older revision may hold silent Hebrew TTS (issue 25)
            LOG.warning("%s was made by revision %s of design 2 (now %s): rebuild it for the current benchmark "
                        "(delete the folder or choose another --out)", folder, made.get("revision", 1), REVISION)
    if (made_design, made.get("preset"), made.get("seed")) != (design, preset, seed):
        raise ConfigError(f"{folder} holds the '{made.get('preset')}' benchmark of design '{made_design}' (seed "
                          f"{made.get('seed')}); this demo needs '{preset}' of design '{design}' (seed {seed}): "
                          f"choose another --out or --data")


def fetch_recordings(workers: int) -> tuple[Path, float]:
    """(real-speech manifest, seconds spent): `spoofrl data fetch` into its cache (a no-op download when the
    packages are cached; the clips are re-checked from a cache of their checks)."""
    from spoofrl.data.real import fetch_real_speech
    from spoofrl.errors import SpoofrlError
    t0 = time.time()
    report = fetch_real_speech("all", workers=workers)
    if report.failed:
        raise SpoofrlError(report.failure_message())
    for line in report.warnings():            # a source left out whole changes the benchmark: say so
        LOG.warning("%s", line.removeprefix("WARNING: "))
    LOG.info("real speech: %d clips in %s (%.0f s)", len(report.rows), report.manifest, time.time() - t0)
    return report.manifest, time.time() - t0


def ensure_benchmark(folder: Path, preset: str, seed: int, workers: int,
                     design: str = "real") -> tuple[Path, dict[str, float]]:
    """(manifest, seconds spent per step): generate the benchmark unless the folder already holds a finished
    one (synth writes manifest.csv last, so its presence means complete)."""
    if design not in DESIGNS:
        raise ConfigError(f"unknown benchmark design '{design}'; known: {', '.join(DESIGNS)}")
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        _check_reused(folder, preset, seed, design)
        LOG.info("reusing the benchmark in %s", folder)
        return manifest, {"fetch_seconds": 0.0, "synth_seconds": 0.0}
    from spoofrl import prereqs
    prereqs.require(prereqs.BENCHMARK)        # at once, before the fetch and the folder: nothing half done
    seconds = {"fetch_seconds": 0.0}
    LOG.info("generating the '%s' benchmark (design %s) in %s (%d worker%s)", preset, design, folder, workers,
             "s" * (workers > 1))
    if design == "real":
        real_manifest, seconds["fetch_seconds"] = fetch_recordings(workers)
        from spoofrl.synth.real_generate import generate_real
        t0 = time.time()
        report = generate_real(folder, preset=preset, seed=seed, workers=workers, real_manifest=real_manifest)
    else:
        from spoofrl.synth.generate import generate
        t0 = time.time()
        report = generate(folder, preset=preset, seed=seed, workers=workers)
    seconds["synth_seconds"] = time.time() - t0
    LOG.info("benchmark: %d files (%.0f s of audio) in %.0f s", report.files, report.audio_seconds, report.seconds)
    return manifest, seconds
