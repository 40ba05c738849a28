"""Clip transforms on torch tensors, PaddleVideo's TimeSformer ops without PIL.

Frames travel as `[1, 3, H, W]` tensors (clips as `[T, 3, H, W]`) holding pixel values in
[0, 255] (stored channels-last, the layout the decoder's `[H, W, 3]` frames already have,
which is also the layout torch's bilinear kernel is fastest on): uint8 while no frame was
scaled, float once bilinear scaling made fractional values. Frames are scaled one by one as
the decoder delivers them. Normalization comes last, fused with the copy that makes each crop
contiguous (`normalized_crop`), or later on the training device (`crop` keeps the pixel
values, `normalize_pixels` finishes there with the same maths): `(x / 255 - mean) / std` is
a per-channel affine map, and bilinear resizing and cropping are linear maps that act on
each channel alone, so the order does not change the result (up to float rounding), and
normalizing last touches only the pixels kept.

Every random choice takes an explicit `numpy.random.Generator` (see `pipeline.sample_rng`).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Run torch ops on at most `count` threads of the calling thread for the duration.

    A frame's tensor work takes a few milliseconds on one core, while the decoder keeps the
    other cores busy: an op split over torch's thread pool then waits for a pool thread to
    be scheduled (measured: 10-20 ms per op instead of 1 ms). Once decoding is done, the
    clip's cores are free for its crops. With OpenMP (torch's CPU backend) the setting
    belongs to the calling thread only.
    """
    threads = torch.get_num_threads()
    if threads <= count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def short_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """PaddleVideo's JitterScale size rule: short side `size`, long side floor(long/short*size)."""
    if width < height:
        return int(float(height) / width * size), size
    return size, int(float(width) / height * size)


def jitter_size(min_size: int, max_size: int, rng: np.random.Generator) -> int:
    """JitterScale's short side: `round(uniform(min, max))`, as PaddleVideo draws it."""
    return int(round(float(rng.uniform(min_size, max_size))))


def resize_short_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resize `[T, C, H, W]` so its short side is `size`: bilinear, align_corners=False, no
    antialiasing (PaddleVideo's `F.interpolate`). A clip whose short side already is `size`
    is returned as is, as PaddleVideo does."""
    height, width = clip.shape[-2:]
    if min(height, width) == size:
        return clip
    new_shape = short_side_shape(height, width, size)
    return F.interpolate(clip, size=new_shape, mode="bilinear", align_corners=False, antialias=False)


def _check_fits(height: int, width: int, size: int) -> None:
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from a {height}x{width} clip")


class ShortSideScaler:
    """JitterScale frame by frame: uint8 `[H, W, 3]` -> `[1, 3, h, w]` (0..255, channels-last
    storage): the frame itself, uint8, when its short side already is the size; float32 when
    scaled. Calls are sequential (one thread at a time), each on one torch thread: the
    decoder keeps the other cores busy.

    The short side is drawn (`round(uniform(min, max))`, no draw when min == max) by `draw`,
    which the first frame calls if the decoding thread did not (it calls it when it hands the
    first frame to a helper thread): after the decoder drew the window, so a sample's draws
    keep one order. Frames become float through one reused buffer: fresh memory for each
    full-size float frame costs more in page faults than the conversion itself.
    """

    def __init__(self, min_size: int, max_size: int, rng: np.random.Generator | None = None):
        self.min_size, self.max_size, self.rng = min_size, max_size, rng
        self.size: int | None = None
        self._buffer: np.ndarray | None = None

    def draw(self) -> int:
        """The clip's short side, drawn at the first call."""
        if self.size is None:
            if self.min_size == self.max_size:
                self.size = self.min_size
            elif self.rng is None:
                raise ValueError("JitterScale with min_size < max_size is random and needs rng")
            else:
                self.size = jitter_size(self.min_size, self.max_size, self.rng)
        return self.size

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        size = self.draw()
        if min(rgb.shape[:2]) == size:
            return torch.from_numpy(rgb).permute(2, 0, 1)[None]
        if self._buffer is None or self._buffer.shape != rgb.shape:
            self._buffer = np.empty(rgb.shape, np.float32)
        np.copyto(self._buffer, rgb)  # numpy: one thread, never waits for a busy pool
        with torch_threads(1):
            return resize_short_side(torch.from_numpy(self._buffer).permute(2, 0, 1)[None], size)


def uniform_crop_offsets(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """UniformCrop's three `(top, left)` offsets along the long side, in PaddleVideo's order
    (start, end, middle): `0, 2 * step, step` with `step = (long - size) // 2`. The short
    side is expected to equal `size` (PaddleVideo requires it); otherwise it is centred."""
    _check_fits(height, width, size)
    if width >= height:
        step, top = (width - size) // 2, (height - size) // 2
        return [(top, 0), (top, 2 * step), (top, step)]
    step, left = (height - size) // 2, (width - size) // 2
    return [(0, left), (2 * step, left), (step, left)]


def center_crop_offset(height: int, width: int, size: int) -> tuple[int, int]:
    """CenterCrop's `(top, left)`: `round((side - size) / 2)` as PaddleVideo rounds it."""
    _check_fits(height, width, size)
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def random_crop_offset(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """RandomCrop's `(top, left)`, uniform over every position (a side equal to `size` is fine)."""
    _check_fits(height, width, size)
    left = int(rng.integers(0, width - size + 1))
    top = int(rng.integers(0, height - size + 1))
    return top, left


def flip_coin(rng: np.random.Generator, p: float = 0.5) -> bool:
    """RandomFlip's draw: flip when `uniform(0, 1) < p`."""
    return float(rng.random()) < p


def crop(clip: torch.Tensor, top: int, left: int, height: int, width: int, flip: bool = False) -> torch.Tensor:
    """The `[3, T, h, w]` view of `[T, 3, H, W]` cut at `(top, left)`, mirrored left-right when `flip`."""
    view = clip[:, :, top : top + height, left : left + width].permute(1, 0, 2, 3)
    return view.flip(-1) if flip else view


def _affine(mean: Sequence[float], std: Sequence[float], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`(x / 255 - mean) / std` as `x * scale + bias`, per channel, shaped `[3, 1, 1, 1]`
    (computed in float64, then rounded once). Cached: a clip's crops are cut frame by frame."""
    return _affine_tensors(tuple(map(float, mean)), tuple(map(float, std)), torch.device(device or "cpu"))


@functools.lru_cache(maxsize=16)
def _affine_tensors(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    std_t = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).float().view(-1, 1, 1, 1)
    bias = (-torch.tensor(mean, dtype=torch.float64) / std_t).float().view(-1, 1, 1, 1)
    return scale.to(device), bias.to(device)


def normalized_crop(
    clip: torch.Tensor,
    top: int,
    left: int,
    height: int,
    width: int,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cut `[T, 3, H, W]` (0..255) at `(top, left)` and return contiguous float32 `[3, T, h, w]`
    normalized as `(x / 255 - mean) / std`, mirrored left-right when `flip`, written into
    `out` when given. Unflipped, the crop is read once and written once."""
    view = crop(clip, top, left, height, width, flip)
    scale, bias = _affine(mean, std)
    if out is None:
        out = torch.empty(view.shape, dtype=torch.float32)
    return torch.addcmul(bias, view, scale, out=out)


def normalize_pixels(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Pixel values `[..., 3, T, H, W]` (uint8 or float, 0..255) on any device -> float32
    `(x / 255 - mean) / std`: `normalized_crop`'s maths, for clips that crossed to the
    training device as pixels."""
    scale, bias = _affine(mean, std, pixels.device)
    return torch.addcmul(bias, pixels.float(), scale)
