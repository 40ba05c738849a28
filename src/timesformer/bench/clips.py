"""Test videos for the bench: a synthetic H.264 clip, the bare-decode floor, a one-line description."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# The synthetic clip when no --videos are given: what PaddleVideo's slow preprocessing was measured on.
SYNTH_VIDEO = {"vit-b": dict(seconds=10.0, width=1280, height=720), "tiny": dict(seconds=2.0, width=320, height=240)}


def make_test_video(path: str | os.PathLike, seconds: float = 10.0, fps: int = 30, width: int = 1280, height: int = 720,
                    codec: str = "libx264") -> Path:
    """A panning smooth texture with grain; H.264 at about 1.5 Mb/s like ordinary 720p video
    (other codecs, e.g. mpeg4 or mpeg2video, at their encoder's defaults)."""
    import av

    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, height // 4 + 1, width // 4 + 1)).astype(np.float32))
    texture = F.interpolate(coarse, scale_factor=8, mode="bicubic")[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()
    grains = [rng.integers(-3, 4, (height, width, 1)).astype(np.int16) for _ in range(7)]
    path = Path(path)
    options = {"preset": "veryfast", "crf": "23"} if codec == "libx264" else {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            top, left = (3 * i) % height, (5 * i) % width
            image = (texture[top : top + height, left : left + width] + grains[i % 7]).clip(0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def check_video(path: str | os.PathLike) -> None:
    """`VideoReadError` naming the file unless it has a video stream whose first frame decodes."""
    import av

    from ..errors import VideoReadError

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            first = next(container.decode(video=0), None)
    except av.FFmpegError as err:
        raise VideoReadError(path, f"not a readable video ({err.strerror or type(err).__name__})") from None
    if first is None:
        raise VideoReadError(path, "no decodable frame")


def decode_all_frames(path: str | os.PathLike) -> int:
    """The floor: PyAV decoding every frame of the file with frame threads, nothing converted."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def video_description(path: str | os.PathLike) -> str:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return f"{Path(path).name} {stream.codec_context.name} {stream.width}x{stream.height} {stream.frames} frames"
