"""`spoofrl data rationales`: FT-style rationales written from measured evidence, one JSON line per clip."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import (add_deprecated_alias, add_output_option, add_seed_option, add_subset_option,
                                add_workers_option, comma_list, require)

DESCRIPTION = """\
Write an evidence-grounded rationale for every clip of a manifest, in FT-GRPO's format (arXiv 2601.02983)
with spoofrl's label names:

  <think>
  <Frequency Domain> ...
  <Time Domain> ...
  </think>
  <answer>bonafide|spoof</answer>

A bona fide reference profile is fitted on the bona fide rows of --reference-subset (saved as
OUT.reference.json; or give one with --reference). Every clip is measured against it (spoofrl.evidence),
its most deviating findings are stated with their band or time and direction (bona fide clips with nothing
deviating state what is normal), and every stated claim is checked against the measurements. Each line of
OUT holds utt, path, label, subset, attack, seed, the rationale, the completion (rationale + answer: the SFT
target), the claims with the evidence each cites, and the clip's full evidence (what the ft_grounded reward
checks a model's claims against).

Resumable: rerun the same command and the clips already in OUT are kept. Deterministic for a seed (any
--workers). A clip that cannot be read or measured (unreadable, silent, too short) is named on one line and
listed in OUT.errors.tsv; the others are still written. See docs/explain.md.
"""

EPILOG = """cost: about 0.1 s of one core per 3 s clip (the evidence; writing the text is about 1 ms).
examples:
  spoofrl data rationales --manifest data/real/manifest.csv --subset posttrain,posttrain_dev \\
      --reference-subset posttrain --output data/real/rationales.jsonl --workers 2"""


def register(sub):
    p = sub.add_parser("rationales", help="write evidence-grounded FT rationales (JSON lines) for SFT and RL",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, metavar="CSV", help="the manifest of the clips")
    add_deprecated_alias(p, "--subsets", add_subset_option(p, "subsets to annotate (default: every subset)"))
    add_deprecated_alias(p, "--out", add_output_option(p, "output JSON lines (required; rerun to resume)",
                                                       metavar="R.jsonl"))
    reference = p.add_argument("--reference-subset", dest="reference_subsets", type=comma_list, default=None,
                               metavar="NAME[,NAME]", help="subsets whose bona fide rows the reference profile is "
                                                           "fitted on (default: --subset)")
    add_deprecated_alias(p, "--reference-subsets", reference)
    p.add_argument("--reference", default=None, metavar="REF.json",
                   help="use this reference profile (spoofrl.evidence JSON) instead of fitting one")
    add_seed_option(p, "seed of the paraphrase choices (default: 0)")
    p.add_argument("--max-claims", type=int, default=3, metavar="K",
                   help="most deviating findings stated per clip (default: 3)")
    add_workers_option(p, 1, "parallel processes (default: 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spoofrl.errors import ConfigError
    from spoofrl.explain.annotate import annotate_manifest

    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.max_claims < 1:
        raise ConfigError(f"--max-claims must be at least 1, got {args.max_claims}")
    report = annotate_manifest(args.manifest, require(args.output, "--output R.jsonl"), subsets=args.subsets,
                               reference_subsets=args.reference_subsets, reference=args.reference,
                               seed=args.seed, workers=args.workers, max_claims=args.max_claims)
    for line in report.summary():
        print(line)
    return 0
