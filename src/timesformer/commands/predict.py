"""`timesformer predict` (placeholder until its issue lands)."""


def register(sub):
    sub.add_parser("predict", help="(not yet implemented)")
