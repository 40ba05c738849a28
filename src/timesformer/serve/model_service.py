"""The one place the server touches inference: a thin adapter over `timesformer.Predictor`.

Everything else in `timesformer.serve` sees only this: load a model, check and decode an
uploaded video, score a batch, embed a clip, explain one, score windows along a long one.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import torch

from ..data.video import open_video
from ..errors import UserError
from ..utils import first_line


# FFmpeg demuxes text files named .txt, .bin, .ans ... as "videos" of rendered characters.
TEXT_ART_CODECS = {"ansi", "bintext", "xbin", "idf"}


class NotAvailable(UserError):
    """A route this model (or this installation) cannot serve: the server answers 501."""


class VideoRejected(UserError):
    """An upload refused before decoding: not a video, or too large to decode safely (422)."""


@dataclass(frozen=True)
class VideoLimits:
    """Bounds checked from the container's header before a single frame is decoded."""

    max_frames: int = 108_000  # one hour at 30 fps
    max_pixels: int = 3840 * 2160  # per frame: 4K UHD
    max_windows: int = 10_000  # per timeline


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    num_frames: int

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps

    def window_count(self, window_s: float, stride_s: float) -> int:
        """Windows a timeline takes along this video (at least one, as `plan_windows` does)."""
        from ..inference.windows import fitting_windows

        return max(1, fitting_windows(self.seconds, window_s, stride_s))


