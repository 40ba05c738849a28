"""The `timesformer` command line: one thin subcommand per module in `timesformer.commands`.

A user's mistake (`UserError`) prints as one line and exits 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from . import __version__
from .allocator import reuse_freed_memory
from .errors import UserError

# Each module defines `register(subparsers)`, which adds its parser and sets `func`.
COMMANDS = ("train", "test", "export", "predict", "features", "convert", "weights", "data", "bench", "demo", "plot", "explain", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timesformer",
        description="Train, test, export and run TimeSformer video classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"timesformer {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"timesformer.commands.{name}").register(sub)
    return parser


def _show_warning_in_one_line(message, category, filename, lineno, file=None, line=None):
    print(f"timesformer: warning: {message}", file=file or sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `--debug` is accepted anywhere on the line, not only before the subcommand.
    debug = "--debug" in argv or os.environ.get("TIMESFORMER_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if not debug:
        warnings.showwarning = _show_warning_in_one_line
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    reuse_freed_memory()
    try:
        return int(args.func(args) or 0)
    # OSError: a path given or derived cannot be read or written (missing dir, permissions, disk full).
    except (UserError, OSError) as err:
        if debug:
            raise
        print(f"timesformer {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"timesformer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
