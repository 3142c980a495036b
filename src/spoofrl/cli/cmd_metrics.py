"""`spoofrl metrics SCORES.tsv`: official ASVspoof metrics of a score file."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Official ASVspoof metrics of a score file: EER (as the ASVspoof 2019/2021/5 tools compute it: stable
sort, bona fide first on ties, no interpolation), ASVspoof 5 minDCF and actDCF, and CLLR.

Score file: TSV with header utt<TAB>score<TAB>label (optional attack, condition columns), as spoofrl
writes it, or a layout other tools write, told from the header or the first line (--format forces one):
{formats}
HIGHER SCORE = MORE BONA FIDE (negate scores of a tool that scores spoof higher). label is bonafide or
spoof. A file with only utt and score needs --key: a spoofrl manifest (utt = its path column), an
ASVspoof 5 key file (filename<TAB>cm-label) or a protocol file of a supported corpus (ASVspoof 2019 LA,
2021 LA/DF trial_metadata.txt, ASVspoof 5 .tsv, In-the-Wild meta.csv); utts match the key's ids exactly
or by file name without folder and extension. Score and key files may be gzip-compressed.

actDCF and CLLR read scores as natural-log likelihood ratios: meaningful after `spoofrl calibrate`.
"""

EPILOG = """\
--by attack: each attack against all bona fide trials (the ASVspoof per-attack convention).
--by condition: bona fide and spoof trials of each condition (codec/channel) only.
JSON keys: eer (fraction), threshold, min_dcf, act_dcf, cllr, n_bonafide, n_spoof, with --ci eer_ci
[lo, hi] (fractions), with --by breakdown {group: same keys}.
"""


def register(sub):
    from spoofrl.metrics.scorefile import SCORE_FORMATS, accepted_formats
    p = sub.add_parser("metrics", help="EER, minDCF, actDCF, CLLR of a score file (higher score = more bona fide)",
                       description=DESCRIPTION.format(formats=accepted_formats()), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scores", metavar="SCORES.tsv", help="score file (utt, score[, label, attack, condition])")
    p.add_argument("--key", metavar="MANIFEST_OR_PROTOCOL",
                   help="labels (and attack/condition) from a manifest or a supported protocol file")
    p.add_argument("--format", dest="score_format", choices=SCORE_FORMATS, default="auto",
                   help="layout of the score file (default auto: from its header or first line)")
    p.add_argument("--by", choices=["attack", "condition"], help="also report each attack / condition")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--p-spoof", type=float, default=None, help="DCF prior of spoof (default 0.05, ASVspoof 5)")
    p.add_argument("--c-miss", type=float, default=None, help="DCF cost of rejecting bona fide (default 1)")
    p.add_argument("--c-fa", type=float, default=None, help="DCF cost of accepting spoof (default 10)")
    p.add_argument("--ci", action="store_true", help="add a percentile bootstrap confidence interval of the EER")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for --ci (default 1000)")
    p.add_argument("--alpha", type=float, default=0.05, help="--ci covers 1-alpha (default 0.05: 95%%)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from spoofrl.metrics import official
    from spoofrl.metrics.scorefile import read_scores
    from spoofrl.metrics.summary import format_table, summarize

    table = read_scores(args.scores, key=args.key, score_format=args.score_format)
    dcf = {"p_spoof": official.P_SPOOF if args.p_spoof is None else args.p_spoof,
           "c_miss": official.C_MISS if args.c_miss is None else args.c_miss,
           "c_fa": official.C_FA if args.c_fa is None else args.c_fa}
    summary = summarize(table, by=args.by, ci=args.ci, n_boot=args.n_boot, alpha=args.alpha, seed=args.seed, **dcf)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(summary, by=args.by))
    return 0
