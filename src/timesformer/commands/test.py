"""`timesformer test -c CFG -w WEIGHTS [-o K=V ...]`: multi-view top-1 / top-5 over the test set.

Exact under torchrun: each video is evaluated by one rank and counted once. Unreadable videos are
named with their reason and counted as skipped; the command still succeeds.
"""

from __future__ import annotations

import argparse

from .train import add_config_arguments


def register(sub) -> None:
    parser = sub.add_parser(
        "test", help="top-1 / top-5 of weights on the config's test set",
        description="Multi-view test (the config's test pipeline, e.g. 3 UniformCrop views), views averaged "
        "by MODEL.runtime_cfg.test.avg_type. Prints one line per unreadable video and a final "
        "'[TEST] top1: ... top5: ... (N videos, K skipped)'.",
    )  # fmt: skip
    add_config_arguments(parser)
    parser.add_argument("-w", "--weights", required=True, help="weights to test (any format load_model reads)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.add_argument("--amp", action="store_true", help="run the model under bf16 autocast")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..devices import resolve_amp_dtype
    from ..engine import distributed
    from ..engine.config import load_config
    from ..engine.evaluate import run_test
    from ..engine.logging import RunLogger
    from ..errors import UserError

    cfg = load_config(args.config, args.override)
    ctx = distributed.setup(args.device)
    log = RunLogger(None, enabled=ctx.is_main)
    try:
        result = run_test(cfg, args.weights, ctx, log, resolve_amp_dtype(ctx.device, "bf16" if args.amp else "fp32"))
    finally:
        distributed.teardown(ctx)
    if result.count == 0:
        raise UserError(f"{cfg.DATASET.test.file_path}: no readable video to test ({result.skipped} skipped)")
    return 0
