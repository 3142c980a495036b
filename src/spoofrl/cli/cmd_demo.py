"""`spoofrl demo`: the built-in SFT vs GRPO study, from benchmark generation to the report."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_device_option, add_out_dir_option, add_set_option, add_workers_option

DESCRIPTION = """\
The main job in one command. Fetches real human recordings from Debian packages (`spoofrl data fetch`;
cached, ~190 MB of packages the first time), builds the built-in `demo` benchmark on them (`spoofrl data synth
--design real`: bona fide = the real recordings; spoofs = their copy-synthesis through vocoders and codecs,
TTS engines speaking their transcripts, TTS through vocoders; or reuses it), post-trains a small
detector (LFCC + deltas, frame-wise FFN, mean+std pooling; configs/experiments/models/lfcc-ffn.yaml) on its
broad post-training subset, adapts it to the new target domain with each arm - post-trained only, SFT, GRPO,
SFT->GRPO (GRPO from the SFT runs' models), GRPO without negative reward - over 3 seeds, and prints the table:
EER (%) in-domain and on the out-of-domain subsets (attack, source, channel, mix) with the OOD average, mean ±
std over seeds, plus a short reading that claims no more than the numbers show.
Report: OUT/report.html (results.json, results.md, DET curves, score histograms, training curves; every score
file is kept, higher score = more bona fide, so each number can be recomputed with `spoofrl metrics`).

About 6 minutes on 2 CPU cores once the recordings are cached, benchmark generation included
(BENCHMARKS.md); --fast is a 2-minute version on the smaller `small` benchmark with fewer steps and 2 seeds.
Before building a benchmark it checks the system programs it needs (ffmpeg, espeak-ng, flite, festival and
its voices; `bash scripts/install_system.sh`, which `make demo` runs) and stops at once naming what is missing.
Rerunning continues an interrupted demo. --design v1 runs it on the earlier benchmark (synthetic bona fide,
nothing fetched) to reproduce tables recorded before design 2.
Same as: spoofrl data fetch &&
         spoofrl data synth --design real --preset demo --workers 2 --out OUT/benchmark &&
         spoofrl experiment demo --set data.manifest=OUT/benchmark/manifest.csv --out OUT
Settings: configs/experiments/demo.yaml (demo-fast.yaml with --fast); ablations: configs/experiments/ablations.yaml
"""


def register(sub):
    p = sub.add_parser("demo", help="the built-in study: benchmark -> post-train -> SFT / GRPO / ... -> table + report",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_out_dir_option(p, "output folder (default demo-out, or demo-out-fast with --fast)")
    p.add_argument("--fast", action="store_true", help="~2-minute version: smaller benchmark, fewer steps, 2 seeds")
    p.add_argument("--seeds", type=int, metavar="N", help="runs per arm (default: the demo config's)")
    add_workers_option(p, None, "processes for benchmark generation and arm runs (default: the available CPU cores)")
    p.add_argument("--data", metavar="DIR", help="benchmark folder to use or create (default OUT/benchmark)")
    add_device_option(p, default=None, help="'auto' (default), 'cpu', 'cuda'")
    p.add_argument("--design", default="real", choices=["real", "v1"],
                   help="benchmark design: real (default; real bona fide, fetched) or v1 (synthetic bona fide)")
    add_set_option(p, "override an experiment config option (`spoofrl config experiment`), e.g. "
                "--set finetune.overrides=[schedule.steps=300]; repeatable, values are YAML")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from spoofrl.cli.cmd_experiment import print_summary
    from spoofrl.errors import ConfigError
    from spoofrl.experiment.demo import run_demo
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    out = Path(args.out or ("demo-out-fast" if args.fast else "demo-out"))
    results = run_demo(out, fast=args.fast, seeds=args.seeds, workers=args.workers,
                       data=Path(args.data) if args.data else None, device=args.device, overrides=args.overrides,
                       design=args.design)
    print_summary(results, out)
    t = results["timing"]
    print(f"wall time {t['total_seconds'] / 60:.1f} min (benchmark {t['data_seconds']:.0f} s, "
          f"experiment {t['experiment_seconds']:.0f} s, {t['workers']} worker(s))")
    return 0
