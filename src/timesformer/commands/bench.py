"""`timesformer bench` (placeholder until its issue lands)."""


def register(sub):
    sub.add_parser("bench", help="(not yet implemented)")
