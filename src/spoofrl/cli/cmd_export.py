"""`spoofrl export` (being built; see the issue tracker)."""
from spoofrl.errors import SpoofrlError


def register(sub):
    p = sub.add_parser("export", help="(not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise SpoofrlError("'spoofrl export' is not built yet")
