"""`spoofrl vocode`: make spoofed (copy-synthesis) copies of your own bona fide recordings."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_deprecated_alias, add_out_dir_option, add_seed_option, add_workers_option

DESCRIPTION = """\
Make spoofed copies of bona fide recordings with the built-in benchmark's vocoders (copy-synthesis:
analyse each recording, resynthesise it with a vocoder or low-rate codec), so that a user with only real
recordings can train a detector. Inputs are read at 16 kHz mono; spoofs are written as 16 kHz FLAC under
OUT/audio/<attack>/. OUT/manifest.csv keeps the original rows (bona fide, absolute paths) and adds one
spoof row per (recording, attack) with an `origin` column naming the recording it was made from.
Spoof file names come from the inputs' paths with `..` and `.` parts dropped; nothing is written outside
OUT (a symlink there that leads outside is refused).

Unreadable inputs and malformed manifest lines are reported at the end, every one by the name you gave
(the path as listed in the manifest or as found in the folder, not a symlink's target) and line, and are
also listed in OUT/failures.tsv; the others are still processed and the manifest is written, then the
command exits with status 2. A failed file found in a folder gets no row in the manifest; a failed bona
fide row of an input manifest is kept unchanged, its reason in a `vocode_error` column ('-' elsewhere).
Rerunning skips spoofs that already exist.
"""

SHOWN_INLINE = 5   # up to this many problems are named in the one-line error; more are listed line by line


def _epilog() -> str:
    from spoofrl.synth.attacks import ATTACKS
    lines = ["attacks (ids for --attacks):"]
    lines += [f"  {name:18s} {a.doc}" for name, a in ATTACKS.items()]
    lines += ["", "example: spoofrl vocode --in my_recordings/ --out vocoded/ --attacks world,griffinlim,hnm --workers 2"]
    return "\n".join(lines)


def register(sub):
    p = sub.add_parser("vocode", help="spoofed copies of your bona fide audio with the benchmark's vocoders",
                       description=DESCRIPTION, epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in", dest="inp", required=True, metavar="DIR_OR_MANIFEST",
                   help="a folder of audio files (searched recursively), a manifest .csv (its bona fide rows are "
                        "vocoded; every row is kept, a row that could not be vocoded marked in a vocode_error "
                        "column) or one audio file")
    add_out_dir_option(p, "output folder", required=True)
    p.add_argument("--attacks", default="all", metavar="LIST",
                   help="comma-separated attack ids, or 'all' (default: all; see the list below)")
    add_seed_option(p, "random seed (default: 0); same seed -> identical files")
    add_workers_option(p, 1, "parallel processes (default: 1)")
    # --subset names the subsets a command reads everywhere else; this one is written (as data import's).
    name = p.add_argument("--subset-name", default="train", metavar="NAME",
                          help="subset name written for folder inputs (default: train); manifest inputs keep theirs")
    add_deprecated_alias(p, "--subset", name)
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from spoofrl.detect.report import printable
    from spoofrl.errors import SpoofrlError
    from spoofrl.synth.vocode import parse_attacks, vocode
    attacks = parse_attacks(args.attacks)
    report = vocode(args.inp, args.out, attacks, seed=args.seed, workers=args.workers, subset=args.subset_name)
    ok = report.inputs - len(report.failed)
    print(f"{report.out_dir}: {ok} recordings x {len(attacks)} attacks: {report.spoofs_written} spoofs written, "
          f"{report.spoofs_skipped} already there; manifest: {report.out_dir / 'manifest.csv'}")
    # escaped: the names come from the user's folder and reach the terminal (stderr, the error line)
    problems = [printable(f"{path}: {why}") for path, why in report.failed]
    problems += [printable(str(line)) for line in report.bad_lines]
    if problems:
        listing = f"; all listed in {report.failures_file}" if report.failures_file else ""
        if len(problems) <= SHOWN_INLINE:
            shown = f" ({'; '.join(problems)}{listing})"
        else:  # too many for one line: every one on its own line above the summary, none left out
            print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
            shown = f" (listed above{listing})"
        counts = []
        if report.failed:
            counts.append(f"{len(report.failed)} of {report.inputs} input files failed")
        if report.bad_lines:
            counts.append(f"{len(report.bad_lines)} malformed manifest line{'s' * (len(report.bad_lines) > 1)} skipped")
        raise SpoofrlError(f"{' and '.join(counts)}{shown}; the manifest lists the others")
    return 0
