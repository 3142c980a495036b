"""`spoofrl data import` (being built; see the issue tracker)."""
from spoofrl.errors import SpoofrlError


def register(sub):
    p = sub.add_parser("import", help="(not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise SpoofrlError("'spoofrl data import' is not built yet")
