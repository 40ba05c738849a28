"""`timesformer train -c CFG [--validate] [--amp] [-w WEIGHTS] [--resume] [--gpus 0,1] [-o K=V ...]`.

Runs in this process, or distributed when launched by torchrun
(`torchrun --nproc-per-node 2 -m timesformer train -c CFG`); `--gpus 0,1` launches torchrun itself.
"""

from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True, config_help: str = "") -> None:
    """`-c CONFIG` and the repeatable `-o KEY.PATH=VALUE` overrides, shared by the commands that read a config."""
    parser.add_argument("-c", "--config", required=required, help=config_help or "YAML config in PaddleVideo's schema")
    parser.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="set a config value (repeatable), e.g. -o DATASET.batch_size=4",
    )  # fmt: skip


def register(sub) -> None:
    parser = sub.add_parser(
        "train", help="train a model (one process, torchrun, or --gpus)",
        description="Train a TimeSformer as the config says; checkpoints go to output_dir.",
    )  # fmt: skip
    add_config_arguments(parser)
    parser.add_argument("--validate", action="store_true", help="validate every val_interval epochs; keep the best")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bf16; fp16 + grad scaler on CUDA if amp_dtype: float16)")
    parser.add_argument("--amp_level", choices=("O1", "O2"), default=None, help="PaddleVideo's AMP level")
    parser.add_argument("-w", "--weights", help="initial weights to fine-tune (any format load_model reads)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest saved state in output_dir")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the config's seed)")
    parser.add_argument("--gpus", default=None, help="GPU ids, e.g. 0,1: several ids launch one process per GPU")
    parser.add_argument("--log_dir", default=None, help="where train.log and TensorBoard go (default: output_dir)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.set_defaults(func=run)


def relaunch_argv(args: argparse.Namespace) -> list[str]:
    """This command's arguments without --gpus, for the torchrun it launches."""
    argv = ["train", "-c", args.config]
    for text in args.override:
        argv += ["-o", text]
    for flag in ("validate", "amp", "resume"):
        if getattr(args, flag):
            argv.append(f"--{flag}")
    for option in ("amp_level", "weights", "seed", "log_dir"):
        value = getattr(args, option)
        if value is not None:
            argv += [f"--{option}", str(value)]
    return argv


def launch_on_gpus(args: argparse.Namespace, gpu_ids: list[str]) -> int:
    import os
    import subprocess
    import sys

    from ..engine.distributed import torchrun_command

    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(gpu_ids))
    if "--debug" in sys.argv:
        env["TIMESFORMER_DEBUG"] = "1"
    command = torchrun_command(len(gpu_ids), relaunch_argv(args))
    print("launching:", " ".join(command), flush=True)
    return subprocess.call(command, env=env)


def check_run_paths(args: argparse.Namespace, cfg) -> None:
    """Refuse a run whose outputs (logs, checkpoints) would land on its inputs (config,
    weights, list files): e.g. `-w OUT/TimeSformer_best.safetensors` into the same OUT."""
    import re
    from pathlib import Path

    from ..engine.state import STATE_SUFFIX, WEIGHTS_SUFFIX, best_weights_path, interrupted_weights_path, state_path_for
    from ..errors import UserError
    from ..utils import check_distinct_paths

    out, name = cfg.output_path, cfg.model_name
    lists = {f"DATASET.{split}.file_path": getattr(cfg.DATASET, split).file_path or None for split in ("train", "valid")}
    inputs = {"-c": args.config, "-w": args.weights, **lists}
    check_distinct_paths(inputs, {
        f"{'--log_dir' if args.log_dir else 'output_dir'}'s train.log": Path(args.log_dir or out) / "train.log",
        "output_dir's metrics.jsonl": out / "metrics.jsonl",
        "the best checkpoint": [best_weights_path(out, name), state_path_for(best_weights_path(out, name))],
        "the interrupted checkpoint": [interrupted_weights_path(out, name), state_path_for(interrupted_weights_path(out, name))],
    })  # fmt: skip
    epoch_file = re.compile(re.escape(name) + r"_epoch_\d+(" + re.escape(WEIGHTS_SUFFIX) + "|" + re.escape(STATE_SUFFIX) + ")")
    for flag, path in inputs.items():
        if path and epoch_file.fullmatch(Path(path).name) and Path(path).resolve().parent == out.resolve():
            raise UserError(f"{flag} {path}: this run saves its epoch checkpoints under that name in {out}; copy it elsewhere first")


def run(args: argparse.Namespace) -> int:
    import os

    from ..errors import UserError

    device = args.device
    if args.gpus:
        gpu_ids = [g.strip() for g in args.gpus.split(",") if g.strip()]
        if not gpu_ids or not all(g.isdigit() for g in gpu_ids):
            raise UserError(f"--gpus {args.gpus}: expected GPU ids like 0 or 0,1,2,3")
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--gpus {args.gpus}: CUDA is not available on this machine (leave --gpus out to use the CPU)")
        if len(gpu_ids) > 1 and "WORLD_SIZE" not in os.environ:
            return launch_on_gpus(args, gpu_ids)
        device = device or f"cuda:{gpu_ids[0]}"

    from ..engine import distributed
    from ..engine.config import load_config
    from ..engine.train import TrainOptions, train_model

    cfg = load_config(args.config, args.override)
    check_run_paths(args, cfg)
    options = TrainOptions(
        validate=args.validate, amp=args.amp, amp_level=args.amp_level, weights=args.weights,
        resume=args.resume, seed=args.seed, log_dir=args.log_dir, device=device,
    )  # fmt: skip
    ctx = distributed.setup(device)
    try:
        result = train_model(cfg, options, ctx)
    finally:
        distributed.teardown(ctx)
    if result.interrupted_by:
        return 130 if result.interrupted_by == "SIGINT" else 143
    return 0
