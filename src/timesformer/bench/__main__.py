"""`python -m timesformer.bench ...` is `timesformer bench ...`."""

import sys

from ..cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
