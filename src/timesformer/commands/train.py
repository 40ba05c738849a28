"""`timesformer train` (placeholder until its issue lands)."""


def register(sub):
    sub.add_parser("train", help="(not yet implemented)")
