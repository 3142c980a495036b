"""`spoofrl demo`: the built-in study end to end - benchmark, post-training, the arms, the report.

It is `spoofrl data fetch` (real human recordings from Debian packages; nothing is downloaded when they are
cached), `spoofrl data synth --design real` (skipped when the benchmark folder already holds a finished
benchmark) and `spoofrl experiment configs/experiments/demo.yaml` (or demo-fast.yaml) on it. Every step
resumes, so an interrupted demo continues where it stopped. `design="v1"` runs the study on the earlier
benchmark (synthetic bona fide, no fetch) to reproduce the tables recorded before design 2.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from spoofrl.errors import ConfigError
from spoofrl.experiment.config import load_experiment_config
from spoofrl.experiment.runner import available_cores, run_experiment

LOG = logging.getLogger(__name__)


DESIGNS = ("real", "v1")     # `spoofrl data synth --design`; real = design 2, the default


@dataclass(frozen=True)
class DemoVariant:
    experiment: str          # config name in configs/experiments/
    benchmark: str           # `spoofrl data synth --preset`
    benchmark_seed: int


VARIANTS = {
    False: DemoVariant("demo", "demo", 0),
    True: DemoVariant("demo-fast", "small", 0),
}


def _check_reused(folder: Path, preset: str, seed: int, design: str = "real") -> None:
    """A finished benchmark is reused only if it is the one this demo variant needs (`spoofrl demo` and
    `spoofrl demo --fast` use different presets, designs differ); one not made by `spoofrl data synth` is
    used as given."""
    from spoofrl.synth.generate import STAMP
    try:
        made = json.loads((folder / STAMP).read_text())
    except FileNotFoundError:
        LOG.warning("%s has no %s: not made by `spoofrl data synth`; using its manifest as it is", folder, STAMP)
        return
    except json.JSONDecodeError:
        raise ConfigError(f"{folder / STAMP}: damaged; delete {folder} or choose another --data") from None
    made_design = made.get("design", "v1")
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


def run_demo(out: Path, *, fast: bool = False, seeds: int | None = None, workers: int | None = None,
             data: Path | None = None, device: str | None = None, overrides: list[str] | None = None,
             design: str = "real") -> dict:
    """Run the demo into `out`; returns the experiment's results (with 'timing' added)."""
    variant = VARIANTS[fast]
    workers = workers or available_cores()
    t0 = time.time()
    manifest, data_seconds = ensure_benchmark(Path(data) if data else out / "benchmark", variant.benchmark,
                                              variant.benchmark_seed, workers, design)
    extra = [f"data.manifest={manifest.resolve()}", f"workers={workers}"]
    if seeds is not None:
        extra.append(f"seeds={seeds}")
    if device:
        extra.append(f"device={device}")
    cfg = load_experiment_config(variant.experiment, extra + list(overrides or []))
    t1 = time.time()
    results = run_experiment(cfg, out)
    timing = {"data_seconds": round(sum(data_seconds.values()), 1),
              **{k: round(v, 1) for k, v in data_seconds.items()},
              "experiment_seconds": round(time.time() - t1, 1), "total_seconds": round(time.time() - t0, 1),
              "workers": workers, "variant": variant.experiment, "design": design}
    (out / "demo_timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    LOG.info("demo finished in %.1f min (benchmark %.0f s, experiment %.0f s)", timing["total_seconds"] / 60,
             timing["data_seconds"], timing["experiment_seconds"])
    results["timing"] = timing
    return results
