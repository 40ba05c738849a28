"""What `timesformer bench` measures and how: a typed options dataclass, checked once.

Light on purpose (no torch import): `timesformer.commands.bench` builds its flags from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UserError

WHAT = ("matmul", "model", "train", "preprocess", "predict", "onnx", "loader")
PRECISIONS = ("fp32", "bf16", "fp16")
# Peak keys: fp32 rows on CUDA use the TF32 peak when TF32 matmuls are on.
PEAK_KEYS = ("fp32", "tf32", "bf16", "fp16")
PRESETS = {
    "vit-b": {},  # TimeSformerConfig's defaults: TimeSformer-B/16, 8 frames of 224x224, divided attention
    "tiny": dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_frames=4, num_classes=10),
}
MAX_REPEAT = 10_000
MAX_BATCH = 4096
MAX_MATMUL = 16_384  # three 1 GiB fp32 matrices


@dataclass
class BenchOptions:
    what: list[str] = field(default_factory=lambda: list(WHAT))
    preset: str = "vit-b"
    weights: str | None = None
    batch: list[int] = field(default_factory=lambda: [1, 4])
    precision: list[str] = field(default_factory=lambda: ["fp32", "bf16"])
    repeat: int = 5
    warmup: int = 2
    videos: list[str] | None = None
    predict_videos: int = 16  # videos in the end-to-end predict folder (cycled from `videos`)
    workers: list[int] = field(default_factory=lambda: [0, 2])
    compile: bool = False
    checkpointing: bool = False
    compare_transformers: bool = False
    accuracy_clips: int = 4
    matmul_size: list[int] | None = None
    device: str = "auto"
    threads: int | None = None
    peak_tflops: dict[str, float] = field(default_factory=dict)  # datasheet peaks per PEAK_KEYS entry: MFU
    json: str | None = None

    def validate(self) -> "BenchOptions":
        """Every value type- and range-checked before anything is allocated; one line naming the flag."""
        _choices("--what", self.what, WHAT)
        _choices("--precision", self.precision, PRECISIONS)
        if self.preset not in PRESETS:
            raise UserError(f"--preset {self.preset}: use one of {', '.join(PRESETS)}")
        _int_range("--repeat", self.repeat, 1, MAX_REPEAT)
        _int_range("--warmup", self.warmup, 0, MAX_REPEAT)
        _int_range("--predict-videos", self.predict_videos, 1, MAX_BATCH)
        _int_range("--accuracy-clips", self.accuracy_clips, 0, MAX_BATCH)
        for value in self.batch:
            _int_range("--batch", value, 1, MAX_BATCH)
        for value in self.workers:
            _int_range("--workers", value, 0, 256)
        for value in self.matmul_size or ():
            _int_range("--matmul-size", value, 1, MAX_MATMUL)
        if self.threads is not None:
            _int_range("--threads", self.threads, 1, 4096)
        for key, value in self.peak_tflops.items():
            if key not in PEAK_KEYS:
                raise UserError(f"--peak-tflops {key}={value}: {key!r} is not one of {', '.join(PEAK_KEYS)}")
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UserError(f"--peak-tflops {key}={value}: need a positive finite number of TFLOP/s")
        self.videos = expand_videos(self.videos) if self.videos else self.videos
        if self.weights is not None and not Path(self.weights).exists():
            raise UserError(f"--weights {self.weights}: file not found")
        if self.json is not None and not Path(self.json).resolve().parent.is_dir():
            raise UserError(f"--json {self.json}: folder {Path(self.json).resolve().parent} does not exist")
        if self.json is not None:
            taken = {str(Path(p).resolve()): flag for flag, p in [("--weights", self.weights)] if p}
            taken.update({str(Path(v).resolve()): "--videos" for v in self.videos or ()})
            if str(Path(self.json).resolve()) in taken:
                raise UserError(f"--json {self.json}: is also {taken[str(Path(self.json).resolve())]}; it would be overwritten")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def parse_peak_tflops(text: str, precisions: list[str]) -> dict[str, float]:
    """`bf16=989,fp16=989,tf32=495,fp32=67` (datasheet TFLOP/s per precision). A bare number
    is accepted only when one precision is benched: one peak for all would give fp32 an MFU
    against the bf16 peak."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if len(items) == 1 and "=" not in items[0]:
        if len(precisions) != 1:
            raise UserError(f"--peak-tflops {text}: give one peak per precision, e.g. bf16=989,fp32=67")
        items = [f"{precisions[0]}={items[0]}"]
    peaks: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            peaks[key.strip()] = float(value)
        except ValueError:
            raise UserError(f"--peak-tflops {text}: {item!r} is not PRECISION=TFLOPS") from None
        if not sep:
            raise UserError(f"--peak-tflops {text}: {item!r} is not PRECISION=TFLOPS")
    return peaks


def expand_videos(paths: list[str]) -> list[str]:
    """Files as given; a folder stands for the videos in it (recursive, sorted)."""
    from ..data.files import find_videos

    videos = []
    for path in paths:
        if Path(path).is_dir():
            found = find_videos(path)
            if not found:
                raise UserError(f"--videos {path}: no video files in this folder")
            videos += [str(p) for p in found]
        elif Path(path).is_file():
            videos.append(path)
        else:
            raise UserError(f"--videos {path}: file not found")
    return videos


def _choices(flag: str, values: list[str], allowed: tuple[str, ...]) -> None:
    if not values:
        raise UserError(f"{flag}: give at least one of {', '.join(allowed)}")
    for value in values:
        if value not in allowed:
            raise UserError(f"{flag} {value}: not one of {', '.join(allowed)}")


def _int_range(flag: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{flag} {value}: need a whole number from {low} to {high}")
