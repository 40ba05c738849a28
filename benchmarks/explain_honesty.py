"""Do the maps of `timesformer explain` point at the object? Measured on the demo task.

The demo's clips are a bright gray square moving over a dark, noisy background, and the
class (right / left / up / down) is the square's motion: everything the model can use is on
the square. For every validation video and every method, this takes the model's input clip
(the centre crop `explain` uses), finds the square's pixels in each frame by thresholding
the frame (halfway between the background's median and the square's level, the 99th
percentile: the square is ~3.5% of a 32x32 frame), marks the patch cells the square touches,
and counts the frames whose hottest map cell is one of them. Chance is the mean share of
cells the square touches. Two more columns: the same for an untrained model of the same
architecture (a sanity check), and the frames whose hottest cell lies on the square's path
(a cell the square touches in any frame of the clip).

    timesformer demo --workdir demo_run          # trains the model, writes the videos
    python benchmarks/explain_honesty.py --workdir demo_run [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from timesformer.cpu import cpu_info
from timesformer.demo import find_demo_config
from timesformer.engine.config import load_config
from timesformer.engine.state import best_weights_path
from timesformer.export.predictor import load_checked_model
from timesformer.inference.explain import METHODS, centre_crop_pipeline, explain
from timesformer.inference.render import clip_frames


def square_cells(frames: np.ndarray, patch: int) -> np.ndarray:
    """bool ``[T, h, w]``: the patch cells holding any of the bright square's pixels."""
    gray = frames.astype(np.float32).mean(-1)  # [T, H, W]
    flat = gray.reshape(gray.shape[0], -1)
    threshold = (np.median(flat, axis=1) + np.percentile(flat, 99, axis=1)) / 2
    mask = gray > threshold[:, None, None]
    t, height, width = mask.shape
    return mask.reshape(t, height // patch, patch, width // patch, patch).any(axis=(2, 4))


def untrained_copy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture, freshly initialized (the sanity check of Adebayo et al. 2018:
    a map that does not change when the weights are random does not explain the model)."""
    from timesformer import build_model

    torch.manual_seed(seed)
    return build_model(**model.config.to_dict()).eval()


def measure(workdir: Path, weights: Path | None, limit: int | None) -> dict:
    config = load_config(find_demo_config())
    weights = weights or best_weights_path(workdir / "divided_space_time", config.model_name)
    trained, spec = load_checked_model(weights, config)
    models = {"trained": trained, "untrained": untrained_copy(trained)}
    pipeline = centre_crop_pipeline(spec)
    videos = [line.split() for line in (workdir / "data" / "val.list").read_text().splitlines() if line.strip()]
    videos = videos[:limit] if limit else videos
    hits = {name: {method: 0 for method in METHODS} for name in models}
    on_path = {method: 0 for method in METHODS}  # demo model: on a cell the square touches in any frame
    seconds = {method: 0.0 for method in METHODS}
    correct = {name: 0 for name in models}
    frames_total, chance, squares_found = 0, 0.0, 0
    for path, label in tqdm(videos, desc="explain", unit="video"):
        clip = pipeline(path)[0]
        cells = square_cells(clip_frames(clip, spec.mean, spec.std), trained.config.patch_size)
        frames = cells.shape[0]
        squares_found += int(cells.any(axis=(1, 2)).sum())
        frames_total += frames
        chance += float(cells.mean(axis=(1, 2)).sum())
        for name, model in models.items():
            for method in METHODS:
                tick = time.perf_counter()
                result = explain(model, clip, method=method)
                if name == "trained":
                    seconds[method] += time.perf_counter() - tick
                hottest = result.relevance.reshape(frames, -1).argmax(axis=1)
                hits[name][method] += int(cells.reshape(frames, -1)[np.arange(frames), hottest].sum())
                if name == "trained":
                    on_path[method] += int(cells.reshape(frames, -1).any(axis=0)[hottest].sum())
            correct[name] += int(result.predicted == int(label))
    return {
        "weights": str(weights),
        "videos": len(videos),
        "frames": frames_total,
        "frames_with_square_found": squares_found,
        "top1": {name: correct[name] / len(videos) for name in models},
        "chance": chance / frames_total,
        "hottest_cell_on_square": {name: {m: hits[name][m] / frames_total for m in METHODS} for name in models},
        "hottest_cell_on_path": {m: on_path[m] / frames_total for m in METHODS},
        "ms_per_video": {method: 1000 * seconds[method] / len(videos) for method in METHODS},
        "cpu": cpu_info().model_name,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("demo_run"), help="a `timesformer demo` workdir")
    parser.add_argument("--weights", type=Path, default=None,
                        help="divided model to explain (default: the demo's best, WORKDIR/divided_space_time)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation videos")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a tiny model: one thread is as fast, and fair to a shared machine
    report = measure(args.workdir.resolve(), args.weights, args.limit)
    top1 = report["top1"]
    top1, shares = report["top1"], report["hottest_cell_on_square"]
    print(f"{report['videos']} videos, {report['frames']} frames, square found in "
          f"{report['frames_with_square_found']}; top-1: demo model {top1['trained']:.3f}, "
          f"untrained {top1['untrained']:.3f}")  # fmt: skip
    path = report["hottest_cell_on_path"]
    print("| map | hottest cell on the square: demo model | same, untrained | demo model: on the square's path |")
    print("| --- | --- | --- | --- |")
    print(f"| chance (share of cells the square touches) | {report['chance']:.3f} | {report['chance']:.3f} | |")
    for method in METHODS:
        print(f"| `{method}` | {shares['trained'][method]:.3f} | {shares['untrained'][method]:.3f} | {path[method]:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
