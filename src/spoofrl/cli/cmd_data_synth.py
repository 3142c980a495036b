"""`spoofrl data synth` (being built; see the issue tracker)."""
from spoofrl.errors import SpoofrlError


def register(sub):
    p = sub.add_parser("synth", help="(not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise SpoofrlError("'spoofrl data synth' is not built yet")
