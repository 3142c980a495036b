"""`spoofrl data fetch`: real human speech (bona fide) from Debian packages, as a manifest."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_deprecated_alias, add_output_option, add_workers_option

DESCRIPTION = """\
Download real recorded speech shipped in Debian packages (`apt-get download`: no root needed, nothing is
installed), unpack it into a cache (`dpkg-deb -x`; resumable: a rerun skips finished packages), check every
clip, and write CACHE/manifest.csv: bona fide rows with speaker, language, gender, transcript, licence,
package, version, duration and sample rate per clip. Clips that are unreadable, not speech or duplicates
are listed with the reason in CACHE/problems.tsv and counted in the summary; so are clips that are
symbolic links or lie outside their package (refused), and a source left out whole ends the summary with a
WARNING line. The asterisk sources are G.722, which needs ffmpeg: checked before anything is downloaded.

Offline or on a system without apt: download the .deb files elsewhere and pass --debs DIR.
These packages are the real recordings for training and development; other real corpora are kept for
independent evaluation only.

sources:
"""

EPILOG = """examples:
  spoofrl data fetch                                    # everything (about 430 MB of packages)
  spoofrl data fetch --sources asterisk-en              # the smallest source (11 MB)
  spoofrl data fetch --sources fillets,klettres --debs ~/debs   # offline, from downloaded .deb files"""


def _sources_help() -> str:
    import textwrap

    from spoofrl.data.real.catalogue import SOURCES
    return "\n".join(textwrap.fill(f"{s.title} [{', '.join(s.packages)}; {s.license}]", width=108,
                                   initial_indent=f"  {name:<12} ", subsequent_indent=" " * 15,
                                   break_on_hyphens=False)
                     for name, s in SOURCES.items())


def register(sub):
    p = sub.add_parser("fetch", help="download real human speech from Debian packages (bona fide manifest)",
                       description=DESCRIPTION + _sources_help(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", default="all", metavar="NAME[,NAME]",
                   help="sources to fetch: all (default), names above, or a family (asterisk, fillets)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache folder (default: $SPOOFRL_CACHE/real, else ~/.cache/spoofrl/real)")
    p.add_argument("--debs", action="append", default=None, metavar="DIR",
                   help="use the .deb files in DIR instead of downloading (offline; repeatable)")
    add_deprecated_alias(p, "--out", add_output_option(
        p, "manifest to write (default: CACHE/manifest.csv; paths are relative to it)", metavar="MANIFEST.csv"))
    add_workers_option(p, 2, "parallel clip checks (default: 2)")
    p.add_argument("--deep", action="store_true",
                   help="decode every clip too (finds silent or damaged audio the header check misses; slower)")
    p.set_defaults(func=run)


def run(args) -> int:
    from spoofrl import prereqs
    from spoofrl.data.real import fetch_real_speech, resolve_sources
    from spoofrl.errors import SpoofrlError

    prereqs.require(prereqs.for_sources(resolve_sources(args.sources)))   # before anything is downloaded
    report = fetch_real_speech(args.sources, args.cache, args.debs, workers=args.workers, manifest=args.output,
                               deep=args.deep)
    for line in report.summary():
        if not line.startswith("not fetched: "):
            print(line)
    if report.failed:
        raise SpoofrlError(report.failure_message())
    return 0
