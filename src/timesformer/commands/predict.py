"""`timesformer predict -c CFG --input_file PATH [--model_file X.onnx | -w WEIGHTS]`: top-k per video.

Prints, per video, PaddleVideo's lines:

    Current video file: data/example.avi
    	top-1 class: 5
    	top-1 score: 0.9999722242355347

and with `--top_k K` > 1 the lists `top-K class: [...]`, `top-K score: [...]` after them;
then `top-K label: ...` when class names are known. Scores are the softmax of the
view-averaged logits (the averaged softmaxes when `avg_type` is "prob").

`--model_file` runs ONNX Runtime on a `timesformer export` file; `-w` (or PaddleVideo's
`--params_file` without `--model_file`) runs PyTorch on any checkpoint. A video that cannot
be read is named on one line (stderr), the others are still predicted, and the exit status is 1.

`--window S [--stride S]` predicts along each video instead: one line `start-end label score`
per window (`--json`: a `windows` list per video; `--plot FILE.png`: the timeline drawn).
`--stream SOURCE [--window S] [--every S]` predicts on a live stream, one line per prediction
with its time and latency (`--json FILE`: JSON lines as they come), until the stream ends or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..errors import UserError
from .train import add_config_arguments


def str2bool(text: str) -> bool:
    """PaddleVideo's `--use_gpu=True` style."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "y", "on"):
        return True
    if value in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def register(sub) -> None:
    parser = sub.add_parser(
        "predict", help="top-k classes of videos, with ONNX Runtime or PyTorch",
        description="Predict the top-k classes of a video, a folder of videos or a list file "
        "(`path [label]` lines), as PaddleVideo's predict.py prints them.",
    )  # fmt: skip
    add_config_arguments(parser, required=False,
                         config_help="YAML config (PaddleVideo schema); with -w: the architecture and test pipeline")  # fmt: skip
    parser.add_argument("-i", "--input_file", help="a video, a folder of videos, or a list file")
    parser.add_argument("--model_file", help="ONNX model from `timesformer export` (runs ONNX Runtime)")
    parser.add_argument("-w", "--weights", help="checkpoint in any format load_model reads (runs PyTorch)")
    parser.add_argument("--params_file", help="PaddleVideo's flag: ignored with --model_file (ONNX keeps its weights), else the same as -w")
    parser.add_argument("--use_gpu", type=str2bool, default=False, metavar="True|False", help="run on CUDA when available (default: False)")
    parser.add_argument("--batch_size", type=int, default=None, help="videos per forward pass (default: 1; 8 on a GPU)")
    parser.add_argument("--top_k", type=int, default=None, help="classes to show (default: the config's INFERENCE.top_k, else 1)")
    parser.add_argument("--label_file", help="class names, `id name` or one name per line (default: beside the ONNX model, or Kinetics-400 for 400 classes)")
    parser.add_argument("--json", metavar="FILE", help="also write the predictions as a JSON list")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="PyTorch autocast precision; auto: bf16 where the device computes it natively, else fp32 "
                        "(default: auto); ONNX Runtime runs the fp32 model")  # fmt: skip
    parser.add_argument("--num_workers", type=int, default=None,
                        help="threads decoding videos ahead of the model; 0: each video just before its forward "
                        "(default: 0 on a CPU the model's threads fill, else up to 2 on the cores it leaves; "
                        "one per core on a GPU)")  # fmt: skip
    parser.add_argument("--window", type=float, default=None, metavar="S",
                        help="predict along each video: one prediction per window of S seconds (with --stream: the window "
                        "predicted on, default: the test clip's span)")  # fmt: skip
    parser.add_argument("--stride", type=float, default=None, metavar="S", help="seconds between window starts (default: --window)")
    parser.add_argument("--plot", metavar="FILE.png", help="with --window: draw the timelines (needs matplotlib)")
    parser.add_argument("--stream", metavar="SOURCE",
                        help="live source: camera device (/dev/video0), rtsp/http/udp URL, or - for stdin")  # fmt: skip
    parser.add_argument("--every", type=float, default=1.0, metavar="S", help="with --stream: seconds of stream between predictions (default: 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.config import load_config
    from ..inference.inputs import list_videos
    from ..utils import check_distinct_paths

    _check_modes(args)
    videos = None if args.stream is not None else list_videos(args.input_file)
    if videos:  # the videos a folder or list names are inputs too: --json may not replace one
        check_distinct_paths({"-i": videos}, {"--json": args.json, "--plot": args.plot})
    if args.override and not args.config:
        raise UserError(f"-o {args.override[0]}: overrides need a config (-c)")
    cfg = load_config(args.config, args.override) if args.config else None
    predictor = _build_predictor(args, cfg)
    print(f"[predict] engine: {predictor.engine.description}", file=sys.stderr)
    if args.stream is None and args.window is None:  # windows and streams are decoded their own way
        print(f"[predict] feed: {predictor.feed(args.batch_size)}", file=sys.stderr)
    top_k = args.top_k if args.top_k is not None else cfg.INFERENCE.top_k if cfg else 1
    top_k = min(top_k, predictor.spec.num_classes)
    if args.stream is not None:
        return _run_stream(args, predictor, top_k)
    if args.window is not None:
        return _run_windows(args, videos, predictor, top_k)
    return _run_videos(args, videos, predictor, top_k)


def _check_modes(args: argparse.Namespace) -> None:
    """Flag combinations and values, before any file is read."""
    from ..inference.predictor import check_feed_args
    from ..inference.windows import check_window_args
    from ..utils import check_distinct_paths

    if (args.input_file is None) == (args.stream is None):
        raise UserError("give either -i/--input_file (videos) or --stream SOURCE (a live stream)")
    check_feed_args(args.batch_size, args.num_workers)
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top_k {args.top_k}: must be at least 1")
    check_window_args(args.window, args.stride)
    if not (math.isfinite(args.every) and 0 < args.every <= 1e5):
        raise UserError(f"--every {args.every}: must be a number of seconds > 0")
    if args.plot and args.window is None:
        raise UserError("--plot draws the timeline of --window predictions: give --window S")
    if args.stream is not None and (args.plot or args.stride is not None):
        raise UserError("--plot and --stride go with --window on files; a stream predicts every --every seconds")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UserError(f"--plot {args.plot}: must end in .png")
    inputs = {"-i": args.input_file, "-c": args.config, "-w": args.weights or args.params_file,
              "--model_file": args.model_file, "--label_file": args.label_file}  # fmt: skip
    if args.stream not in (None, "-"):
        inputs["--stream"] = args.stream
    check_distinct_paths(inputs, {"--json": args.json, "--plot": args.plot})


def _run_videos(args: argparse.Namespace, videos: list[str], predictor, top_k: int) -> int:
    from ..errors import VideoReadError
    from ..utils import atomic_write_text

    predictions, failed = [], []
    for result in predictor.iter_predict(videos, top_k=top_k, batch_size=args.batch_size):
        if isinstance(result, VideoReadError):
            failed.append(result)
            print(f"timesformer predict: error: {result}", file=sys.stderr)
            continue
        predictions.append(result)
        print(format_prediction(result, top_k), flush=True)

    if args.json:
        records = [
            {"video_id": p.video_id, "topk_class": p.topk_class, "topk_scores": p.topk_scores, "topk_label": p.topk_label}
            for p in predictions
        ]
        atomic_write_text(args.json, json.dumps(records, indent=2) + "\n")
    if failed and len(videos) > 1:
        print(f"timesformer predict: {len(failed)} of {len(videos)} videos could not be read", file=sys.stderr)
    return 1 if failed else 0


def _run_windows(args: argparse.Namespace, videos: list[str], predictor, top_k: int) -> int:
    """One line per window, `start-end label score`, under each video's header line."""
    from ..errors import VideoReadError
    from ..utils import atomic_write_text

    timelines, failed = [], []
    for result in predictor.iter_timelines(videos, args.window, args.stride, top_k, args.batch_size):
        if isinstance(result, VideoReadError):
            failed.append(result)
            print(f"timesformer predict: error: {result}", file=sys.stderr)
            continue
        timelines.append(result)
        print(f"Current video file: {result.video_id}")
        for w in result.windows:
            print(f"\t{w.start_s:.2f}-{w.end_s:.2f} {_name(w.topk_label, w.topk_class)} {w.topk_scores[0]:.4f}", flush=True)
    if args.json:
        records = [{"video_id": t.video_id, "windows": [w.to_dict() for w in t.windows]} for t in timelines]
        atomic_write_text(args.json, json.dumps(records, indent=2) + "\n")
    if args.plot and timelines:
        from ..inference.timeline_plot import plot_timelines

        plot_timelines(timelines, predictor.labels, args.plot)
    if failed and len(videos) > 1:
        print(f"timesformer predict: {len(failed)} of {len(videos)} videos could not be read", file=sys.stderr)
    return 1 if failed else 0


def _run_stream(args: argparse.Namespace, predictor, top_k: int) -> int:
    """One line per prediction as it comes; JSON lines to --json, flushed each time."""
    import contextlib

    made, dropped = 0, 0
    print(f"[predict] reading {args.stream} (Ctrl-C ends)", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(args.json, "a", encoding="utf-8")) if args.json else None
        try:
            for p in predictor.stream(args.stream, args.window, args.every, top_k):
                made, dropped = made + 1, dropped + p.dropped
                late = f"  ({p.dropped} window{'s' if p.dropped > 1 else ''} dropped: model slower than real time)" if p.dropped else ""
                print(f"[{p.start_s:8.2f}-{p.end_s:.2f}s] {_name(p.topk_label, p.topk_class)} {p.topk_scores[0]:.4f}"
                      f"  latency {p.latency_s * 1000:.0f} ms{late}", flush=True)  # fmt: skip
                if sink is not None:
                    sink.write(json.dumps(p.to_dict()) + "\n")
                    sink.flush()
        except KeyboardInterrupt:
            print("[predict] stopped (Ctrl-C)", file=sys.stderr)
    print(f"[predict] stream: {made} predictions, {dropped} windows dropped", file=sys.stderr)
    return 0


def _name(labels: list[str] | None, classes: list[int]) -> str:
    return labels[0] if labels else str(classes[0])


def format_prediction(p, top_k: int) -> str:
    """PaddleVideo's lines (rank 1 as scalars), then the top-k lists when k > 1, then the names."""
    lines = [
        f"Current video file: {p.video_id}",
        f"\ttop-1 class: {p.topk_class[0]}",
        f"\ttop-1 score: {p.topk_scores[0]}",
    ]
    if top_k > 1:
        lines += [f"\ttop-{top_k} class: {p.topk_class}", f"\ttop-{top_k} score: {p.topk_scores}"]
    if p.topk_label is not None:
        labels = p.topk_label[0] if top_k == 1 else "[" + ", ".join(p.topk_label) + "]"
        lines.append(f"\ttop-{top_k} label: {labels}")
    return "\n".join(lines)


def _build_predictor(args: argparse.Namespace, cfg):
    from ..devices import resolve_device
    from ..inference import Predictor

    weights = args.weights
    if args.model_file and weights:
        raise UserError("give either --model_file (ONNX Runtime) or -w/--weights (PyTorch), not both")
    if args.params_file and not args.model_file:
        weights = weights or args.params_file
    if args.label_file is not None and not Path(args.label_file).is_file():
        raise UserError(f"--label_file {args.label_file}: file not found")

    if args.model_file:
        model_file = Path(args.model_file)
        if model_file.suffix.lower() == ".pdmodel":
            raise UserError(
                f"--model_file {model_file}: Paddle inference models are not supported; export the .pdparams "
                "with `timesformer export`, or pass them with -w"
            )
        if args.precision not in ("fp32", "auto"):
            print(f"[predict] --precision {args.precision}: ONNX Runtime runs the exported fp32 model", file=sys.stderr)
        return Predictor.from_onnx(
            model_file, use_gpu=args.use_gpu, label_file=args.label_file, num_workers=args.num_workers
        )

    if not weights:
        raise UserError("give --model_file (an exported ONNX model) or -w/--weights (a checkpoint)")
    device = resolve_device("auto" if args.use_gpu else "cpu")
    if args.use_gpu and device.type == "cpu":
        print("[predict] --use_gpu=True but no CUDA device is available: running on CPU", file=sys.stderr)
    return Predictor.from_weights(
        weights,
        config=cfg,
        device=device,
        precision=args.precision,
        label_file=args.label_file,
        num_workers=args.num_workers,
    )
