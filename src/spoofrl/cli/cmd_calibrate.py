"""`spoofrl calibrate RUN_DIR`: fit score -> LLR calibration on a labelled dev set; saves calibration.json."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_batch_size_option, add_device_option, add_subset_option

# Raw dev scores written beside calibration.json when the command scores the manifest itself.
from spoofrl.runfiles import DEV_SCORES, WEIGHTS

DESCRIPTION = """\
Fit a calibration that turns the model's raw scores (log-odds of bona fide) into log-likelihood ratios
(LLRs, natural log; higher = more bona fide): llr = a * score + b, fitted by prior-weighted logistic
regression on the dev subset of a manifest, at the target prior --prior = P(bona fide) (default 0.5).
The result is saved as RUN_DIR/calibration.json; from then on `spoofrl detect` and `spoofrl serve`
report LLRs, and p_spoof uses the stated prior.

Printed: the dev EER (unchanged by calibration: the map is monotonic) and actDCF / CLLR / minDCF before
(raw scores read as LLRs) and after calibration, with ASVspoof 5 costs (P(spoof) 0.05, Cmiss 1, Cfa 10).
These "after" numbers are measured on the data the calibration was fitted on; check on eval with
`spoofrl metrics`.

Dev scores come from scoring the manifest's subset with the model, or from --scores, a score file of the
same model's raw scores (utt, score, label; labels may come from the manifest). When the command scores
the manifest itself, it saves those raw scores as RUN_DIR/calibration_dev_scores.tsv first, so a refit
(e.g. another --prior) can reuse them with --scores."""


def register(sub):
    p = sub.add_parser("calibrate", help="fit score -> LLR calibration on a dev set (higher = more bona fide)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="run or model folder (model.safetensors + config.yaml)")
    p.add_argument("--manifest", metavar="M", help="manifest CSV whose --subset is scored (or labels --scores)")
    add_subset_option(p, "manifest subset to fit on, or several joined by commas (default dev)", default=["dev"])
    p.add_argument("--scores", metavar="TSV", help="use these raw dev scores of the model instead of scoring")
    p.add_argument("--prior", type=float, default=0.5,
                   help="target prior P(bona fide) weighting the fit and used for p_spoof (default 0.5)")
    add_batch_size_option(p, 16, "utterances per forward pass when scoring (default 16)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="score at most this many seconds of each utterance (default: whole files)")
    add_device_option(p)
    p.set_defaults(func=run)


def _check_both_classes(n_bona: int, n_spoof: int, where: str) -> None:
    from spoofrl.errors import SpoofrlError
    if n_bona == 0 or n_spoof == 0:
        raise SpoofrlError(f"{where}: calibration needs bona fide and spoof trials; found {n_bona} bona fide "
                           f"and {n_spoof} spoof")


def _dev_scores_from_model(args):
    """(bona fide scores, spoof scores, description) by scoring the manifest subset.

    The raw scores are also saved as RUN_DIR/DEV_SCORES before fitting, so a refit (another --prior,
    or after a refused fit) can reuse them with --scores instead of scoring again."""
    from pathlib import Path

    from spoofrl.data.manifest import BONAFIDE, check_audio_exists, read_manifest
    from spoofrl.device import pick_device
    from spoofrl.inference import score_utterances
    from spoofrl.metrics.scorefile import write_scores
    from spoofrl.models import load_model
    subset = ",".join(args.subsets)
    utts = read_manifest(args.manifest, subsets=args.subsets)
    is_bona = [u.label == BONAFIDE for u in utts]
    _check_both_classes(sum(is_bona), len(is_bona) - sum(is_bona), f"{args.manifest} (subset {subset})")
    check_audio_exists(utts, args.manifest)
    device = pick_device(args.device)
    model = load_model(args.run_dir, device)
    scores = score_utterances(model, utts, device=device, batch_size=args.batch_size, max_seconds=args.max_seconds,
                              desc=f"scoring {subset}")
    saved = write_scores(Path(args.run_dir) / DEV_SCORES, [u.utt for u in utts], scores,
                         [u.label for u in utts], [u.attack for u in utts], [u.condition for u in utts])
    bona = [s for s, b in zip(scores, is_bona) if b]
    spoof = [s for s, b in zip(scores, is_bona) if not b]
    return bona, spoof, {"manifest": str(args.manifest), "subset": subset, "scores": str(saved)}


def _dev_scores_from_file(args):
    from spoofrl.metrics.scorefile import read_scores
    table = read_scores(args.scores, key=args.manifest)
    return table.bonafide_scores(), table.spoof_scores(), {"scores": str(args.scores)}


def _check_args(args) -> None:
    from pathlib import Path

    from spoofrl.errors import SpoofrlError
    if not (Path(args.run_dir) / WEIGHTS).is_file():
        raise SpoofrlError(f"{args.run_dir}: not a model folder (no model.safetensors)")
    if args.scores is None and args.manifest is None:
        raise SpoofrlError("give --manifest M (its --subset is scored) or --scores TSV (raw dev scores)")
    if not 0.0 < args.prior < 1.0:
        raise SpoofrlError(f"--prior must be strictly between 0 and 1, got {args.prior}")
    if args.batch_size < 1:
        raise SpoofrlError(f"--batch-size must be >= 1, got {args.batch_size}")


def _rounded(metrics: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()
            if k in ("eer", "min_dcf", "act_dcf", "cllr")}


def calibrate(bona, spoof, prior: float, source: dict):
    """Fit and measure; returns the Calibration with its report in `.extra`."""
    from spoofrl.errors import SpoofrlError
    from spoofrl.metrics import C_FA, C_MISS, P_SPOOF, evaluate
    from spoofrl.metrics.calibration import fit_calibration
    where = (f"{source['manifest']} (subset {source.get('subset')})" if "manifest" in source
             else source.get("scores"))
    _check_both_classes(len(bona), len(spoof), where)
    cal = fit_calibration(bona, spoof, prior)
    before = evaluate(bona, spoof)
    if cal.a <= 0:
        raise SpoofrlError(f"{where}: fitted slope a={cal.a:.4g} is not positive (dev EER {before['eer']:.1%}): the "
                           f"model's scores carry no usable evidence on this set; calibration.json not written")
    after = evaluate(cal.llr(bona), cal.llr(spoof))
    cal.extra = {"fitted_on": source, "dev_eer": round(before["eer"], 6),
                 "dcf_params": {"p_spoof": P_SPOOF, "c_miss": C_MISS, "c_fa": C_FA},
                 "before": _rounded(before), "after": _rounded(after)}
    return cal


def run(args) -> int:
    from spoofrl.detect.report import printable
    from spoofrl.metrics.calibration import save_calibration
    _check_args(args)
    bona, spoof, source = _dev_scores_from_file(args) if args.scores else _dev_scores_from_model(args)
    cal = calibrate(bona, spoof, args.prior, source)
    path = save_calibration(cal, args.run_dir)
    before, after = cal.extra["before"], cal.extra["after"]
    sign = "-" if cal.b < 0 else "+"
    print(f"calibration: llr = {cal.a:.4f} * score {sign} {abs(cal.b):.4f}  (target prior P(bona fide) = {cal.prior:g}; "
          f"{cal.n_bonafide} bona fide + {cal.n_spoof} spoof trials)")
    print(f"dev EER {cal.extra['dev_eer']:.2%} (unchanged by calibration)")
    print(f"{'':8}{'actDCF':>9}{'CLLR':>9}{'minDCF':>9}")
    for name, m in (("before", before), ("after", after)):
        print(f"{name:8}{m['act_dcf']:9.4f}{m['cllr']:9.4f}{m['min_dcf']:9.4f}")
    print(f"act_dcf on calibrated scores: {after['act_dcf']:.4f} (ASVspoof 5 costs; measured on the fitting set)")
    if "manifest" in source:
        scores = printable(source["scores"])
        print(f"raw dev scores: {scores} (refit without scoring again: --scores {scores})")
    print(f"saved {printable(str(path))}")
    return 0
