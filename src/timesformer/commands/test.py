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
        "by MODEL.runtime_cfg.test.avg_type.",
    )  # fmt: skip
    add_config_arguments(parser)
    parser.add_argument("-w", "--weights", required=True, help="weights to test (any format load_model reads)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.add_argument("--amp", action="store_true", help="run the model under bf16 autocast")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..engine import distributed
    from ..engine.config import load_config
    from ..engine.evaluate import evaluate
    from ..engine.logging import RunLogger
    from ..engine.sampler import EvalBatchSampler
    from ..engine.train import build_dataset, make_loader
    from ..errors import UserError
    from ..model.checkpoints import load_weights
    from ..model.timesformer import build_model

    cfg = load_config(args.config, args.override)
    ctx = distributed.setup(args.device)
    log = RunLogger(None, enabled=ctx.is_main)
    try:
        model = build_model(**cfg.model_config())
        load_weights(model, args.weights)
        model.to(ctx.device)
        dataset = build_dataset(cfg, "test", cfg.seed)
        sampler = EvalBatchSampler(len(dataset), cfg.DATASET.test_batch_size, ctx.world_size, ctx.rank)
        loader = make_loader(dataset, sampler, cfg, ctx.device)
        log.start_bar(len(loader), "test")
        amp_dtype = torch.bfloat16 if args.amp else None
        result = evaluate(model, loader, ctx, cfg.MODEL.runtime_cfg.test.avg_type, amp_dtype, log.advance_bar)
        log.close_bar()
    finally:
        distributed.teardown(ctx)
    for index, path, reason in result.failed:
        log.info(f"[TEST] skipped {path}: {reason}")
    summary = f"({result.count} videos, {result.skipped} skipped)"
    if result.count == 0:
        raise UserError(f"{cfg.DATASET.test.file_path}: no readable video to test {summary}")
    log.info(f"[TEST] top1: {result.top1:.4f} top5: {result.top5:.4f} {summary}")
    return 0
