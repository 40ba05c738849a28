"""A whole bench run: check the options, prepare the model and videos, run each benchmark
in order (matmul first: the others are compared to its peak), assemble the report."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from ..cpu import auto_precision
from ..devices import resolve_amp_dtype, resolve_device
from ..model.timesformer import TimeSformerConfig
from ..errors import UserError
from ..utils import atomic_write_text
from .clips import SYNTH_VIDEO, check_video, make_test_video
from .flops import timesformer_flops
from .loader import bench_loader
from .machine import machine_info
from .matmul import bench_matmul
from .model_forward import bench_model
from .onnx_runtime import bench_onnx
from .options import PRESETS, WHAT, BenchOptions
from .predict import bench_predict
from .preprocess import bench_preprocess
from .report import format_report, recommendation
from .session import BenchSession
from .train_step import bench_train

BENCHMARKS = {"matmul": bench_matmul, "model": bench_model, "train": bench_train, "preprocess": bench_preprocess,
              "predict": bench_predict, "onnx": bench_onnx, "loader": bench_loader}  # fmt: skip
assert tuple(BENCHMARKS) == WHAT  # the order they run in, and the flag's choices


def prepare_videos(session: BenchSession) -> None:
    options = session.options
    if options.videos:
        for video in options.videos:
            check_video(video)  # one line naming a broken file now, not a traceback minutes later
        session.videos = [Path(v) for v in options.videos]
        return
    if not {"preprocess", "predict", "onnx", "loader"} & set(options.what):
        return
    spec = SYNTH_VIDEO[options.preset]
    session.log(f"writing a {spec['width']}x{spec['height']} {spec['seconds']:g} s H.264 test clip")
    session.videos = [make_test_video(session.workdir / "synthetic.mp4", **spec)]


def run_session(session: BenchSession) -> dict:
    if session.options.weights:
        session.model()  # the checkpoint's architecture replaces the preset's
    prepare_videos(session)
    for what in WHAT:
        if what in session.options.what:
            BENCHMARKS[what](session)
    report = dict(
        machine=machine_info(session.device),
        settings=session.options.to_dict(),
        model_config=session.config.to_dict(),
        flops_per_clip=timesformer_flops(session.config, 1),
        peak_gflops=session.peak_gflops,
        results=session.rows,
        ratios=session.ratios,
        checks=session.checks,
        auto_precision=auto_precision(session.device),
    )
    report["recommendation"] = recommendation(report)
    return report


def run_bench(options: BenchOptions) -> dict:
    """Run what `options` ask for; print the table, write the JSON if asked. Returns the report."""
    options.validate()
    device = resolve_device(options.device)
    for precision in options.precision:
        resolve_amp_dtype(device, precision)  # fp16 on CPU: one line, before any work
    if options.compare_transformers:
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise UserError("--compare-transformers: transformers is not installed") from None
    if "onnx" in options.what:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise UserError("--what onnx: onnxruntime is not installed (pip install 'timesformer[export]')") from None
    if options.threads is not None:
        torch.set_num_threads(options.threads)

    config = TimeSformerConfig(**PRESETS[options.preset])
    with tempfile.TemporaryDirectory(prefix="timesformer-bench-") as workdir:
        report = run_session(BenchSession(options, device, config, Path(workdir)))
    print(format_report(report))
    if options.json:
        atomic_write_text(options.json, json.dumps(report, indent=2, default=str) + "\n")
    return report
