"""Broken videos and hostile weights, made from scratch for the reliability tests.

Every kind a real dataset or a shared checkpoint shows up as: a download cut in half (an
H.264 MP4 and an MPEG-4 AVI, both written here with PyAV), random bytes under a video's
name, an empty file, a text file named `.avi`, a path that does not exist; and weights
files whose pickle would run a command (`os.system`, `builtins.exec`, `subprocess`) that
creates a marker file, so that a test can prove nothing ran.
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
from pathlib import Path

import av
import numpy as np


def write_video(path: str | Path, frames: int = 16, size: tuple[int, int] = (64, 48), fps: int = 25,
                codec: str = "libx264", faststart: bool = False, seed: int = 0) -> Path:
    """A small real video of a bright square moving over noise (so the encoder keeps bytes
    in every frame). `faststart` puts an MP4's index before its data, as web downloads do:
    cut in half, such a file still opens and promises all its frames."""
    path = Path(path)
    width, height = size
    rng = np.random.default_rng(seed)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "g": "4"}  # keyframes often: decodable up to the cut
        else:
            stream.options = {"g": "4"}
        for t in range(frames):
            image = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
            x = (4 * t) % (width - 8)
            image[height // 2 - 4 : height // 2 + 4, x : x + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def good_mp4(path: str | Path, **kwargs) -> Path:
    return write_video(path, codec="libx264", **kwargs)


def good_avi(path: str | Path, **kwargs) -> Path:
    return write_video(path, codec="mpeg4", **kwargs)


def truncated(source: str | Path, path: str | Path, fraction: float = 0.5) -> Path:
    """`source` cut after `fraction` of its bytes (an interrupted download)."""
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return Path(path)


def random_bytes(path: str | Path, size: int = 50_000, seed: int = 1) -> Path:
    Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return Path(path)


def empty(path: str | Path) -> Path:
    Path(path).write_bytes(b"")
    return Path(path)


def text_file(path: str | Path) -> Path:
    Path(path).write_text("<html><body>404 Not Found</body></html>\n" * 20)
    return Path(path)


def make_broken_set(directory: str | Path, mp4_source: str | Path, avi_source: str | Path) -> dict[str, Path]:
    """Broken files made from good ones, by kind: truncated MP4 and AVI, random bytes named
    `.avi` and `.mp4`, an empty `.mp4`, a text file named `.avi`, and a missing path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    return {
        "truncated_mp4": truncated(mp4_source, d / "truncated.mp4"),
        "truncated_avi": truncated(avi_source, d / "truncated.avi"),
        "random_avi": random_bytes(d / "random.avi"),
        "random_mp4": random_bytes(d / "random.mp4", seed=2),
        "empty": empty(d / "empty.mp4"),
        "text_avi": text_file(d / "notes.avi"),
        "missing": d / "missing.avi",
    }  # fmt: skip


# Hostile pickles. Each `__reduce__` asks the unpickler to call a function with arguments
# that create `marker`; a safe loader refuses before calling anything.


class _OsSystem:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class _Exec:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('ran')",)


class _Subprocess:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return subprocess.call, (["touch", self.marker],)


PAYLOADS = {"os_system": _OsSystem, "exec": _Exec, "subprocess": _Subprocess}


def hostile_pdparams(path: str | Path, marker: str | Path, payload: str = "os_system", state: dict | None = None) -> Path:
    """A `.pdparams` (a pickle of name -> numpy array, as `paddle.save` writes) with one value
    that runs `payload` when unpickled. `state` are real arrays to hide it among."""
    raw = dict(state or {"backbone.cls_token": np.zeros((1, 1, 96), np.float32)})
    raw["backbone.pos_embed"] = PAYLOADS[payload](Path(marker))
    Path(path).write_bytes(pickle.dumps(raw, protocol=2))
    return Path(path)


def hostile_torch(path: str | Path, marker: str | Path, payload: str = "os_system") -> Path:
    """A facebookresearch-style `.pyth`/`.pth` (`{"model_state": {...}}`, written by
    `torch.save`) with a value that runs `payload` when unpickled."""
    import torch

    state = {"model.cls_token": torch.zeros(1, 1, 96), "model.pos_embed": PAYLOADS[payload](Path(marker))}
    torch.save({"model_state": state, "epoch": 1}, str(path))
    return Path(path)


def run_unsafely(path: str | Path) -> None:
    """What an unrestricted loader does (`pickle.load`, or torch.load without weights_only):
    used to prove a hostile file really is hostile."""
    import torch

    path = Path(path)
    if path.suffix == ".pdparams":
        with open(path, "rb") as f:
            pickle.load(f)  # noqa: S301 - the point is to show this runs the payload
    else:
        torch.load(str(path), weights_only=False)  # noqa: S614
