"""`timesformer demo` (placeholder until its issue lands)."""


def register(sub):
    sub.add_parser("demo", help="(not yet implemented)")
