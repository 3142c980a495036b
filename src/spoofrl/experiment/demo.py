"""`spoofrl demo`: the built-in study end to end - benchmark, post-training, the arms, the report.

It is `spoofrl data synth` (skipped when the benchmark folder already holds a finished benchmark) followed by
`spoofrl experiment configs/experiments/demo.yaml` (or demo-fast.yaml) on it. Both steps resume, so an
interrupted demo continues where it stopped.
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


@dataclass(frozen=True)
class DemoVariant:
    experiment: str          # config name in configs/experiments/
    benchmark: str           # `spoofrl data synth --preset`
    benchmark_seed: int


VARIANTS = {
    False: DemoVariant("demo", "demo", 0),
    True: DemoVariant("demo-fast", "small", 0),
}


def _check_reused(folder: Path, preset: str, seed: int) -> None:
    """A finished benchmark is reused only if it is the one this demo variant needs (`spoofrl demo` and
    `spoofrl demo --fast` use different presets); one not made by `spoofrl data synth` is used as given."""
    from spoofrl.synth.generate import STAMP
    try:
        made = json.loads((folder / STAMP).read_text())
    except FileNotFoundError:
        LOG.warning("%s has no %s: not made by `spoofrl data synth`; using its manifest as it is", folder, STAMP)
        return
    except json.JSONDecodeError:
        raise ConfigError(f"{folder / STAMP}: damaged; delete {folder} or choose another --data") from None
    design = made.get("design", "v1")
    if (design, made.get("preset"), made.get("seed")) != ("v1", preset, seed):
        raise ConfigError(f"{folder} holds the '{made.get('preset')}' benchmark of design '{design}' (seed "
                          f"{made.get('seed')}); this demo needs '{preset}' of design 'v1' (seed {seed}): choose "
                          f"another --out or --data")


def ensure_benchmark(folder: Path, preset: str, seed: int, workers: int) -> tuple[Path, float]:
    """(manifest, seconds spent): generate the benchmark unless the folder already holds a finished one
    (synth writes manifest.csv last, so its presence means complete)."""
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        _check_reused(folder, preset, seed)
        LOG.info("reusing the benchmark in %s", folder)
        return manifest, 0.0
    from spoofrl.synth.generate import generate
    LOG.info("generating the '%s' benchmark in %s (%d worker%s)", preset, folder, workers, "s" * (workers > 1))
    t0 = time.time()
    report = generate(folder, preset=preset, seed=seed, workers=workers)
    LOG.info("benchmark: %d files (%.0f s of audio) in %.0f s", report.files, report.audio_seconds, report.seconds)
    return manifest, time.time() - t0


def run_demo(out: Path, *, fast: bool = False, seeds: int | None = None, workers: int | None = None,
             data: Path | None = None, device: str | None = None, overrides: list[str] | None = None) -> dict:
    """Run the demo into `out`; returns the experiment's results (with 'timing' added)."""
    variant = VARIANTS[fast]
    workers = workers or available_cores()
    t0 = time.time()
    manifest, data_seconds = ensure_benchmark(Path(data) if data else out / "benchmark", variant.benchmark,
                                              variant.benchmark_seed, workers)
    extra = [f"data.manifest={manifest.resolve()}", f"workers={workers}"]
    if seeds is not None:
        extra.append(f"seeds={seeds}")
    if device:
        extra.append(f"device={device}")
    cfg = load_experiment_config(variant.experiment, extra + list(overrides or []))
    t1 = time.time()
    results = run_experiment(cfg, out)
    timing = {"data_seconds": round(data_seconds, 1), "experiment_seconds": round(time.time() - t1, 1),
              "total_seconds": round(time.time() - t0, 1), "workers": workers, "variant": variant.experiment}
    (out / "demo_timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    LOG.info("demo finished in %.1f min (benchmark %.0f s, experiment %.0f s)", timing["total_seconds"] / 60,
             timing["data_seconds"], timing["experiment_seconds"])
    results["timing"] = timing
    return results