class ModelService:
    """A loaded predictor and what the server asks of it. Model calls are not thread-safe
    together: the server makes them from one thread."""

    def __init__(self, predictor):
        from ..inference.explain import centre_crop_pipeline

        self.predictor = predictor
        self.spec = predictor.spec
        self.labels: list[str] | None = predictor.labels
        # Attention maps are drawn over one view: the centre crop, as `timesformer explain` takes it.
        self.explain_pipeline = centre_crop_pipeline(self.spec)

    @classmethod
    def load(
        cls,
        weights: str | os.PathLike | None = None,
        config: str | os.PathLike | None = None,
        model_file: str | os.PathLike | None = None,
        precision: str = "fp32",
        label_file: str | os.PathLike | None = None,
    ) -> "ModelService":
        """PyTorch from a checkpoint (`weights`, optional `config`) or ONNX Runtime from `model_file`."""
        from ..inference import Predictor

        if (weights is None) == (model_file is None):
            raise UserError("give either -w/--weights (PyTorch) or --model_file (an exported ONNX model)")
        if model_file is not None:
            return cls(Predictor.from_onnx(model_file, label_file=label_file))
        return cls(Predictor.from_weights(weights, config=config, precision=precision, label_file=label_file))

    # ----------------------------------------------------------------- facts about the model

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def clip_seconds(self) -> float:
        """How much of a video one clip covers: the test pipeline's window at its start."""
        return self.predictor.clip_seconds

    @property
    def description(self) -> str:
        return self.predictor.engine.description

    @property
    def torch_model(self):
        """The PyTorch model, or None behind ONNX Runtime."""
        net = getattr(self.predictor.engine, "net", None)
        return net.model if net is not None else None

    def require_torch(self, what: str) -> None:
        """`NotAvailable` (501) for what only the PyTorch model can do, before any upload is read."""
        if self.torch_model is None:
            raise NotAvailable(f"{what} need the PyTorch model: start the server with -w (an ONNX file holds only the scores)")

    # ----------------------------------------------------------------- videos

    def check_video(self, path: str | os.PathLike, limits: VideoLimits) -> VideoInfo:
        """The header's size, rate and frame count, within `limits`; nothing is decoded."""
        try:
            with open_video(path) as container:
                if not container.streams.video:
                    kinds = sorted({s.type for s in container.streams}) or ["none"]
                    raise VideoRejected(f"not a video: no video stream (streams: {', '.join(kinds)})")
                stream = container.streams.video[0]
                if stream.codec_context.name in TEXT_ART_CODECS:  # FFmpeg renders text files as ANSI art
                    raise VideoRejected("not a video: a text file")
                width, height = stream.codec_context.width, stream.codec_context.height
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                frames = stream.frames
                if not frames and container.duration and rate:  # no count in the header: estimate it
                    frames = math.ceil(container.duration / av.time_base * float(rate))
        except (av.FFmpegError, OSError, EOFError, ValueError) as err:
            # FFmpeg's reason without the file name: the path is the server's temporary file.
            reason = getattr(err, "strerror", None) or first_line(err)
            raise VideoRejected(f"not a video the decoder can read ({reason})") from None
        if not width or not height:
            raise VideoRejected("not a video: the video stream has no frame size")
        if not rate:
            raise VideoRejected("not a video: the video stream has no frame rate")
        if width * height > limits.max_pixels:
            raise VideoRejected(f"{width}x{height} frames are over the server's limit of {limits.max_pixels} pixels per frame")
        if frames and frames > limits.max_frames:
            raise VideoRejected(f"{frames} frames are over the server's limit of {limits.max_frames} frames")
        return VideoInfo(width, height, float(rate), int(frames or 0))

    def load_clip(self, path: str | os.PathLike) -> torch.Tensor:
        """The test tensor `[3, V*T, H, W]`; `VideoReadError` if it cannot be decoded."""
        return self.predictor.load_clip(str(path))

    def load_explain_clip(self, path: str | os.PathLike) -> torch.Tensor:
        """The centre view `[3, T, H, W]` the attention maps are drawn over."""
        return self.explain_pipeline(str(path))[0]

    # ----------------------------------------------------------------- model calls

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """`[N, classes]` class probabilities of a batch `[N, 3, V*T, H, W]`."""
        return self.predictor.scores(batch)

    def top_k(self, probs: np.ndarray, k: int) -> tuple[list[int], list[float], list[str] | None]:
        """Classes by decreasing probability, their probabilities and names (None without a label list)."""
        return self.predictor.top_classes(probs, min(k, self.num_classes))

    def features(self, clip: torch.Tensor) -> np.ndarray:
        """The video's embedding `[D]`: the final-norm cls token, averaged over the views."""
        self.require_torch("features")
        return self.predictor.engine.features(clip.unsqueeze(0))[0]

    def timeline(self, path: str | os.PathLike, window_s: float, stride_s: float, k: int, batch_size: int) -> list[dict]:
        """Top-k of each window along the video (see `Predictor.timeline`)."""
        timeline = self.predictor.timeline(str(path), window_s, stride_s, top_k=min(k, self.num_classes), batch_size=batch_size)
        return [window.to_dict() for window in timeline.windows]

    def explain_png(self, clip: torch.Tensor, video_name: str) -> bytes:
        """The sampled frames above their attention heat maps (rollout), as PNG."""
        from ..inference.render import write_strip_png

        frames, maps, title = self._explained(clip)
        with _scratch(".png") as path:
            if not write_strip_png(frames, maps, path, f"{video_name}: {title}"):
                raise NotAvailable("the heat-map PNG needs matplotlib: pip install 'timesformer[plot]'")
            return path.read_bytes()

    def explain_mp4(self, clip: torch.Tensor) -> bytes:
        """The sampled frames with their heat maps blended in, as H.264 MP4."""
        from ..inference.render import write_overlay_video

        frames, maps, _ = self._explained(clip)
        with _scratch(".mp4") as path:
            write_overlay_video(frames, maps, path)
            return path.read_bytes()

    def _explained(self, clip: torch.Tensor) -> tuple[np.ndarray, np.ndarray, str]:
        """The frames the model saw, their rollout maps, and "top class (score)"."""
        from ..inference.explain import explain
        from ..inference.render import clip_frames

        self.require_torch("attention maps")
        result = explain(self.torch_model, clip, method="rollout")
        name = self.labels[result.predicted] if self.labels else f"class {result.predicted}"
        return clip_frames(clip, self.spec.mean, self.spec.std), result.maps, f"{name} ({result.score:.2f})"


@contextlib.contextmanager
def _scratch(suffix: str) -> Iterator[Path]:
    """A temporary file path, removed afterwards whatever happens."""
    fd, name = tempfile.mkstemp(prefix="timesformer-serve-", suffix=suffix)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def upload_suffix(filename: str | None, content_type: str | None) -> str:
    """A file extension PyAV can guess the container from (it probes the bytes anyway)."""
    from ..data.files import VIDEO_EXTENSIONS

    suffix = Path(filename or "").suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return suffix
    subtype = (content_type or "").partition("/")[2].lower()
    guessed = {"mp4": ".mp4", "webm": ".webm", "x-msvideo": ".avi", "avi": ".avi", "quicktime": ".mov",
               "x-matroska": ".mkv", "mpeg": ".mpg", "x-flv": ".flv", "3gpp": ".3gp"}.get(subtype)  # fmt: skip
    return guessed or ""  # no extension: FFmpeg probes the bytes

