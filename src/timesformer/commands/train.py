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
    parser.add_argument("--gpus", default=None, help="GPU ids, e.g. 0,1 (counted within CUDA_VISIBLE_DEVICES when set): "
                        "several ids launch one process per GPU with torchrun")  # fmt: skip
    parser.add_argument("--log_dir", default=None, help="where train.log and TensorBoard go (default: output_dir)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.add_argument("--strict_fp32", action="store_true", help="CUDA: full fp32 matmuls (default: TF32)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms: the same weights on every rerun on one device (slower on GPUs)")
    parser.set_defaults(func=run)


def relaunch_argv(args: argparse.Namespace) -> list[str]:
    """This command's arguments without --gpus, for the torchrun it launches."""
    argv = ["train", "-c", args.config]
    for text in args.override:
        argv += ["-o", text]
    for flag in ("validate", "amp", "resume", "strict_fp32", "deterministic"):
        if getattr(args, flag):
            argv.append(f"--{flag}")
    for option in ("amp_level", "weights", "seed", "log_dir"):
        value = getattr(args, option)
        if value is not None:
            argv += [f"--{option}", str(value)]
    return argv


def visible_gpus(requested: str, visible: str | None) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entries `--gpus` asks for: ids index the GPUs this process may
    already see (a scheduler's CUDA_VISIBLE_DEVICES), or every GPU when it is unset."""
    from ..errors import UserError

    ids = [g.strip() for g in requested.split(",") if g.strip()]
    if not ids or not all(g.isdigit() for g in ids):
        raise UserError(f"--gpus {requested}: expected GPU ids like 0 or 0,1,2,3")
    if len(set(ids)) != len(ids):
        raise UserError(f"--gpus {requested}: a GPU is named twice")
    if visible is None or not visible.strip():
        return ids
    allowed = [v.strip() for v in visible.split(",") if v.strip()]
    for g in ids:
        if int(g) >= len(allowed):
            raise UserError(f"--gpus {requested}: id {g} is beyond the {len(allowed)} GPU(s) this job may use "
                            f"(CUDA_VISIBLE_DEVICES={visible}; --gpus counts from 0 within them)")  # fmt: skip
    return [allowed[int(g)] for g in ids]


def launch_on_gpus(args: argparse.Namespace, gpus: list[str]) -> int:
    """torchrun with one process per GPU; it does not outlive this process."""
    import os
    import subprocess
    import sys

    from ..engine.distributed import torchrun_command

    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(gpus))
    if "--debug" in sys.argv:
        env["TIMESFORMER_DEBUG"] = "1"
    command = torchrun_command(len(gpus), relaunch_argv(args))
    print("launching:", " ".join(command), flush=True)
    launcher = subprocess.Popen(command, env=env)
    try:
        return launcher.wait()
    finally:
        if launcher.poll() is None:  # we were stopped (SIGTERM to us alone): torchrun stops its workers
            launcher.terminate()
            launcher.wait()


def run(args: argparse.Namespace) -> int:
    import os

    from ..errors import UserError

    device = args.device
    if args.gpus:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError(f"--gpus {args.gpus}: this process was started by torchrun (WORLD_SIZE="
                            f"{os.environ['WORLD_SIZE']}), which already placed the processes; leave --gpus out "
                            f"and choose GPUs with CUDA_VISIBLE_DEVICES and --nproc-per-node")  # fmt: skip
        gpus = visible_gpus(args.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--gpus {args.gpus}: CUDA is not available on this machine (leave --gpus out to use the CPU)")
        if len(gpus) > 1:
            return launch_on_gpus(args, gpus)
        device = device or f"cuda:{args.gpus.strip()}"  # an index among the GPUs this process sees

    from ..engine import distributed
    from ..engine.config import load_config
    from ..engine.train import TrainOptions, train_model

    cfg = load_config(args.config, args.override)
    options = TrainOptions(
        validate=args.validate, amp=args.amp, amp_level=args.amp_level, weights=args.weights,
        resume=args.resume, seed=args.seed, log_dir=args.log_dir, device=device,
        strict_fp32=args.strict_fp32, deterministic=args.deterministic,
    )  # fmt: skip
    ctx = distributed.setup(device)
    try:
        result = train_model(cfg, options, ctx)
    finally:
        distributed.teardown(ctx)
    if result.interrupted_by:
        return 130 if result.interrupted_by == "SIGINT" else 143
    return 0
