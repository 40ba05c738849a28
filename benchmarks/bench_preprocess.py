"""Test-time preprocessing: ours vs PaddleVideo's way vs the decode floor.

    python benchmarks/bench_preprocess.py [--video CLIP.mp4] [--repeats 5] [--num-seg 8]

Without --video it first writes a 10 s 1280x720 H.264 clip (panning texture) to a temporary
folder. Three ways are timed, interleaved in one process so that machine load hits all alike:

- floor: PyAV decoding every frame of the file with frame threads, nothing converted;
- ours: `timesformer.preprocess(path)` (3-crop test tensor);
- paddlevideo: PaddleVideo's test pipeline reimplemented step by step (VideoDecoder pyav
  with PyAV's default threading, every window frame `to_rgb().to_ndarray()`, Sampler
  linspace, Normalization on all float64 pixels, `F.interpolate` of the normalized clip,
  UniformCrop concatenated on T); its tensor is checked against ours.

Targets (issue 7): ours <= 1.5x floor (goal 1.2x), paddlevideo >= 2.5x ours.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from timesformer import preprocess


def make_clip(path: Path, seconds: float = 10, fps: int = 30, width: int = 1280, height: int = 720) -> Path:
    """A panning smooth texture with grain: about 1.5 Mb/s, like ordinary 720p video."""
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, height // 4 + 1, width // 4 + 1)).astype(np.float32))
    texture = F.interpolate(coarse, scale_factor=8, mode="bicubic")[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()
    grains = [rng.integers(-3, 4, (height, width, 1)).astype(np.int16) for _ in range(7)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            y, x = (3 * i) % height, (5 * i) % width
            image = (texture[y : y + height, x : x + width] + grains[i % 7]).clip(0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def decode_floor(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def paddlevideo_preprocess(path: Path, num_seg: int = 8, sampling_rate: int = 32, target_fps: int = 30) -> torch.Tensor:
    """PaddleVideo's test pipeline for TimeSformer, as its source does it (torch for paddle)."""
    # VideoDecoder(backend="pyav", mode="test")
    container = av.open(str(path))
    stream = container.streams.video[0]
    fps = float(stream.average_rate)
    frames_length = stream.frames
    duration = stream.duration
    clip_size = sampling_rate * num_seg / target_fps * fps
    if duration is None:
        video_start_pts, video_end_pts = 0, math.inf
    else:
        start_idx, end_idx = 0.0, clip_size - 1
        timebase = duration / frames_length
        video_start_pts, video_end_pts = int(start_idx * timebase), int(end_idx * timebase)
    container.seek(max(video_start_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
    tmp_frames = {}
    for frame in container.decode(video=0):
        if frame.pts < video_start_pts:
            continue
        tmp_frames[frame.pts] = frame
        if frame.pts > video_end_pts:
            break
    video_frames = [tmp_frames[pts] for pts in sorted(tmp_frames)]
    container.close()
    frames = [frame.to_rgb().to_ndarray() for frame in video_frames]
    # Sampler(linspace_sample=True)
    offsets = np.clip(np.linspace(0, clip_size - 1, num_seg), 0, len(frames) - 1).astype(np.int64)
    imgs = np.stack([frames[i] for i in offsets])
    # Normalization(tensor_shape=[1, 1, 1, 3]) on float64, Image2Array(cthw)
    mean = np.array([0.45] * 3).reshape([1, 1, 1, 3]).astype(np.float32)
    std = np.array([0.225] * 3).reshape([1, 1, 1, 3]).astype(np.float32)
    imgs = imgs / 255.0
    imgs -= mean
    imgs /= std
    imgs = torch.from_numpy(imgs.transpose(3, 0, 1, 2).astype("float32"))
    # JitterScale(224, 224) on the normalized floats
    height, width = imgs.shape[2:]
    size = 224
    if width < height:
        new_h, new_w = int(math.floor(height / width * size)), size
    else:
        new_h, new_w = size, int(math.floor(width / height * size))
    if min(height, width) != size:
        imgs = F.interpolate(imgs, size=(new_h, new_w), mode="bilinear", align_corners=False)
    # UniformCrop(224): start, end, middle, concatenated on T
    height, width = imgs.shape[2:]
    if height == size:
        step = (width - size) // 2
        offsets = [(0, 0), (2 * step, 0), (step, 0)]
    else:
        step = (height - size) // 2
        offsets = [(0, 0), (0, 2 * step), (0, step)]
    return torch.cat([imgs[:, :, y : y + size, x : x + size] for x, y in offsets], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, help="clip to use (default: write a 10 s 720p H.264 clip)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-seg", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        video = args.video
        if video is None:
            print("writing a 10 s 1280x720 H.264 clip ...", flush=True)
            video = make_clip(Path(tmp) / "clip_720p.mp4")
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            print(f"{video}: {stream.codec_context.name} {stream.width}x{stream.height} "
                  f"{float(stream.average_rate):.2f} fps, {stream.frames} frames")

        ours = preprocess(video, num_seg=args.num_seg)
        theirs = paddlevideo_preprocess(video, args.num_seg)
        ours_cat = ours.permute(1, 0, 2, 3, 4).reshape(theirs.shape)
        print(f"max |ours - paddlevideo| = {(ours_cat - theirs).abs().max().item():.2e}")

        ways = {
            "floor (decode all, frame threads)": lambda: decode_floor(video),
            "ours (timesformer.preprocess)": lambda: preprocess(video, num_seg=args.num_seg),
            "paddlevideo-style": lambda: paddlevideo_preprocess(video, args.num_seg),
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, run in ways.items():  # interleaved: load affects every way alike
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)

    median = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    print(f"\n{'way':38s} {'median s':>9s} {'min s':>8s}")
    for name in times:
        print(f"{name:38s} {median[name]:9.3f} {best[name]:8.3f}")
    # The minimum is the run the machine's other load disturbed least.
    for label, stat in (("median", median), ("min", best)):
        floor, ours_s, paddle = stat.values()
        print(f"{label:6s}: ours / floor = {ours_s / floor:.2f}x (target <= 1.5x, goal 1.2x); "
              f"paddlevideo / ours = {paddle / ours_s:.2f}x (target >= 2.5x)")

if __name__ == "__main__":
    main()
