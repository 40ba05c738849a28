"""How fast TimeSformer runs here, and how close to the machine's limit: `timesformer bench`.

    python -m timesformer.bench --preset vit-b --what matmul,model --batch 1 --json bench.json

Every figure is the median of `--repeat` timed runs after `--warmup` untimed ones. Cases
that are compared (ours vs transformers, fp32 vs bf16, eager vs compiled, preprocess vs bare
decode) run interleaved, one call of each per round, so that load from other processes on a
shared machine hits them alike; their ratios are medians of the per-round ratios.

- matmul: a large square GEMM per precision, measured in the same run: the peak that
  GFLOP/s are compared to (`peak_fraction`).
- model: forward (inference mode; bf16 = autocast), ours and transformers' on the same input
  with the same weights (ours loaded from transformers' files by `load_model`), logits
  compared; bf16-vs-fp32 logit error and top-1 agreement; `--compile` adds torch.compile.
- train: forward + backward + SGD step, optionally with activation checkpointing.
- preprocess: `timesformer.preprocess` (the 3-crop test tensor) vs PyAV decoding every frame
  of the file with frame threads and converting nothing (the floor).
- predict: `Predictor.predict` end to end (decode threads + 3-view forward + top-k).
- loader: DataLoader over `VideoListDataset` (train pipeline) feeding a forward pass;
  reader_cost = waiting for the batch, batch_cost = reader_cost + forward.

FLOPs are counted analytically (`timesformer_flops`), 2 per multiply-add.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .devices import resolve_amp_dtype, resolve_device
from .errors import UserError
from .model.timesformer import TimeSformer, TimeSformerConfig
from .utils import atomic_write_text

PRESETS = {
    "vit-b": {},  # TimeSformerConfig's defaults: TimeSformer-B/16, 8 frames of 224x224, divided attention
    "tiny": dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_frames=4, num_classes=10),
}
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# The synthetic clip when no --videos are given: what PaddleVideo's slow preprocessing was measured on.
SYNTH_VIDEO = {"vit-b": dict(seconds=10.0, width=1280, height=720), "tiny": dict(seconds=2.0, width=320, height=240)}


# --------------------------------------------------------------------------- FLOPs


def timesformer_flops(config: TimeSformerConfig, batch: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one forward pass of `batch` clips.

    Counts every matrix product: patch embedding, qkv/proj/temporal_fc/mlp Linears, the two
    attention products (q·kᵀ and attn·v) and the head, as the reference computes them (so
    that implementations are credited the same work). Norms, softmax, GELU and additions
    (well under 1%) are not counted. TimeSformer-B 8x224 divided: 391.7 GFLOP per clip
    (196 GMAC, of which 6.0 GMAC are attention products).
    """
    dim, frames, mlp = config.embed_dim, config.num_frames, config.mlp_hidden_dim
    patches = (config.img_size // config.patch_size) ** 2
    patch_inputs = config.in_chans * config.patch_size**2

    def linear(tokens: int, fan_in: int, fan_out: int) -> int:
        return tokens * fan_in * fan_out

    def attention(groups: int, length: int) -> int:
        return 2 * groups * length * length * dim  # q·kᵀ and attn·v over all heads

    macs = linear(patches * frames, patch_inputs, dim)
    if config.attention_type == "divided_space_time":
        per_frame = patches + 1  # the cls token joins every frame's spatial attention
        block = (
            linear(patches * frames, dim, 3 * dim) + attention(patches, frames)  # temporal: each patch over time
            + 2 * linear(patches * frames, dim, dim)  # temporal proj + temporal_fc
            + linear(frames * per_frame, dim, 4 * dim) + attention(frames, per_frame)  # spatial qkv + proj
            + linear(1 + patches * frames, dim, 2 * mlp)  # mlp fc1 + fc2
        )  # fmt: skip
    elif config.attention_type == "joint_space_time":
        tokens = 1 + patches * frames
        block = linear(tokens, dim, 4 * dim) + attention(1, tokens) + linear(tokens, dim, 2 * mlp)
    else:  # space_only: every frame is an image
        tokens = patches + 1
        block = frames * (linear(tokens, dim, 4 * dim) + attention(1, tokens) + linear(tokens, dim, 2 * mlp))
    macs += config.depth * block + linear(1, dim, config.num_classes)
    return 2 * batch * macs


# --------------------------------------------------------------------------- timing and memory


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Memory one call adds at its peak, in MiB.

    CUDA: the caching allocator's peak above what was allocated before. CPU (Linux): the
    process's peak RSS (VmHWM, reset through /proc/self/clear_refs) above its RSS before;
    freed heap goes back to the OS first (malloc_trim), so reusing it does not hide growth.
    tracemalloc would not see torch's allocations. None where this cannot be measured.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except OSError:
            self._trim = None

    @staticmethod
    def _status_kib(key: str) -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise OSError(f"no {key} in /proc/self/status")

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:
            if self._trim is not None:
                self._trim(0)
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # resets VmHWM to the current RSS
            self.base = self._status_kib("VmRSS") * 1024
        except OSError:
            self.base = None

    def stop(self) -> float | None:
        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        if self.base is None:
            return None
        try:
            return max(self._status_kib("VmHWM") * 1024 - self.base, 0) / 2**20
        except OSError:
            return None


@dataclass
class Timing:
    seconds: list[float]  # timed runs
    first_s: float  # the first call (cold caches; includes compiling for compiled models)
    peak_mem_mb: float | None  # measured on the last warm-up call
    output: object = None  # what the last call returned

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)


