"""`spoofrl data import FORMAT --root DIR --output MANIFEST.csv`: a public corpus as a spoofrl manifest."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_deprecated_alias, add_output_option, add_subset_option, require

DESCRIPTION = """\
Write a manifest (CSV path,label,attack,source,condition,subset) for a public corpus. Every audio file
is checked: missing files fail the import, all of them counted and listed in MANIFEST.csv.missing.txt.
Paths are written relative to the manifest's folder when the audio lies under it, else absolute.
Audio is looked for at its standard place, then anywhere under --root by file name. A malformed
protocol line fails with file:line and its text, and so does a line whose audio lies outside --root
(an absolute path, a '..' or a link leading out of it; --bonafide-root audio stays in its own folder).
ftgrpo also writes the targets of its records beside the manifest (for m.csv: m.rationales.jsonl for
generation.rationales, m.system.txt, m.prompt.txt); a record may have 1,048,576 characters and 100
levels of JSON nesting at most.

formats (what goes in each column):
"""


def _formats_help(importers) -> str:
    import textwrap
    return "\n".join(textwrap.fill(imp.summary, width=108, initial_indent=f"  {name:<16} ",
                                    subsequent_indent=" " * 19, break_on_hyphens=False)
                     for name, imp in importers.items())


def register(sub):
    from spoofrl.data.importers import IMPORTERS  # light: numpy/soundfile only, no torch
    p = sub.add_parser("import", help="write a manifest for a public corpus (ASVspoof, In-the-Wild, folders, ...)",
                       description=DESCRIPTION + _formats_help(IMPORTERS),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("format", choices=list(IMPORTERS), metavar="FORMAT", help="one of: " + ", ".join(IMPORTERS))
    p.add_argument("--root", required=True, metavar="DIR", help="the corpus folder (as unpacked)")
    p.add_argument("--protocol", action="append", default=[], metavar="FILE",
                   help="protocol / key file instead of the standard one under --root (repeatable for corpora "
                        "with one protocol per split; the split is read from the file name; ftgrpo: the paper's .jsonl / .json "
                        "label files, one or more)")
    add_deprecated_alias(p, "--out", add_output_option(p, "manifest to write (required)", metavar="MANIFEST.csv"))
    add_deprecated_alias(p, "--split", add_subset_option(p, "keep only these subsets: train/dev/eval (asvspoof2019-la, asvspoof5), eval/progress/"
                        "hidden (asvspoof2021-la/df), or 'all'; default: all, except asvspoof2021-la/df: eval "
                        "(the official evaluation subset)"))
    p.add_argument("--subset-name", default=None, metavar="NAME",
                   help="subset written for corpora without official splits (in-the-wild: eval, folders: split "
                        "folder or 'all', wavefake/mlaad: 'all', ftgrpo: the split in each label file's name)")
    p.add_argument("--bonafide-root", action="append", default=[], metavar="DIR",
                   help="folder of bona fide audio for fake-only corpora (wavefake: LJSpeech/JSUT, mlaad: "
                        "M-AILABS); repeatable")
    p.set_defaults(func=run)


def run(args) -> int:
    from collections import Counter

    from spoofrl.data.importers import IMPORTERS, ImportOptions, import_corpus
    from spoofrl.data.manifest import write_manifest

    output = require(args.output, "--output MANIFEST.csv")
    opts = ImportOptions(subsets=args.subsets, subset_name=args.subset_name, bonafide_roots=args.bonafide_root)
    rows = import_corpus(args.format, args.root, protocols=args.protocol, options=opts, out=output)
    n = write_manifest(rows, output)
    counts = Counter((r.subset, r.label) for r in rows)
    parts = ", ".join(f"{subset}: {counts[(subset, 'bonafide')]} bona fide / {counts[(subset, 'spoof')]} spoof"
                      for subset in sorted({s for s, _ in counts}))
    print(f"{output}: {n} utterances ({parts})")
    companions = IMPORTERS[args.format].companions
    if companions is not None:
        for line in companions(rows, output):
            print(line)
    return 0
