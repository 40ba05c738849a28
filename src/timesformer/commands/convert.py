"""`timesformer convert` (placeholder until its issue lands)."""


def register(sub):
    sub.add_parser("convert", help="(not yet implemented)")
