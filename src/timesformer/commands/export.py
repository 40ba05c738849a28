"""`timesformer export` (placeholder until its issue lands)."""


def register(sub):
    sub.add_parser("export", help="(not yet implemented)")
