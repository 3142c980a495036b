"""Wall time of `spoofrl demo` from a clean state (benchmark generation included), as BENCHMARKS.md reports it.

    python benchmarks/bench_demo.py --out /tmp/demo-full            # the full demo (~6 min on 2 cores)
    python benchmarks/bench_demo.py --fast --out /tmp/demo-fast     # the CI version

Deletes OUT first (so nothing is reused), runs the demo as a subprocess, and prints: wall time, the demo's own
split (benchmark / experiment seconds from OUT/demo_timing.json), CPU time of the demo and its children, the
load average before and after (other jobs on the machine slow it down), and the EER table it printed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output folder (deleted first)")
    ap.add_argument("--fast", action="store_true", help="time `spoofrl demo --fast`")
    ap.add_argument("--keep", action="store_true", help="do not delete OUT first (time a resumed / cached run)")
    args = ap.parse_args()
    if args.out.exists() and not args.keep:
        shutil.rmtree(args.out)
    cmd = ["spoofrl", "demo", "--out", str(args.out)] + (["--fast"] if args.fast else [])
    load_before = os.getloadavg()
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SPOOFRL_NO_PROGRESS": "1"})
    wall = time.time() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        print(f"FAILED: {' '.join(cmd)} exited with {proc.returncode}", file=sys.stderr)
        return proc.returncode
    timing = json.loads((args.out / "demo_timing.json").read_text())
    print(f"command: {' '.join(cmd)}")
    print(f"wall time: {wall:.0f} s ({wall / 60:.1f} min); benchmark {timing['data_seconds']:.0f} s, "
          f"experiment {timing['experiment_seconds']:.0f} s, {timing['workers']} worker(s)")
    print(f"CPU time (demo and children): user {usage.ru_utime:.0f} s, system {usage.ru_stime:.0f} s; "
          f"cores: {os.cpu_count()}")
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f} (1-minute)")
    print(proc.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
