"""The one-line time budget `make demo` prints at its end: how long each step of a new user's first table took.

Reads the seconds the install step wrote into .install.stamp (only when this `make demo` ran it; an earlier
install counts 0 here) and OUT/demo_timing.json, which `spoofrl demo` writes (fetch, benchmark, experiment).
The goal (issue 25) is a first table in at most 10 minutes on 2 cores, install and fetch included.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

GOAL_MINUTES = 10.0


def install_seconds(stamp: Path, since: float) -> float:
    """Seconds of the install step if it ran after `since` (the start of this `make demo`), else 0."""
    if not stamp.is_file() or stamp.stat().st_mtime < since:
        return 0.0
    for line in stamp.read_text().splitlines():
        if line.startswith("install_seconds="):
            return float(line.split("=", 1)[1])
    return 0.0


def budget_line(install: float, timing: dict) -> str:
    steps = {"install": install, "fetch": timing.get("fetch_seconds", 0.0),
             "benchmark": timing.get("synth_seconds", 0.0), "experiment": timing.get("experiment_seconds", 0.0)}
    total = sum(steps.values())
    parts = " + ".join(f"{name} {seconds:.0f} s" for name, seconds in steps.items())
    verdict = "within" if total <= GOAL_MINUTES * 60 else "OVER"
    return f"time budget: {parts} = {total / 60:.1f} min ({verdict} the {GOAL_MINUTES:.0f}-min goal; 0 s = reused)"


def main(argv: list[str]) -> int:
    out, stamp, since = Path(argv[0]), Path(argv[1]), float(argv[2]) if len(argv) > 2 else time.time()
    timing_file = out / "demo_timing.json"
    if not timing_file.is_file():
        print(f"time budget: {timing_file} not found (the demo did not finish)", file=sys.stderr)
        return 1
    print(budget_line(install_seconds(stamp, since), json.loads(timing_file.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
