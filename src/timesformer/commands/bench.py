"""`timesformer bench`: speed of the model, training step, preprocessing, prediction and data
loading on this machine, as fractions of its measured matmul peak and, when transformers is
installed, side by side with its TimeSformer (see `timesformer.bench`)."""

from __future__ import annotations

import argparse
import importlib.util

from ..bench.options import PRECISIONS, WHAT, BenchOptions, parse_peak_tflops


def comma_list(convert, choices=None):
    """argparse type for `a,b,c` lists, e.g. `--batch 1,4`, `--precision fp32,bf16`."""

    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        try:
            values = [convert(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: every item must be a {convert.__name__}") from None
        unknown = [v for v in values if choices is not None and v not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"{unknown[0]!r} is not one of {', '.join(choices)}")
        if convert is int and min(values) < 0:
            raise argparse.ArgumentTypeError(f"{text!r}: numbers must not be negative")
        return values

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's flags (`timesformer bench`; `python -m timesformer.bench` runs the same command)."""
    has_transformers = importlib.util.find_spec("transformers") is not None
    parser.add_argument("--what", type=comma_list(str, WHAT), default=list(WHAT), metavar=",".join(WHAT),
                        help="what to measure (default: all)")  # fmt: skip
    parser.add_argument("--preset", choices=("vit-b", "tiny"), default="vit-b",
                        help="model size: vit-b = TimeSformer-B 8x224 (the K400 model), tiny = a seconds-long smoke run")  # fmt: skip
    parser.add_argument("--weights", help="bench this checkpoint (any format load_model reads) instead of a preset's random weights")
    parser.add_argument("--batch", type=comma_list(int), default=[1, 4], metavar="1,4", help="clips per forward / train step")
    parser.add_argument("--precision", type=comma_list(str, PRECISIONS), default=["fp32", "bf16"], metavar="fp32,bf16",
                        help="fp32, or autocast bf16 (fp16: CUDA only)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each case; the median is reported (default: 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs of each case first (default: 2)")
    parser.add_argument("--videos", nargs="+", metavar="PATH",
                        help="videos or folders of videos for preprocess/predict/onnx/loader (default: a synthetic 1280x720 10 s H.264 clip)")  # fmt: skip
    parser.add_argument("--predict-videos", type=int, default=16, metavar="N",
                        help="videos in the end-to-end predict folder, cycled from --videos (default: 16)")  # fmt: skip
    parser.add_argument("--workers", type=comma_list(int), default=[0, 2], metavar="0,2", help="DataLoader worker counts to try")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd forward against eager (compile time reported apart)")
    parser.add_argument("--checkpointing", action="store_true", help="also time the train step with activation checkpointing")
    parser.add_argument("--compare-transformers", action=argparse.BooleanOptionalAction, default=has_transformers,
                        help="run transformers' TimeSformer beside ours (default: on when transformers is installed)")  # fmt: skip
    parser.add_argument("--accuracy-clips", type=int, default=4, help="inputs for the bf16-vs-fp32 logit check (default: 4)")
    parser.add_argument("--matmul-size", type=comma_list(int), metavar="2048,4096",
                        help="square GEMM sizes for the peak (default: 2048,4096; tiny: 1024)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--peak-tflops", metavar="bf16=989,fp32=67",
                        help="the device's datasheet peaks in TFLOP/s per precision (fp32, tf32, bf16, fp16): adds MFU, "
                        "each precision against its own peak; a bare number only with a single --precision")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")


def register(sub) -> None:
    parser = sub.add_parser(
        "bench", help="measure model, training, preprocessing, prediction and data-loading speed",
        description="Measure speed on this machine (median of --repeat runs after --warmup), as GFLOP/s and the "
        "fraction of the matmul peak measured in the same run; with transformers installed, its TimeSformer "
        "runs interleaved with ours on the same input.",
    )  # fmt: skip
    add_arguments(parser)
    parser.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    peaks = parse_peak_tflops(args.peak_tflops, args.precision) if args.peak_tflops else {}
    return BenchOptions(
        what=args.what, preset=args.preset, weights=args.weights, batch=args.batch, precision=args.precision,
        repeat=args.repeat, warmup=args.warmup, videos=args.videos, predict_videos=args.predict_videos,
        workers=args.workers, compile=args.compile, checkpointing=args.checkpointing,
        compare_transformers=args.compare_transformers, accuracy_clips=args.accuracy_clips,
        matmul_size=args.matmul_size, device=args.device, threads=args.threads, peak_tflops=peaks, json=args.json,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ..bench import run_bench

    run_bench(options_from_args(args))
    return 0
