"""`timesformer explain -w WEIGHTS [-c CONFIG] -i VIDEO -o DIR [--method rollout|last|grad|alti|norm|ig|occlusion|lrp] [--target CLASS]`.

Where the model looked in one video: per sampled frame, a map over the patch grid (see
`timesformer.inference.explain` for the eight methods). Writes, for video `<id>.<ext>`:

    DIR/<id>_attention.npy   float32 [T, h, w], each frame's map scaled to [0, 1]
    DIR/<id>_attention.png   the T frames above their heat maps, predicted label in the title
    DIR/<id>_attention.mp4   the clip with its maps blended in, upscaled to >= 256 px

The clip is the test pipeline's centre crop (the config's, else PaddleVideo's TimeSformer
pipeline for the checkpoint): one view, so that every map lies on the pixels shown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError


def register(sub) -> None:
    parser = sub.add_parser(
        "explain", help="where the model looked: per-frame attention maps of one video",
        description="Per sampled frame, a map of how much the prediction drew on each patch "
        "(attention rollout, the last block's cls attention, a class-specific gradient-weighted "
        "rollout, ALTI's or the norm-based value-aware contributions rolled out, Integrated Gradients per patch, the logit's drop when each patch is occluded, or conservative LRP), "
        "written as .npy, a PNG strip and an MP4 overlay.",
    )  # fmt: skip
    parser.add_argument("-w", "--weights", required=True, help="checkpoint in any format load_model reads")
    parser.add_argument("-c", "--config",
                        help="YAML config: the architecture (checked against the weights) and the test pipeline")  # fmt: skip
    parser.add_argument("-i", "--input", required=True, help="one video file")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="folder for <video_id>_attention.{npy,png,mp4}")  # fmt: skip
    parser.add_argument("--method", default="rollout", metavar="rollout|last|grad|alti|norm|ig|occlusion|lrp",
                        help="rollout (default): attention rollout through every block; last: the last block's "
                        "cls attention; grad: attention weighted by its gradient for --target, rolled out; alti: each "
                        "token's share of every attention output by the L1 closeness of its value-and-residual "
                        "vector (Ferrando et al. 2022), rolled out; norm: the same with shares by the vectors' norms "
                        "(Kobayashi et al. 2021), rolled out; "
                        "ig: Integrated Gradients for --target from the all-zero clip, summed per patch (32 "
                        "forward+backward passes); occlusion: per frame and patch, the drop of --target's logit "
                        "when that patch is set to the all-zero baseline, positive part (T*h*w forwards: "
                        "1568 for ViT-B 8x224); lrp: conservative LRP of --target (Ali et al. 2022): gradient x input "
                        "at the patch tokens with the attention probabilities, LayerNorm's std and the GELU gate held "
                        "constant in the backward pass, positive part (one forward and backward)")  # fmt: skip
    parser.add_argument("--target", type=int, default=None, metavar="CLASS",
                        help="class id the grad, ig, occlusion or lrp map explains (default: the predicted class)")  # fmt: skip
    parser.add_argument("--label_file", help="class names for the title (default: Kinetics-400 names for 400 classes)")
    parser.set_defaults(func=run)


def output_paths(out_dir: str | Path, video: str | Path) -> dict[str, Path]:
    """The three files written for `video`, by suffix."""
    stem = Path(video).stem
    return {suffix: Path(out_dir) / f"{stem}_attention.{suffix}" for suffix in ("npy", "png", "mp4")}


def run(args: argparse.Namespace) -> int:
    from ..inference.explain import METHODS
    from ..utils import check_distinct_paths

    if args.method not in METHODS:
        raise UserError(f"--method {args.method}: use one of {', '.join(METHODS)}")
    video = Path(args.input)
    if video.is_dir():
        raise UserError(f"-i {video}: a folder; explain takes one video file")
    if not video.is_file():
        raise UserError(f"-i {video}: no such file")
    if args.target is not None and args.target < 0:
        raise UserError(f"--target {args.target}: a class id is >= 0")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir}: exists and is not a folder")
    outputs = output_paths(out_dir, video)
    check_distinct_paths(
        {"-w": args.weights, "-c": args.config, "-i": video, "--label_file": args.label_file},
        {"-o": list(outputs.values())},
    )

    import numpy as np

    from ..inference.explain import centre_crop_pipeline, explain
    from ..inference.labels import default_labels
    from ..inference.loading import load_checked_model
    from ..inference.render import clip_frames, write_overlay_video, write_strip_png
    from ..utils import atomic_path

    model, spec = load_checked_model(args.weights, args.config)
    labels = default_labels(spec.num_classes, args.label_file)
    clip = centre_crop_pipeline(spec)(str(video))[0]
    result = explain(model, clip, method=args.method, target=args.target)

    def name(c: int) -> str:
        return labels[c] if labels else f"class {c}"

    title = f"{video.name}: {name(result.predicted)} ({result.score:.2f}) · {args.method}"
    if result.target != result.predicted:
        title += f" for {name(result.target)}"
    frames = clip_frames(clip, spec.mean, spec.std)
    with atomic_path(outputs["npy"]) as tmp, open(tmp, "wb") as f:
        np.save(f, result.maps)
    plotted = write_strip_png(frames, result.maps, outputs["png"], title)
    height, width = write_overlay_video(frames, result.maps, outputs["mp4"])

    top1 = f"{labels[result.predicted]} (class {result.predicted}, " if labels else f"class {result.predicted} ("
    print(f"{video}: top-1 {top1}score {result.score:.4f}); {args.method} map of class {result.target}")
    print(f"  maps {list(result.maps.shape)}: {outputs['npy']}")
    print(f"  strip: {outputs['png']}" if plotted else "  strip: skipped (pip install matplotlib to draw it)")
    print(f"  overlay {width}x{height}: {outputs['mp4']}")
    return 0
