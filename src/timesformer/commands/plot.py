"""`timesformer plot OUTPUT_DIR [OUTPUT_DIR ...] [-o curves.png]`: training curves from metrics.jsonl.

Loss, learning rate, train and validation top-1 per epoch; several runs are overlaid, each
named by its folder.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser(
        "plot", help="plot loss, learning rate and top-1 per epoch of one or more training runs",
        description="Read each OUTPUT_DIR/metrics.jsonl (written by `timesformer train`) and draw loss, "
        "learning rate, train and validation top-1 per epoch, the runs overlaid.",
    )  # fmt: skip
    parser.add_argument("runs", nargs="+", metavar="OUTPUT_DIR", help="a training run's output_dir (holds metrics.jsonl)")
    parser.add_argument("-o", "--out", default="curves.png", help="PNG to write (default: curves.png)")
    parser.set_defaults(func=run)


def run_names(folders: list) -> list[str]:
    """Each run's folder name, with its parent's when two runs share a name."""
    from pathlib import Path

    names = [Path(f).resolve().name for f in folders]
    return [f"{Path(f).resolve().parent.name}/{n}" if names.count(n) > 1 else n for f, n in zip(folders, names)]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ..report.curves import read_curve
    from ..report.plots import curves_png, write_png
    from ..utils import check_distinct_paths

    metrics = [Path(folder) / "metrics.jsonl" for folder in args.runs]
    if not Path(args.out).suffix.lower() == ".png":
        raise UserError(f"-o {args.out}: the plot is a PNG; give a name ending in .png")
    check_distinct_paths({"OUTPUT_DIR": metrics}, {"-o": args.out})
    curves = {}
    for name, folder, file in zip(run_names(args.runs), args.runs, metrics):
        if not file.is_file():
            raise UserError(f"{folder}: no metrics.jsonl (not the output_dir of a `timesformer train` run)")
        curve = read_curve(file)
        if not curve:
            raise UserError(f"{file}: no epoch has been recorded yet")
        if name in curves:
            raise UserError(f"{folder}: given twice")
        curves[name] = curve
    write_png(curves_png(curves), args.out)
    epochs = ", ".join(f"{name} {len(curve)} epochs" for name, curve in curves.items())
    print(f"wrote {args.out} ({epochs})")
    return 0
