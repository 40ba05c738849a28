"""`timesformer demo [--workdir DIR] [--device cpu|cuda] [--seed N] [--quick]`.

Writes a motion dataset (→ ← ↑ ↓), trains divided space-time and space-only TimeSformers on it,
tests both, exports the divided one to ONNX and predicts a few videos: see `timesformer.demo`.
Exits 1 when divided attention does not beat space-only by a clear margin (the claim fails).
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser(
        "demo", help="show in minutes, on a CPU, that attention across time learns motion direction",
        description="Generate a moving-square video dataset, train divided space-time and space-only "
        "TimeSformers, test both, export the divided one to ONNX and predict a few videos. "
        "Writes DIR/summary.json and DIR/curves.png.",
    )  # fmt: skip
    parser.add_argument("--workdir", default="demo_run", help="where data, checkpoints and results go (default: demo_run)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and of both trainings (default: 0)")
    parser.add_argument("--quick", action="store_true", help="a few videos and one epoch: checks that every step runs")
    parser.add_argument("--config", default=None, help="demo config (default: configs/demo_motion.yaml)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..demo import DemoOptions, run_demo
    from ..errors import UserError

    if not (args.device == "cpu" or args.device.startswith("cuda")):
        raise UserError(f"--device {args.device}: expected cpu or cuda")
    if Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        raise UserError(f"--workdir {args.workdir}: exists and is not a folder")
    options = DemoOptions(workdir=Path(args.workdir), device=args.device, seed=args.seed, quick=args.quick,
                          config=Path(args.config) if args.config else None)  # fmt: skip
    summary = run_demo(options)
    return 1 if summary["claim_holds"] is False else 0
