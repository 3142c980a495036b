"""`spoofrl metrics SCORES.tsv`: official ASVspoof metrics of a score file."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import (add_deprecated_alias, add_format_option, add_output_option, add_seed_option,
                                check_output_file, warn_deprecated, write_report)

REPORT_FORMATS = ("table", "json")

DESCRIPTION = """\
Official ASVspoof metrics of a score file: EER (as the ASVspoof 2019/2021/5 tools compute it: stable
sort, bona fide first on ties, no interpolation), ASVspoof 5 minDCF and actDCF, and CLLR.

Score file: TSV with header utt<TAB>score<TAB>label (optional attack, condition columns), as spoofrl
writes it, or a layout other tools write, told from the header or the first line (--score-format forces
one):
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
--format json keys: eer (fraction), threshold, min_dcf, act_dcf, cllr, n_bonafide, n_spoof, with --ci eer_ci
[lo, hi] (fractions), with --by breakdown {group: same keys}.
"""


class ReportFormatOrOldScoreFormat(argparse.Action):
    """--format is the report format (table, json). In spoofrl 0.1 it named the score file's layout, now
    --score-format: a layout name still works until common.REMOVED_IN, with a warning."""

    def __init__(self, option_strings, dest, choices, **kwargs):
        super().__init__(option_strings, dest, metavar="{" + ",".join(choices) + "}", **kwargs)
        self.report_formats = tuple(choices)   # checked here, not by argparse: layout names are accepted too

    def __call__(self, parser, namespace, value, option_string=None):
        from spoofrl.metrics.scorefile import SCORE_FORMATS
        if value in self.report_formats:
            setattr(namespace, self.dest, value)
        elif value in SCORE_FORMATS:
            warn_deprecated(parser.prog, f"{option_string} {value}", f"--score-format {value}")
            namespace.score_format = value
        else:
            parser.error(f"argument {option_string}: invalid choice: {value!r} (choose from "
                         f"{', '.join(map(repr, self.report_formats))})")


def register(sub):
    from spoofrl.metrics.scorefile import SCORE_FORMATS, accepted_formats
    p = sub.add_parser("metrics", help="EER, minDCF, actDCF, CLLR of a score file (higher score = more bona fide)",
                       description=DESCRIPTION.format(formats=accepted_formats()), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scores", metavar="SCORES.tsv", help="score file (utt, score[, label, attack, condition])")
    p.add_argument("--key", metavar="MANIFEST_OR_PROTOCOL",
                   help="labels (and attack/condition) from a manifest or a supported protocol file")
    p.add_argument("--score-format", choices=SCORE_FORMATS, default="auto", metavar="LAYOUT",
                   help="layout of the score file, one of those above (default auto: from its header or first line)")
    p.add_argument("--by", choices=["attack", "condition"], help="also report each attack / condition")
    fmt = add_format_option(p, REPORT_FORMATS, "table (default) or json (one JSON object)",
                            action=ReportFormatOrOldScoreFormat)
    add_deprecated_alias(p, "--json", fmt, const="json")
    add_output_option(p)
    p.add_argument("--p-spoof", type=float, default=None, help="DCF prior of spoof (default 0.05, ASVspoof 5)")
    p.add_argument("--c-miss", type=float, default=None, help="DCF cost of rejecting bona fide (default 1)")
    p.add_argument("--c-fa", type=float, default=None, help="DCF cost of accepting spoof (default 10)")
    p.add_argument("--ci", action="store_true", help="add a percentile bootstrap confidence interval of the EER")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for --ci (default 1000)")
    p.add_argument("--alpha", type=float, default=0.05, help="--ci covers 1-alpha (default 0.05: 95%%)")
    add_seed_option(p, "random seed of the bootstrap (default 0)")
    p.set_defaults(func=run)


def render(summary: dict, by: str | None, fmt: str) -> str:
    """The report: JSON (json.dumps escapes every control character) or the table, whose attack / condition
    names come from the score or key file and are escaped (printable) before they reach a terminal."""
    import json

    from spoofrl.detect.report import printable
    from spoofrl.metrics.summary import format_table
    if fmt == "json":
        return json.dumps(summary, indent=2)
    if "breakdown" in summary:
        summary = {**summary, "breakdown": {printable(str(k)): v for k, v in summary["breakdown"].items()}}
    return format_table(summary, by=by)


def run(args) -> int:
    from spoofrl.metrics import official
    from spoofrl.metrics.scorefile import read_scores
    from spoofrl.metrics.summary import summarize

    check_output_file(args.output, "--output")
    table = read_scores(args.scores, key=args.key, score_format=args.score_format)
    dcf = {"p_spoof": official.P_SPOOF if args.p_spoof is None else args.p_spoof,
           "c_miss": official.C_MISS if args.c_miss is None else args.c_miss,
           "c_fa": official.C_FA if args.c_fa is None else args.c_fa}
    summary = summarize(table, by=args.by, ci=args.ci, n_boot=args.n_boot, alpha=args.alpha, seed=args.seed, **dcf)
    write_report(render(summary, args.by, args.format), args.output, "--output")
    return 0
