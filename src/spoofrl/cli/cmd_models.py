"""`spoofrl models` (being built; see the issue tracker)."""
from spoofrl.errors import SpoofrlError


def register(sub):
    p = sub.add_parser("models", help="(not built yet)")
    p.set_defaults(func=run)


def run(args):
    raise SpoofrlError("'spoofrl models' is not built yet")
