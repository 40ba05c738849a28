"""PaddleVideo's TimeSformer test pipeline, transcribed step by step from its source.

The slow, literal way (every frame of the window converted to RGB, normalization on all
pixels before the resize), kept as the yardstick that `timesformer.preprocess` is checked
and timed against: tests compare frames and tensors, `timesformer bench` times both.
"""

from __future__ import annotations

import math

import av
import numpy as np
import torch
import torch.nn.functional as F


def paddlevideo_frames(path, num_seg: int, mode: str = "test", rng: np.random.Generator | None = None,
                       sampling_rate: int = 32, target_fps: float = 30) -> np.ndarray:  # fmt: skip
    """`VideoDecoder(backend="pyav")` + `Sampler(linspace_sample=True)`: uint8 `[T, H, W, 3]`."""
    container = av.open(str(path))
    stream = container.streams.video[0]
    fps, frames_length, duration = float(stream.average_rate), stream.frames, stream.duration
    clip_size = sampling_rate * num_seg / target_fps * fps
    start_idx = 0 if mode == "test" else rng.uniform(0, max(frames_length - clip_size, 0))
    if duration is None:
        video_start_pts, video_end_pts = 0, math.inf
    else:
        timebase = duration / frames_length
        video_start_pts, video_end_pts = int(start_idx * timebase), int((start_idx + clip_size - 1) * timebase)
    container.seek(max(video_start_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
    tmp_frames = {}
    for frame in container.decode(video=0):
        if frame.pts < video_start_pts:
            continue
        tmp_frames[frame.pts] = frame
        if frame.pts > video_end_pts:
            break
    frames = [tmp_frames[pts].to_rgb().to_ndarray() for pts in sorted(tmp_frames)]
    container.close()
    offsets = np.clip(np.linspace(0, clip_size - 1, num_seg), 0, len(frames) - 1).astype(np.int64)
    return np.stack([frames[i] for i in offsets])


def paddlevideo_test_tensor(path, num_seg: int = 8, size: int = 224) -> torch.Tensor:
    """The whole test pipeline: `[3, 3 * num_seg, size, size]`, crops (start, end, middle) on T."""
    imgs = paddlevideo_frames(path, num_seg, "test")
    # Normalization(tensor_shape=[1, 1, 1, 3]) on float64 pixels, then Image2Array(cthw)
    mean = np.array([0.45] * 3).reshape([1, 1, 1, 3]).astype(np.float32)
    std = np.array([0.225] * 3).reshape([1, 1, 1, 3]).astype(np.float32)
    imgs = (imgs / 255.0 - mean) / std
    imgs = torch.from_numpy(imgs.transpose(3, 0, 1, 2).astype("float32"))
    # JitterScale(size, size) on the normalized floats
    height, width = imgs.shape[2:]
    if width < height:
        new_h, new_w = int(math.floor(height / width * size)), size
    else:
        new_h, new_w = size, int(math.floor(width / height * size))
    if min(height, width) != size:
        imgs = F.interpolate(imgs, size=(new_h, new_w), mode="bilinear", align_corners=False)
    # UniformCrop(size)
    height, width = imgs.shape[2:]
    if height == size:
        step = (width - size) // 2
        offsets = [(0, 0), (2 * step, 0), (step, 0)]
    else:
        step = (height - size) // 2
        offsets = [(0, 0), (0, 2 * step), (0, step)]
    return torch.cat([imgs[:, :, y : y + size, x : x + size] for x, y in offsets], dim=1)
