"""`spoofrl experiment CONFIG.yaml`: the SFT vs GRPO study (arms x seeds), cached and resumable, with a report."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_device_option, add_out_dir_option, add_set_option, add_workers_option

DESCRIPTION = """\
Run a study: post-train a detector once (or use an existing post-trained model), adapt it to a target domain
with each configured arm (post-trained only, SFT, GRPO, SFT->GRPO, GRPO without negative reward, beta and
estimator ablations, ...) over several seeds, score the in-domain and out-of-domain test sets, and write a
report. Finished stages and score files are reused: rerunning the same command continues a killed experiment,
and adding seeds, arms or test sets runs only what is new.

CONFIG is a YAML file or a name in configs/experiments/ (demo, demo-fast, study-xlsr, ...); every option is
listed by `spoofrl config experiment`.

Output folder: results.json (EER and minDCF with bootstrap CIs, actDCF, CLLR per arm, seed and test set),
results.md (rows = arms; columns = in-domain, each OOD set, OOD average; mean ± std over seeds, EER in %),
det.png, scores_hist.png, training_curves.png, report.html, and every score file (higher score = more bona
fide) so that each number can be recomputed with `spoofrl metrics FILE --format json --ci`.
"""


def register(sub):
    p = sub.add_parser("experiment", help="the SFT vs GRPO study: arms x seeds, cached, resumable, with a report",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG.yaml", help="experiment config (YAML path or preset name)")
    add_out_dir_option(p, "output folder (default runs/<config name>)")
    p.add_argument("--seeds", type=int, metavar="N", help="runs per arm (overrides the config's seeds)")
    p.add_argument("--arms", metavar="A,B", help="run / report only these arms (comma-separated)")
    add_workers_option(p, None, "arm runs trained at once in separate processes")
    add_device_option(p, default=None, help="'auto', 'cpu', 'cuda', 'cuda:1' (overrides the config's device)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: rebuild the report from the finished runs (lists the unfinished ones)")
    add_set_option(p, "override an experiment config option (`spoofrl config experiment`), e.g. "
                      "--set report.bootstrap=200; repeatable, values are YAML")
    p.set_defaults(func=run)


def config_overrides(args) -> list[str]:
    """--seeds/--workers/--device as config overrides, applied after --set."""
    extra = list(args.overrides)
    if args.seeds is not None:
        extra.append(f"seeds={args.seeds}")
    if args.workers is not None:
        extra.append(f"workers={args.workers}")
    if args.device:
        extra.append(f"device={args.device}")
    return extra


def print_summary(results: dict, out) -> None:
    from spoofrl.experiment.tables import table_rows, text_table
    for detector in results["detectors"]:
        print(f"\n{results['experiment']} - detector {detector}: EER (%), mean ± std over seeds")
        print(text_table(table_rows(results, detector, "eer")))
    print()
    for line in results["reading"]:
        print(f"- {line}")
    if results["missing_runs"]:
        print(f"\nnot finished: {', '.join(results['missing_runs'])}")
    print(f"\nreport: {out / 'report.html'}  (table: {out / 'results.md'}, numbers: {out / 'results.json'})")


def run(args) -> int:
    from pathlib import Path

    from spoofrl.experiment import load_experiment_config, run_experiment
    cfg = load_experiment_config(args.config, config_overrides(args))
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    results = run_experiment(cfg, out, arms=arms, report_only=args.report_only)
    print_summary(results, out)
    return 0
