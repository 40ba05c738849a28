"""A small real video dataset whose class only frame order can tell: `timesformer data synth`.

Each clip shows a square moving right, left, up or down over a noisy background. For a
clip of class "right" the square visits positions a, a+v, ..., b; for "left" it visits
the same kind of positions in reverse (b, ..., a), with a, b drawn from the same
distribution. So a single frame, or the unordered set of frames, has the same
distribution for → and ←: a model that ignores time (space-only attention averages its
frames) can learn the axis (50 %) but never the direction.

Clips are encoded losslessly (H.264 4:4:4, qp 0) so that codec artefacts do not differ
between the first and later frames, which would hint at order. The frame rate is 1 fps:
PaddleVideo's sampler takes `32 * num_seg / 30 * fps` frames, so with `num_seg = frames`
it picks every frame exactly once (window 8.5 frames for 8 segments).

List files hold absolute paths (`/abs/path/train/right/00000.mp4 0`), so they work with
any `data_prefix` (`os.path.join(prefix, "/abs")` is the absolute path) and from any
working directory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..utils import atomic_path, atomic_write_text
from .prepare import check_workers, default_workers, ordered_map

# Label ids and names, written to labels.txt as `id name`.
DIRECTIONS = ("right", "left", "up", "down")
SPLIT_CODES = {"train": 0, "val": 1}  # seeds the train and val clips apart


# Bounds on what the flags may ask for, checked before anything is drawn.
MAX_CLIPS = 10**7
MAX_FRAMES = 10_000
MAX_SIZE = 4096
MAX_CLIP_BYTES = 2 << 30


@dataclass(frozen=True)
class MotionStyle:
    """How clips look. The demo tunes these; the defaults suit 32x32, 8-frame clips."""

    frames: int = 8
    size: int = 32
    object_size: int = 6
    speed_range: tuple[float, float] = (2.0, 3.0)  # pixels per frame
    noise: float = 8.0  # std of per-pixel Gaussian noise, 0..255 units
    fps: int = 1
    # "random": any background colour, the object far from it in every channel; "gray": a dark
    # gray background and a bright gray object (the demo's: a from-scratch model finds it in
    # a few epochs, where random colours keep it at chance for tens of epochs).
    colors: str = "random"


@dataclass
class SynthSummary:
    out_dir: Path
    train_list: Path
    val_list: Path
    labels_file: Path
    num_train: int
    num_val: int
    seconds: float


def render_motion_clip(label: int, rng: np.random.Generator, style: MotionStyle) -> np.ndarray:
    """Frames `uint8 [T, S, S, 3]` of a square moving in direction `DIRECTIONS[label]`."""
    t, s, k = style.frames, style.size, style.object_size
    room = s - k  # the square's top-left corner lies in [0, room]
    speed = rng.uniform(*style.speed_range)
    travel = min(speed * (t - 1), room)  # the square crosses at most the whole frame
    start = rng.uniform(0, room - travel)
    forward = np.round(start + np.linspace(0.0, travel, t)).astype(int)
    # Same positions for both directions of an axis; only their order differs.
    along = forward if label in (0, 3) else forward[::-1]  # right, down: increasing coordinate
    across = np.full(t, rng.integers(0, room + 1))
    xs, ys = (along, across) if label in (0, 1) else (across, along)

    if style.colors == "gray":
        background = np.full(3, rng.integers(0, 80))
        color = np.full(3, rng.integers(176, 256))
    else:
        background = rng.integers(0, 256, size=3)
        # Object colour at least ~90 levels away from the background in every channel.
        color = (background + 128 + rng.integers(-40, 41, size=3)) % 256
    frames = np.empty((t, s, s, 3))
    frames[:] = background
    for i in range(t):
        frames[i, ys[i] : ys[i] + k, xs[i] : xs[i] + k] = color
    frames += rng.normal(0.0, style.noise, size=frames.shape)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def encode_video(frames: np.ndarray, path: Path, fps: int = 1) -> None:
    """Write `uint8 [T, H, W, 3]` frames losslessly as H.264 4:4:4 in MP4 (atomic).

    Falls back to near-lossless intra-only MPEG-4 when this FFmpeg has no libx264.
    """
    import av

    lossless = "libx264" in av.codecs_available
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        if lossless:
            stream = container.add_stream("libx264", rate=Fraction(fps), options={"qp": "0", "threads": "1"})
            stream.pix_fmt = "yuv444p"
        else:
            stream = container.add_stream("mpeg4", rate=Fraction(fps), options={"flags": "+qscale", "global_quality": "118", "g": "1"})
            stream.pix_fmt = "yuv420p"
        stream.height, stream.width = frames.shape[1:3]
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())


def _clip_seed(seed: int, split: str, index: int) -> list[int]:
    return [seed, SPLIT_CODES[split], index]


def _write_clip(job: tuple[Path, int, list[int], MotionStyle]) -> None:
    path, label, seed, style = job
    encode_video(render_motion_clip(label, np.random.default_rng(seed), style), path, style.fps)


def write_motion_dataset(
    out_dir: str | os.PathLike,
    train: int = 800,
    val: int = 200,
    frames: int = 8,
    size: int = 32,
    seed: int = 0,
    *,
    object_size: int = 6,
    speed_range: tuple[float, float] = (2.0, 3.0),
    noise: float = 8.0,
    fps: int = 1,
    colors: str = "random",
    workers: int | None = None,
    progress: bool = True,
) -> SynthSummary:
    """Write `train` + `val` clips, `train.list`, `val.list` and `labels.txt` into `out_dir`.

    Clip `i` of a split has label `i % 4` (balanced) and is drawn from a generator seeded
    by (seed, split, i), so the dataset is the same for any `workers`.
    """
    from tqdm import tqdm

    style = MotionStyle(frames, size, object_size, (float(speed_range[0]), float(speed_range[1])), noise, fps, colors)
    _validate(style, train, val)
    workers = default_workers(4) if workers is None else check_workers(workers)
    out = Path(out_dir).resolve()
    start = time.perf_counter()
    jobs, lists = [], {}
    for split, count in (("train", train), ("val", val)):
        lines = []
        for i in range(count):
            label = i % len(DIRECTIONS)
            path = out / split / DIRECTIONS[label] / f"{i:05d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((path, label, _clip_seed(seed, split, i), style))
            lines.append(f"{path} {label}\n")
        lists[split] = lines

    for _ in tqdm(ordered_map(_write_clip, jobs, workers), total=len(jobs), desc="synth clips", unit="clip", disable=not progress):
        pass

    for split, lines in lists.items():
        atomic_write_text(out / f"{split}.list", "".join(lines))
    atomic_write_text(out / "labels.txt", "".join(f"{i} {name}\n" for i, name in enumerate(DIRECTIONS)))
    return SynthSummary(out, out / "train.list", out / "val.list", out / "labels.txt", train, val, time.perf_counter() - start)


def _validate(style: MotionStyle, train: int, val: int) -> None:
    if not (0 <= train <= MAX_CLIPS and 0 <= val <= MAX_CLIPS):
        raise UserError(f"--train {train} / --val {val}: clip counts must be between 0 and {MAX_CLIPS}")
    if not 2 <= style.frames <= MAX_FRAMES:
        raise UserError(f"--frames {style.frames}: a motion needs between 2 and {MAX_FRAMES} frames")
    if not 8 <= style.size <= MAX_SIZE or style.size % 2:
        raise UserError(f"--size {style.size}: must be an even number from 8 to {MAX_SIZE} (video encoders need even sizes)")
    if style.frames * style.size**2 * 3 * 8 > MAX_CLIP_BYTES:  # a clip is drawn in float64
        raise UserError(f"--frames {style.frames} --size {style.size}: a clip would need over {MAX_CLIP_BYTES >> 30} GiB to draw")
    if not 0 <= style.noise <= 255:  # also refuses nan
        raise UserError(f"--noise {style.noise}: must be between 0 and 255")
    if not 1 <= style.object_size < style.size:
        raise UserError(f"object_size {style.object_size}: must be in [1, size={style.size})")
    low, high = style.speed_range
    if not 0 < low <= high <= style.size:  # also refuses nan and inf
        raise UserError(f"--speed {low:g} {high:g}: need 0 < MIN <= MAX <= size (pixels per frame)")
    if not 1 <= style.fps <= 1000:
        raise UserError(f"--fps {style.fps}: must be between 1 and 1000")
    if style.colors not in ("random", "gray"):
        raise UserError(f"colors {style.colors!r}: must be 'random' or 'gray'")