def timed_call(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    output = fn()
    synchronize(device)
    return time.perf_counter() - start, output


def interleaved(
    cases: dict[str, Callable[[], object]], device: torch.device, repeat: int, warmup: int, desc: str = ""
) -> dict[str, Timing]:
    """Time every case `repeat` times after `warmup` calls, one call of each per round."""
    memory = PeakMemory(device)
    first: dict[str, float] = {}
    peak: dict[str, float | None] = {name: None for name in cases}
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    outputs: dict[str, object] = {}
    for round_index in range(warmup):
        for name, fn in cases.items():
            probe = round_index == warmup - 1
            if probe:
                memory.start()
            elapsed, outputs[name] = timed_call(fn, device)
            if probe:
                peak[name] = memory.stop()
            first.setdefault(name, elapsed)
    for _ in tqdm(range(repeat), desc=desc, leave=False, disable=None, file=sys.stderr):
        for name, fn in cases.items():
            elapsed, outputs[name] = timed_call(fn, device)
            seconds[name].append(elapsed)
            first.setdefault(name, elapsed)
    return {name: Timing(seconds[name], first[name], peak[name], outputs.get(name)) for name in cases}


def paired_speedup(fast: Timing, slow: Timing) -> float:
    """How many times faster `fast` is than `slow`: median of the per-round ratios."""
    return statistics.median(s / f for f, s in zip(fast.seconds, slow.seconds))


# --------------------------------------------------------------------------- machine and inputs


def machine_info(device: torch.device) -> dict:
    cpu_model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu_model in ("", platform.machine(), platform.processor()):
                cpu_model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    info = {
        "cpu_model": cpu_model,
        "cpu_features": sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"}),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
    }
    for package in ("transformers", "av", "numpy"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info["gpu"] = properties.name
        info["gpu_memory_gib"] = round(properties.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def make_test_video(path: str | os.PathLike, seconds: float = 10.0, fps: int = 30, width: int = 1280, height: int = 720) -> Path:
    """A panning smooth texture with grain, H.264 at about 1.5 Mb/s like ordinary 720p video."""
    import av

    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, height // 4 + 1, width // 4 + 1)).astype(np.float32))
    texture = F.interpolate(coarse, scale_factor=8, mode="bicubic")[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()
    grains = [rng.integers(-3, 4, (height, width, 1)).astype(np.int16) for _ in range(7)]
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            top, left = (3 * i) % height, (5 * i) % width
            image = (texture[top : top + height, left : left + width] + grains[i % 7]).clip(0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


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


def transformers_model(config: TimeSformerConfig):
    """transformers' TimesformerForVideoClassification with the same architecture, eval mode."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    theirs = TimesformerConfig(
        image_size=config.img_size,
        patch_size=config.patch_size,
        num_channels=config.in_chans,
        num_frames=config.num_frames,
        hidden_size=config.embed_dim,
        num_hidden_layers=config.depth,
        num_attention_heads=config.num_heads,
        intermediate_size=config.mlp_hidden_dim,
        hidden_act="gelu",
        layer_norm_eps=config.norm_eps,
        qkv_bias=config.qkv_bias,
        attention_type=config.attention_type,
        num_labels=config.num_classes,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        drop_path_rate=0,  # inference only (its config field is typed int)
    )
    return TimesformerForVideoClassification(theirs).eval()


def autocast(device: torch.device, precision: str):
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


# --------------------------------------------------------------------------- the bench


@dataclass
class Bench:
    options: argparse.Namespace
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

    # ---- helpers

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
            if self.options.peak_tflops:
                row["mfu"] = row["gflops"] / (self.options.peak_tflops * 1e3)
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
        from .model.checkpoints import load_model

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

    # ---- measurements

    def bench_matmul(self) -> None:
        sizes = self.options.matmul_size or ([1024] if self.options.preset == "tiny" else [2048, 4096])
        measured = []
        for size in sizes:
            cases = {}
            for precision in self.options.precision:
                dtype = AUTOCAST_DTYPES[precision] or torch.float32
                a, b = (torch.randn(size, size, device=self.device).to(dtype) for _ in range(2))
                out = torch.empty(size, size, device=self.device, dtype=dtype)
                cases[precision] = lambda a=a, b=b, out=out: torch.mm(a, b, out=out)
            timings = interleaved(cases, self.device, self.options.repeat, self.options.warmup, f"matmul {size}")
            for precision, timing in timings.items():
                self.peak_gflops[precision] = max(self.peak_gflops.get(precision, 0.0), 2 * size**3 / timing.median_s / 1e9)
                measured.append((size, precision, timing))
        for size, precision, timing in measured:  # recorded once the peak over every size is known
            self.record("matmul", f"mm {size}x{size}", timing, precision, flops=2 * size**3)

    def bench_model(self) -> None:
        ours = self.model()
        for batch in self.options.batch:
            x = self.clip_batch(batch)
            x_theirs = x.transpose(1, 2).contiguous()  # transformers takes [B, T, C, H, W]
            cases = {}
            for precision in self.options.precision:
                cases[f"ours {precision}"] = self.forward(ours, x, precision)
                if self.theirs is not None:
                    cases[f"transformers {precision}"] = self.forward(self.theirs, x_theirs, precision, transformers=True)
                if self.options.compile:
                    compiled = self.compiled_forward(x, precision)
                    if compiled is not None:
                        cases[f"ours+compile {precision}"] = compiled
            timings = interleaved(cases, self.device, self.options.repeat, self.options.warmup, f"model batch {batch}")
            flops = timesformer_flops(self.config, batch)
            for name, timing in timings.items():
                impl, precision = name.split()
                extra = {"compile_s": self.checks["compile_s"][f"{precision} batch {batch}"]} if impl == "ours+compile" else {}
                self.record("model", impl, timing, precision, batch, clips=batch, flops=flops, **extra)
            for precision in self.options.precision:
                ours_timing = timings[f"ours {precision}"]
                if f"transformers {precision}" in timings:
                    theirs_timing = timings[f"transformers {precision}"]
                    self.ratio("model", "ours_vs_transformers", paired_speedup(ours_timing, theirs_timing),
                               "speedup of ours over transformers (>1: ours faster)", precision=precision, batch=batch)  # fmt: skip
                    if self.checks.get("same_weights_as_transformers"):
                        diff = (ours_timing.output - theirs_timing.output).abs().max().item()
                        self.checks.setdefault("logits_ours_vs_transformers_max_abs", {})[f"{precision} batch {batch}"] = diff
                if f"ours+compile {precision}" in timings:
                    self.ratio("model", "compile_vs_eager", paired_speedup(timings[f"ours+compile {precision}"], ours_timing),
                               "speedup of torch.compile over eager (>1: compiled faster)", precision=precision, batch=batch)  # fmt: skip
        if "bf16" in self.options.precision and "fp32" in self.options.precision:
            self.checks["bf16_vs_fp32"] = self.bf16_accuracy()

    def compiled_forward(self, x: torch.Tensor, precision: str):
        """torch.compile'd forward, compiled here (first call timed as compile_s); None if it fails."""
        compiled = torch.compile(self.model())
        call = self.forward(compiled, x, precision)
        key = f"{precision} batch {x.shape[0]}"
        try:
            elapsed, _ = timed_call(call, self.device)
        except Exception as err:  # a missing compiler or an unsupported op: report, keep benching eager
            self.checks.setdefault("compile_errors", {})[key] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            self.log(f"torch.compile failed ({key}): {self.checks['compile_errors'][key]}")
            return None
        self.checks.setdefault("compile_s", {})[key] = elapsed
        return call

    def accuracy_inputs(self) -> list[torch.Tensor]:
        """Real clips (test views of --videos) when given, else random ones; batch 1 each."""
        count = self.options.accuracy_clips
        if self.options.videos:
            views = [view for path in self.videos for view in self.preprocess_call(path)()]
            return [view.unsqueeze(0).to(self.device) for view in views[:count]]
        return [self.clip_batch(1, seed=1 + i) for i in range(count)]

    def bf16_accuracy(self) -> dict:
        ours = self.model()
        fp32, bf16 = [], []
        for x in self.accuracy_inputs():
            fp32.append(self.forward(ours, x, "fp32")())
            bf16.append(self.forward(ours, x, "bf16")())
        if not fp32:
            return {}
        fp32, bf16 = torch.cat(fp32), torch.cat(bf16)
        error = (bf16 - fp32).abs()
        return dict(
            clips=len(fp32),
            inputs="videos" if self.options.videos else "random",
            max_abs_logit_error=error.max().item(),
            mean_abs_logit_error=error.mean().item(),
            max_abs_logit=fp32.abs().max().item(),
            top1_agreement=(bf16.argmax(-1) == fp32.argmax(-1)).float().mean().item(),
        )

    def bench_train(self) -> None:
        config = dataclasses.replace(self.config, grad_checkpointing=False)
        model = TimeSformer(config).to(self.device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step(x: torch.Tensor, labels: torch.Tensor, precision: str, checkpointing: bool):
            def call():
                model.config.grad_checkpointing = checkpointing
                optimizer.zero_grad(set_to_none=True)
                with autocast(self.device, precision):
                    loss = F.cross_entropy(model(x), labels)
                loss.backward()
                optimizer.step()
                return loss.item()

            return call

        for batch in self.options.batch:
            x = self.clip_batch(batch)
            labels = torch.arange(batch, device=self.device) % config.num_classes
            cases = {}
            for precision in self.options.precision:
                for checkpointing in (False, True) if self.options.checkpointing else (False,):
                    cases[(precision, checkpointing)] = step(x, labels, precision, checkpointing)
            timings = interleaved(cases, self.device, self.options.repeat, self.options.warmup, f"train batch {batch}")
            # Useful work: forward + backward = 3 forwards (checkpointing's recomputation not counted).
            flops = 3 * timesformer_flops(config, batch)
            for (precision, checkpointing), timing in timings.items():
                impl = "ours+checkpointing" if checkpointing else "ours"
                self.record("train", impl, timing, precision, batch, clips=batch, flops=flops)
            if self.options.checkpointing:
                for precision in self.options.precision:
                    plain, ckpt = timings[(precision, False)], timings[(precision, True)]
                    self.ratio("train", "checkpointing_time", paired_speedup(plain, ckpt),
                               "step time with / without activation checkpointing", precision=precision, batch=batch)  # fmt: skip
                    if plain.peak_mem_mb and ckpt.peak_mem_mb:
                        self.ratio("train", "checkpointing_memory", ckpt.peak_mem_mb / plain.peak_mem_mb,
                                   "peak memory with / without activation checkpointing", precision=precision, batch=batch)  # fmt: skip

    def preprocess_call(self, path: Path):
        from .data.pipeline import preprocess

        c = self.config
        return lambda: preprocess(path, num_seg=c.num_frames, short_side_min=c.img_size, short_side_max=c.img_size, crop_size=c.img_size)

    def bench_preprocess(self) -> None:
        from .data.paddlevideo_reference import paddlevideo_test_tensor

        for path in self.videos:
            cases = {"pyav-decode": lambda path=path: decode_all_frames(path), "preprocess": self.preprocess_call(path),
                     "paddlevideo": lambda path=path: paddlevideo_test_tensor(path, self.config.num_frames, self.config.img_size)}  # fmt: skip
            timings = interleaved(cases, self.device, self.options.repeat, self.options.warmup, f"preprocess {path.name}")
            note = video_description(path)
            self.record("preprocess", "pyav-decode (floor)", timings["pyav-decode"], clips=1, video=str(path),
                        note=f"{note}, every frame, frame threads")  # fmt: skip
            self.record("preprocess", "timesformer.preprocess", timings["preprocess"], clips=1, video=str(path),
                        note=f"{note}, 3-crop test tensor")  # fmt: skip
            self.ratio("preprocess", "preprocess_vs_decode", paired_speedup(timings["pyav-decode"], timings["preprocess"]),
                       "preprocess time / bare decode time (issue 7 target <= 1.5)", video=str(path))  # fmt: skip
            self.record("preprocess", "paddlevideo pipeline", timings["paddlevideo"], clips=1, video=str(path),
                        note=f"{note}, every window frame to RGB, normalize, then resize")  # fmt: skip
            self.ratio("preprocess", "paddlevideo_vs_preprocess", paired_speedup(timings["preprocess"], timings["paddlevideo"]),
                       "PaddleVideo's time / ours (issue 7 target >= 2.5)", video=str(path))  # fmt: skip

    def bench_predict(self) -> None:
        from .export.predictor import Predictor
        from .model.checkpoints import save_model

        weights = self.options.weights or save_model(self.model(), self.workdir / "bench_model.safetensors")
        cases = {}
        for precision in self.options.precision:
            predictor = Predictor.from_weights(weights, device=str(self.device), precision=precision, num_workers=2)
            cases[precision] = lambda predictor=predictor: predictor.predict([str(v) for v in self.videos], top_k=1)
        timings = interleaved(cases, self.device, self.options.repeat, self.options.warmup, "predict")
        views = predictor.spec.views
        for precision, timing in timings.items():
            self.record("predict", "Predictor", timing, precision, 1, clips=len(self.videos),
                        flops=views * timesformer_flops(self.config, len(self.videos)),
                        note=f"{len(self.videos)} video(s), {views} views each; clips/s = videos/s")  # fmt: skip

    def bench_loader(self) -> None:
        from .data.datasets import VideoListDataset, collate_samples
        from .data.pipeline import VideoPipeline

        c = self.config
        batch = max(self.options.batch)
        samples = max(len(self.videos), 4 * batch)
        list_file = self.workdir / "loader_list.txt"
        list_file.write_text("".join(f"{self.videos[i % len(self.videos)]} 0\n" for i in range(samples)))
        # PaddleVideo's training pipeline (short side in [256, 320] for 224 crops, random crop, flip).
        pipeline = VideoPipeline.for_mode(
            "train", c.num_frames, short_side_min=round(c.img_size * 256 / 224),
            short_side_max=round(c.img_size * 320 / 224), crop_size=c.img_size,
        )  # fmt: skip
        dataset = VideoListDataset(list_file, pipeline=pipeline, mode="train")
        precision = self.options.precision[0]
        model = self.model()
        for workers in self.options.workers:
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=batch, num_workers=workers, collate_fn=collate_samples,
                pin_memory=self.device.type == "cuda",
            )  # fmt: skip
            reader, batch_costs = [], []
            start = previous = time.perf_counter()
            for item in tqdm(loader, desc=f"loader workers={workers}", leave=False, disable=None, file=sys.stderr):
                loaded = time.perf_counter()
                clips = item["clip"].flatten(0, 1).to(self.device, non_blocking=True)
                self.forward(model, clips, precision)()
                synchronize(self.device)
                done = time.perf_counter()
                reader.append(loaded - previous)
                batch_costs.append(done - previous)
                previous = done
            total = time.perf_counter() - start
            # The first batch waits for worker start-up and a full first read: reported apart.
            steady = slice(1, None) if len(reader) > 1 else slice(None)
            timing = Timing(batch_costs[steady], batch_costs[0], None)
            self.record("loader", f"workers={workers}", timing, precision, batch, clips=batch,
                        reader_cost_s=statistics.mean(reader[steady]), batch_cost_s=statistics.mean(batch_costs[steady]),
                        first_batch_s=batch_costs[0], samples=samples, samples_per_s_overall=samples / total,
                        note="train pipeline; batch_cost = reader_cost + forward")  # fmt: skip

    # ---- the whole run

    def prepare_videos(self) -> None:
        if self.options.videos:
            self.videos = [Path(v) for v in self.options.videos]
            return
        if not {"preprocess", "predict", "loader"} & set(self.options.what):
            return
        spec = SYNTH_VIDEO[self.options.preset]
        self.log(f"writing a {spec['width']}x{spec['height']} {spec['seconds']:g} s H.264 test clip")
        self.videos = [make_test_video(self.workdir / "synthetic.mp4", **spec)]

    def run(self) -> dict:
        if self.options.weights:
            self.model()  # the checkpoint's architecture replaces the preset's
        self.prepare_videos()
        steps = {"matmul": self.bench_matmul, "model": self.bench_model, "train": self.bench_train,
                 "preprocess": self.bench_preprocess, "predict": self.bench_predict, "loader": self.bench_loader}  # fmt: skip
        for what in sorted(set(self.options.what), key=list(steps).index):  # matmul first: the others use its peak
            steps[what]()
        settings = {k: v for k, v in vars(self.options).items() if k != "func"}
        return dict(
            machine=machine_info(self.device),
            settings=settings,
            model_config=self.config.to_dict(),
            flops_per_clip=timesformer_flops(self.config, 1),
            peak_gflops=self.peak_gflops,
            results=self.rows,
            ratios=self.ratios,
            checks=self.checks,
        )


# --------------------------------------------------------------------------- report


def _format(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_report(report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), device {machine['device']}"
        + (f" ({machine['gpu']})" if machine.get("gpu") else "")
        + (f", load {machine['load_average'][0]:.1f}" if machine.get("load_average") else ""),
        f"model: {report['model_config']['attention_type']} D={report['model_config']['embed_dim']} "
        f"depth={report['model_config']['depth']} {report['model_config']['num_frames']}x{report['model_config']['img_size']}, "
        f"{report['flops_per_clip'] / 1e9:.2f} GFLOP per clip",
        "",
        f"{'what':<10} {'impl':<24} {'prec':<5} {'batch':>5} {'median ms':>10} {'clips/s':>8} {'GFLOP/s':>8} "
        f"{'%peak':>6} {'mem MiB':>8}  note",
    ]  # fmt: skip
    for row in report["results"]:
        fraction = row.get("peak_fraction")
        note = row.get("note", "")
        if row["what"] == "loader":
            note = f"reader {row['reader_cost_s'] * 1e3:.0f} ms / batch {row['batch_cost_s'] * 1e3:.0f} ms; " + note
        if "compile_s" in row:
            note = f"compile {row['compile_s']:.1f} s"
        lines.append(
            f"{row['what']:<10} {row['impl']:<24} {row['precision'] or '-':<5} {_format(row['batch'], 'd'):>5} "
            f"{row['median_s'] * 1e3:>10.1f} {_format(row.get('clips_per_s'), '.2f'):>8} {_format(row.get('gflops'), '.0f'):>8} "
            f"{_format(fraction and 100 * fraction, '.0f'):>6} {_format(row['peak_mem_mb'], '.0f'):>8}  {note}"
        )  # fmt: skip
    if report["ratios"]:
        lines += ["", "ratios (medians of per-round ratios, interleaved runs):"]
        for r in report["ratios"]:
            where = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("what", "name", "value", "meaning"))
            lines.append(f"  {r['what']} {r['name']} [{where}]: {r['value']:.3f}  ({r['meaning']})")
    if report["checks"]:
        lines += ["", "checks:"]
        for name, value in report["checks"].items():
            lines.append(f"  {name}: {json.dumps(value)}")
    return "\n".join(lines)


def run_bench(options: argparse.Namespace) -> dict:
    """Run what `options` (the `timesformer bench` flags) ask for; print the table, write JSON."""
    if options.repeat < 1 or options.warmup < 0:
        raise UserError(f"--repeat {options.repeat} / --warmup {options.warmup}: need repeat >= 1 and warmup >= 0")
    if min(options.batch) < 1:
        raise UserError(f"--batch {','.join(map(str, options.batch))}: batch sizes must be at least 1")
    device = resolve_device(options.device)
    if options.threads is not None:
        if options.threads < 1:
            raise UserError(f"--threads {options.threads}: need at least 1")
        torch.set_num_threads(options.threads)
    for precision in options.precision:
        resolve_amp_dtype(device, precision)  # fp16 on CPU: one line, before any work
    for video in options.videos or ():
        if not Path(video).is_file():
            raise UserError(f"--videos {video}: file not found")
    if options.weights and not Path(options.weights).exists():
        raise UserError(f"--weights {options.weights}: file not found")
    if options.compare_transformers:
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise UserError("--compare-transformers: transformers is not installed") from None

    config = TimeSformerConfig(**PRESETS[options.preset])
    with tempfile.TemporaryDirectory(prefix="timesformer-bench-") as workdir:
        report = Bench(options, device, config, Path(workdir)).run()
    print(format_report(report))
    if options.json:
        atomic_write_text(options.json, json.dumps(report, indent=2, default=str) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    from .commands.bench import add_arguments

    parser = argparse.ArgumentParser(prog="python -m timesformer.bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_bench(args)
    except UserError as err:
        print(f"timesformer bench: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
