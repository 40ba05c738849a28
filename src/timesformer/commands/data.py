"""`timesformer data` (placeholder until its issue lands)."""


def register(sub):
    sub.add_parser("data", help="(not yet implemented)")
