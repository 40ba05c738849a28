"""From a video file to the model's input: PaddleVideo's TimeSformer pipeline, fast.

`VideoPipeline` holds one split's settings (what PaddleVideo's YAML `PIPELINE.<split>`
spells as VideoDecoder / Sampler / Normalization / JitterScale / *Crop / RandomFlip ops)
and turns a path into float32 `[V, 3, T, H, W]`: V = 3 for UniformCrop, 1 otherwise; or,
with `normalize=False`, into the same crops as pixel values for the training device to
normalize (`VideoPipeline.normalize`): uint8 when no frame was scaled (exact integers, a
quarter of the bytes), float32 when the frames were scaled (bilinear values are fractions:
rounding them would change the result).
`preprocess` is PaddleVideo's test tensor for one file. `sample_rng` is where every random
choice of a sample comes from, so augmentation depends on (seed, epoch, index) only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from timesformer.data import transforms as T
from timesformer.data.video import MODES, decode_cores, read_frames, sample_frames
from timesformer.errors import ConfigError

CROPS = ("uniform", "random", "center", "none")


def sample_rng(seed: int, epoch: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The generator for one sample's randomness (window, scale, crop, flip).

    `attempt` > 0 is a training substitute's draw when the sample's video is broken.
    """
    return np.random.default_rng([seed, epoch, index, attempt])


