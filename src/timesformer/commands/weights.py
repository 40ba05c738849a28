"""`timesformer weights` (placeholder until its issue lands)."""


def register(sub):
    sub.add_parser("weights", help="(not yet implemented)")
