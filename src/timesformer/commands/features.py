"""`timesformer features -w WEIGHTS -i INPUT -o DIR`: one embedding per video (or per window).

Writes `DIR/features.npy` (float32 `[N, D]`) and `DIR/features.jsonl` (N lines, same order:
`{"video_id", "path", "start_s", "end_s"}`). A row is the final-norm cls token of each test
view, averaged over the views; with `--window S` one row per window of S seconds. Rerunning
with the same DIR skips the videos already written; broken videos are named, counted and
skipped. Under torchrun each process takes its share and the rows are merged at the end,
the same files as one process writes.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError


def register(sub) -> None:
    parser = sub.add_parser(
        "features", help="video embeddings (final-norm cls token) as .npy + .jsonl",
        description="Write the embedding of each video (or of each window along it) to DIR/features.npy, "
        "with one line per row in DIR/features.jsonl. Resumable; runs under torchrun.",
    )  # fmt: skip
    parser.add_argument("-w", "--weights", required=True, help="checkpoint in any format load_model reads")
    parser.add_argument("-c", "--config", help="YAML config: the architecture and test pipeline (default: from the checkpoint)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY.PATH=VALUE", help="set a config value (repeatable)")
    parser.add_argument("-i", "--input_file", "--input", required=True, help="a video, a folder of videos (recursive), or a list file")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for features.npy and features.jsonl")
    parser.add_argument("--window", type=float, default=None, metavar="S", help="one row per window of S seconds (default: one row per video)")
    parser.add_argument("--stride", type=float, default=None, metavar="S", help="seconds between window starts (default: --window)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="autocast precision; auto: bf16 where the device computes it natively, else fp32 (default: auto)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    parser.add_argument("--batch_size", type=int, default=None, help="videos (or windows) per forward pass (default: 1; 8 on a GPU)")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="threads decoding videos ahead of the model; 0: each video just before its forward "
                        "(default: 0 on a CPU the model's threads fill, else up to 2 on the cores it leaves; "
                        "one per core on a GPU)")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..engine.distributed import all_gather_objects, barrier, setup, teardown
    from ..inference import Predictor
    from ..inference.feature_files import FeatureFiles, output_paths
    from ..inference.inputs import list_videos
    from ..inference.predictor import check_feed_args
    from ..inference.windows import check_window_args
    from ..utils import check_distinct_paths

    check_feed_args(args.batch_size, args.num_workers)
    check_window_args(args.window, args.stride)
    if args.override and not args.config:
        raise UserError(f"--override {args.override[0]}: overrides need a config (-c)")
    videos = list_videos(args.input_file)
    # The videos a folder or list names count as inputs too: an output among them would replace one.
    check_distinct_paths(
        {"-w": args.weights, "-c": args.config, "-i": [args.input_file, *videos]},
        dict(zip(("-o (features.npy)", "-o (features.jsonl)"), output_paths(args.output))),
    )
    files = FeatureFiles(args.output)
    done = files.done()
    ctx = setup(args.device)
    try:
        predictor = Predictor.from_weights(
            args.weights, config=args.config, overrides=args.override, device=ctx.device,
            precision=args.precision, num_workers=args.num_workers,
        )  # fmt: skip
        if ctx.is_main:
            print(f"[features] engine: {predictor.engine.description}", file=sys.stderr)
            if args.window is None:  # windows are decoded their own way
                print(f"[features] feed: {predictor.feed(args.batch_size)}", file=sys.stderr)
        barrier(ctx)  # every rank has read what is done before any rank writes
        todo = [v for v in videos if v not in done]
        mine = todo[ctx.rank :: ctx.world_size]
        if ctx.is_main and done:
            print(f"[features] {len(videos) - len(todo)} of {len(videos)} videos already in {args.output}: skipped", file=sys.stderr)
        failed = 0
        bar = tqdm(total=len(mine), desc="features", unit="video", disable=not ctx.is_main or None, file=sys.stderr)
        for result in predictor.iter_features(mine, args.window, args.stride, args.batch_size):
            bar.update(1)
            if isinstance(result, UserError):
                failed += 1
                bar.write(f"timesformer features: skipped {result}", file=sys.stderr)
                continue
            _, rows, records = result
            files.add(rows, records)
        bar.close()
        failed = sum(all_gather_objects(failed, ctx))
        barrier(ctx)
        if ctx.is_main:
            rows = files.merge(videos)
            written = f"{rows} rows in {files.features_path} and {files.records_path}" if rows else "nothing written"
            skipped = f"; {failed} of {len(todo)} videos could not be read and were skipped" if failed else ""
            print(f"[features] {written}{skipped}")
    finally:
        teardown(ctx)
    return 1 if failed else 0
