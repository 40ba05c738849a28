"""Pictures of relevance maps: heat-map colours, overlays, the PNG strip and the MP4 clip.

Frames are uint8 ``[T, H, W, 3]`` (what the model saw, see `clip_frames`); maps are float
``[T, h, w]`` in [0, 1] over the patch grid, upsampled bilinearly to the frame.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..utils import atomic_path

# matplotlib's "inferno" at 0, 1/4, 1/2, 3/4, 1 (perceptually ordered, readable in grayscale),
# interpolated linearly: the MP4 needs no matplotlib.
_INFERNO = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32)
MIN_VIDEO_SIDE = 256  # the MP4's short side is upscaled to at least this many pixels
VIDEO_SECONDS_PER_FRAME = 0.5


def heat_colors(values: np.ndarray) -> np.ndarray:
    """float ``[...]`` in [0, 1] -> float32 RGB ``[..., 3]`` in 0..255."""
    position = np.clip(values, 0.0, 1.0) * (len(_INFERNO) - 1)
    low = np.minimum(position.astype(np.int64), len(_INFERNO) - 2)
    frac = (position - low)[..., None]
    return _INFERNO[low] * (1.0 - frac) + _INFERNO[low + 1] * frac


def clip_frames(clip: torch.Tensor, mean, std) -> np.ndarray:
    """Normalized ``[3, T, H, W]`` -> uint8 ``[T, H, W, 3]``: undoes ``(x / 255 - mean) / std``."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    pixels = (clip.detach().float().cpu() * std_t + mean_t) * 255.0
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` -> ``[T, height, width, 3]``: pixels kept square when enlarged
    (nearest: the pixels the model saw), bilinear with antialiasing when reduced."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    if height >= frames.shape[1] and width >= frames.shape[2]:
        x = F.interpolate(x, size=(height, width), mode="nearest-exact")
    else:
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def upsample_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """float ``[T, h, w]`` -> ``[T, height, width]`` (bilinear, cell centres on pixel centres)."""
    x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).unsqueeze(1)
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[:, 0].numpy()


def overlay(frames: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Heat colours over the frames, opaque where the map is hot and faint where it is cold."""
    height, width = frames.shape[1:3]
    values = upsample_maps(maps, height, width)
    alpha = (0.15 + 0.6 * values)[..., None]
    blended = frames.astype(np.float32) * (1.0 - alpha) + heat_colors(values) * alpha
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def video_size(height: int, width: int) -> tuple[int, int]:
    """The MP4's size: the frame scaled up by a whole factor to a short side of at least
    `MIN_VIDEO_SIDE`, rounded to even numbers (4:2:0 video needs them)."""
    factor = max(1, math.ceil(MIN_VIDEO_SIDE / min(height, width)))
    return 2 * math.ceil(height * factor / 2), 2 * math.ceil(width * factor / 2)


def write_overlay_video(frames: np.ndarray, maps: np.ndarray, path: str | os.PathLike) -> tuple[int, int]:
    """The frames with their maps blended in, upscaled (`video_size`), as an H.264 MP4 (MPEG-4
    where this FFmpeg lacks libx264), each sampled frame shown `VIDEO_SECONDS_PER_FRAME`; atomic.
    Returns the video's (height, width)."""
    import av

    height, width = video_size(*frames.shape[1:3])
    images = overlay(resize_frames(frames, height, width), maps)
    rate = Fraction(1) / Fraction(VIDEO_SECONDS_PER_FRAME)
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        if "libx264" in av.codecs_available:
            stream = container.add_stream("libx264", rate=rate, options={"crf": "18", "threads": "1"})
        else:
            stream = container.add_stream("mpeg4", rate=rate, options={"flags": "+qscale", "global_quality": "118"})
        stream.pix_fmt = "yuv420p"
        stream.height, stream.width = height, width
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())
    return height, width


def write_strip_png(frames: np.ndarray, maps: np.ndarray, path: str | os.PathLike, title: str) -> bool:
    """The T frames (top row) above their heat maps blended over them (bottom row), `title`
    above; atomic. False (nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from PIL import Image  # a dependency of matplotlib
    except ImportError:
        return False
    count = frames.shape[0]
    shown = resize_frames(frames, *video_size(*frames.shape[1:3]))  # smooth maps over small clips
    fig, axes = plt.subplots(2, count, figsize=(1.3 * count, 3.0), squeeze=False)
    for t in range(count):
        axes[0, t].imshow(shown[t])
        axes[0, t].set_title(f"frame {t}", fontsize=8)
        axes[1, t].imshow(overlay(shown[t : t + 1], maps[t : t + 1])[0])
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.set_dpi(80)
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    plt.close(fig)
    # 256 adaptive colours: the noisy frames made a true-colour PNG ~3x larger, no clearer.
    with atomic_path(Path(path)) as tmp:
        image.quantize(256, method=Image.Quantize.MEDIANCUT).save(tmp, format="png", optimize=True)
    return True