@dataclass
class VideoPipeline:
    """One split's decode + sample + transform settings (PaddleVideo op in brackets).

    num_seg, sampling_rate, target_fps: frames per clip and window [VideoDecoder, Sampler]
    mode: "test" takes the window at the start, "train"/"valid" draw it [VideoDecoder.mode]
    mean, std: on [0, 1] pixel values [Normalization]
    short_side_min, short_side_max: short side drawn in [min, max] [JitterScale min/max_size]
    crop_size, crop: "uniform" (3 views: start, end, middle), "random", "center", "none"
        [UniformCrop / RandomCrop / CenterCrop target_size]
    flip: mirror left-right with probability 0.5 [RandomFlip]
    decode_threads: cores one decode may keep busy (0: all; see `video.split_decode_threads`; the
        training loader sets it per rank, see `engine.loaders.data_threads`)
    """

    num_seg: int = 8
    mode: str = "test"
    mean: Sequence[float] = (0.45, 0.45, 0.45)
    std: Sequence[float] = (0.225, 0.225, 0.225)
    short_side_min: int = 224
    short_side_max: int = 224
    crop_size: int = 224
    crop: str = "uniform"
    flip: bool = False
    sampling_rate: int = 32
    target_fps: float = 30
    decode_threads: int = 0

    def __post_init__(self):
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if self.mode not in MODES:
            raise ConfigError(f"pipeline mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if self.crop not in CROPS:
            raise ConfigError(f"pipeline crop: {self.crop!r} is not one of {', '.join(CROPS)}")
        if self.num_seg < 1:
            raise ConfigError(f"pipeline num_seg: {self.num_seg} must be at least 1")
        if self.decode_threads < 0:
            raise ConfigError(f"pipeline decode_threads: {self.decode_threads} must be 0 (every core) or more")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"pipeline mean/std: need 3 values each and std > 0, got {self.mean} / {self.std}")
        if not 0 < self.short_side_min <= self.short_side_max:
            raise ConfigError(
                f"pipeline short side: need 0 < min <= max, got {self.short_side_min}..{self.short_side_max}"
            )
        if self.crop != "none" and self.crop_size > self.short_side_min:
            raise ConfigError(
                f"pipeline crop_size: {self.crop_size} is larger than the short side "
                f"{self.short_side_min} the clip is scaled to"
            )

    @classmethod
    def for_mode(cls, mode: str, num_seg: int = 8, **fields) -> VideoPipeline:
        """PaddleVideo's K400 TimeSformer pipeline for a split: test = short side 224 and
        3 uniform crops; train and valid = short side in [256, 320], random crop, flip."""
        if mode == "test":
            defaults = dict(short_side_min=224, short_side_max=224, crop="uniform", flip=False)
        else:
            defaults = dict(short_side_min=256, short_side_max=320, crop="random", flip=True)
        return cls(num_seg=num_seg, mode=mode, **{**defaults, **fields})

    @property
    def num_views(self) -> int:
        return 3 if self.crop == "uniform" else 1

    def __call__(
        self, path: str | os.PathLike, rng: np.random.Generator | None = None, normalize: bool = True
    ) -> torch.Tensor:
        """`[V, 3, T, h, w]`: normalized float32, or pixel values (see the module) when not `normalize`."""
        scaler = T.ShortSideScaler(self.short_side_min, self.short_side_max, rng)
        frames = sample_frames(path, self.num_seg, self.mode, rng, self.sampling_rate, self.target_fps, scaler,
                               threads=self.decode_threads, first_frame=scaler.draw)  # fmt: skip
        with T.torch_threads(decode_cores(self.decode_threads)):  # the decode's cores, free again
            return self._views(frames, rng, normalize)

    def frames(
        self, frame_dir: str | os.PathLike, num_frames: int, rng: np.random.Generator | None = None,
        suffix: str = "img_{:05}.jpg", normalize: bool = True,
    ) -> torch.Tensor:
        """The same for PaddleVideo's frames format (a folder of `img_00001.jpg` ...)."""
        return self.transform(read_frames(frame_dir, num_frames, self.num_seg, suffix), rng, normalize)

    def transform(self, frames: np.ndarray, rng: np.random.Generator | None = None, normalize: bool = True) -> torch.Tensor:
        """uint8 `[T, H, W, 3]` -> `[V, 3, T, h, w]`: scale, crop, flip, normalize (unless not `normalize`)."""
        scaler = T.ShortSideScaler(self.short_side_min, self.short_side_max, rng)
        with T.torch_threads(1):
            return self._views([scaler(frame) for frame in frames], rng, normalize)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixel values `[..., 3, T, h, w]` from `normalize=False`, on any device -> the float32
        tensor `normalize=True` gives (the same maths, `transforms.normalize_pixels`)."""
        return T.normalize_pixels(pixels, self.mean, self.std)

    def _views(self, frames: list[torch.Tensor], rng: np.random.Generator | None, normalize: bool = True) -> torch.Tensor:
        """Scaled `[1, 3, H, W]` frames (0..255; one may be listed twice) -> `[V, 3, T, h, w]`:
        crop, flip, normalize (float32) or keep the pixel values (the frames' dtype). Crops are
        cut frame by frame: stacking the frames first would copy the clip once more (measured:
        1.5-1.8 ms for 3 views of 8 frames on 2 threads, 3.0-3.2 ms with the stack)."""
        height, width = frames[0].shape[-2:]
        if self.crop == "uniform":
            offsets = T.uniform_crop_offsets(height, width, self.crop_size)
        elif self.crop == "random":
            offsets = [T.random_crop_offset(height, width, self.crop_size, _need(rng, "RandomCrop"))]
        elif self.crop == "center":
            offsets = [T.center_crop_offset(height, width, self.crop_size)]
        else:
            offsets = [(0, 0)]
        crop_h, crop_w = (height, width) if self.crop == "none" else (self.crop_size, self.crop_size)
        flip = self.flip and T.flip_coin(_need(rng, "RandomFlip"))
        dtype = torch.float32 if normalize else frames[0].dtype
        out = torch.empty((len(offsets), 3, len(frames), crop_h, crop_w), dtype=dtype)
        for view, (top, left) in enumerate(offsets):
            for t, frame in enumerate(frames):
                if normalize:
                    T.normalized_crop(frame, top, left, crop_h, crop_w, self.mean, self.std, flip, out=out[view, :, t : t + 1])
                else:
                    out[view, :, t : t + 1].copy_(T.crop(frame, top, left, crop_h, crop_w, flip))
        return out


def _need(rng: np.random.Generator | None, op: str) -> np.random.Generator:
    if rng is None:
        raise ValueError(f"{op} is random and needs rng (see sample_rng)")
    return rng


def preprocess(
    video_path: str | os.PathLike, mode: str = "test", num_seg: int = 8, seed: int = 0, **fields
) -> torch.Tensor:
    """PaddleVideo's tensor for one video, float32 `[V, 3, T, H, W]`.

    In test mode (the default) it is the 3-crop test tensor, crops in PaddleVideo's order
    (start, end, middle), equal to PaddleVideo's within float rounding. Train/valid modes
    apply the random training pipeline, drawn from `sample_rng(seed, 0, 0)`. `fields`
    override `VideoPipeline` settings (e.g. `crop="center"`, `short_side_min=...`).
    """
    pipeline = VideoPipeline.for_mode(mode, num_seg, **fields)
    return pipeline(video_path, sample_rng(seed, 0, 0))
