"""One bench run's shared state: options, device, the model under test, inputs, and the rows,
ratios and checks that every benchmark records into."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..cpu import auto_precision
from ..devices import resolve_amp_dtype
from ..model.timesformer import TimeSformer, TimeSformerConfig
from .options import BenchOptions
from .timing import Timing
from .transformers_model import transformers_model


def autocast(device: torch.device, precision: str):
    dtype = resolve_amp_dtype(device, precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def peak_key(device: torch.device, precision: str) -> str:
    """Which datasheet peak a precision's MFU is against: fp32 GEMMs run as TF32 on CUDA when allowed."""
    if precision == "fp32" and device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return precision


@dataclass
class BenchSession:
    options: BenchOptions
    device: torch.device
    config: TimeSformerConfig
    workdir: Path
    rows: list[dict] = field(default_factory=list)
    ratios: list[dict] = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    peak_gflops: dict[str, float] = field(default_factory=dict)
    ours: TimeSformer | None = None
    theirs: torch.nn.Module | None = None
    videos: list[Path] = field(default_factory=list)

    def log(self, text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    def record(self, what: str, impl: str, timing: Timing, precision: str | None = None, batch: int | None = None,
               clips: int | None = None, flops: int | None = None, **extra) -> dict:  # fmt: skip
        row = dict(what=what, impl=impl, precision=precision, batch=batch, median_s=timing.median_s,
                   min_s=min(timing.seconds), first_s=timing.first_s, runs=len(timing.seconds),
                   peak_mem_mb=timing.peak_mem_mb, seconds=timing.seconds)  # fmt: skip
        if clips:
            row["clips_per_s"] = clips / timing.median_s
        if flops:
            row["gflops"] = flops / timing.median_s / 1e9
            if self.peak_gflops.get(precision or "fp32"):
                row["peak_fraction"] = row["gflops"] / self.peak_gflops[precision or "fp32"]
            peak = self.options.peak_tflops.get(peak_key(self.device, precision or "fp32"))
            if peak:
                row["mfu"] = row["gflops"] / (peak * 1e3)
        row.update(extra)
        self.rows.append(row)
        self.log(f"{what} {impl} {precision or ''} batch={batch or '-'}: {timing.median_s * 1e3:.1f} ms")
        return row

    def ratio(self, what: str, name: str, value: float, meaning: str, **where) -> None:
        self.ratios.append(dict(what=what, name=name, value=value, meaning=meaning, **where))

    def model(self) -> TimeSformer:
        """Ours, eval mode. With transformers compared, loaded from its saved files by
        `load_model` (the user's path), so that both hold the same weights."""
        if self.ours is not None:
            return self.ours
        from ..model.checkpoints import load_model

        if self.options.weights:
            self.ours = load_model(self.options.weights)
            self.config = self.ours.config
        if self.options.compare_transformers and "model" in self.options.what:
            self.theirs = transformers_model(self.config).to(self.device)
            if self.ours is None:
                saved = self.workdir / "transformers"
                self.theirs.save_pretrained(saved)
                self.ours = load_model(saved)
                self.checks["same_weights_as_transformers"] = True
            else:
                self.checks["same_weights_as_transformers"] = False  # their weights stay random
        if self.ours is None:
            self.ours = TimeSformer(self.config).eval()
        self.ours.to(self.device)
        return self.ours

    def clip_batch(self, batch: int, seed: int = 0) -> torch.Tensor:
        """Normalized-pixel-like input `[B, 3, T, H, W]`."""
        c = self.config
        generator = torch.Generator().manual_seed(seed)
        shape = (batch, c.in_chans, c.num_frames, c.img_size, c.img_size)
        return torch.randn(shape, generator=generator).to(self.device)

    def forward(self, model: torch.nn.Module, x: torch.Tensor, precision: str, transformers: bool = False):
        def call():
            with torch.inference_mode(), autocast(self.device, precision):
                out = model(pixel_values=x).logits if transformers else model(x)
            return out.float()

        return call

    def fastest_precision(self) -> str | None:
        """The precision of our fastest forward measured at the smallest batch; None before any is."""
        rows = [r for r in self.rows if r["what"] == "model" and r["impl"] == "ours"]
        if not rows:
            return None
        smallest = min(r["batch"] for r in rows)
        return min((r for r in rows if r["batch"] == smallest), key=lambda r: r["median_s"])["precision"]

    def predict_precision(self) -> str:
        """What `predict --precision auto` would run here: the fastest measured, else `auto_precision`'s pick."""
        measured = self.fastest_precision()
        if measured is not None:
            return measured
        auto = auto_precision(self.device)
        return auto if auto in self.options.precision else self.options.precision[0]

    def train_rate(self, precision: str, batch: int) -> float | None:
        """Clips/s of our training step at this precision and batch, if it was measured."""
        for row in self.rows:
            if (row["what"], row["impl"], row["precision"], row["batch"]) == ("train", "ours", precision, batch):
                return row["clips_per_s"]
        return None

    def preprocess_call(self, path: Path):
        """PaddleVideo's 3-crop test tensor `[3, 3, T, H, W]` of `path`, at this model's size."""
        from ..data.pipeline import preprocess

        c = self.config
        return lambda: preprocess(path, num_seg=c.num_frames, short_side_min=c.img_size, short_side_max=c.img_size, crop_size=c.img_size)

    def test_views(self, count: int) -> list[torch.Tensor]:
        """Up to `count` real test views `[1, 3, T, H, W]` from the videos (the first crops first)."""
        views = [view for path in self.videos for view in self.preprocess_call(path)()]
        return [view.unsqueeze(0).to(self.device) for view in views[:count]]
