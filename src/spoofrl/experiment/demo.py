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

from spoofrl.experiment.config import load_experiment_config
from spoofrl.experiment.benchmark import available_cores, ensure_benchmark
from spoofrl.experiment.runner import run_experiment

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
