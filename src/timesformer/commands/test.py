"""`timesformer test` (placeholder until its issue lands)."""


def register(sub):
    sub.add_parser("test", help="(not yet implemented)")
