"""The deploy path: ONNX Runtime fp32 and its int8 dynamic quantization against our PyTorch
fp32 / bf16 on the same 3-view clip, and int8's agreement with fp32 on every video."""

from __future__ import annotations

import numpy as np
import torch

from .flops import timesformer_flops
from .session import BenchSession, autocast
from .timing import interleaved, paired_speedup


def bench_onnx(session: BenchSession) -> None:
    from ..export.onnx import export_onnx, quantize_int8
    from ..inference.engines import OnnxEngine
    from ..inference.predictor import softmax
    from ..inference.spec import InferenceSpec
    from ..inference.views import MultiViewModel, stack_views

    options, c = session.options, session.config
    model = session.model().to("cpu")
    spec = InferenceSpec.from_model(c.to_dict())
    session.log("exporting the model to ONNX and quantizing it to int8")
    exported = export_onnx(model, spec, session.workdir / "onnx")
    int8_path = quantize_int8(exported.onnx_path)
    fp32_engine, int8_engine = OnnxEngine(exported.onnx_path), OnnxEngine(int8_path)
    net = MultiViewModel(model, spec.num_seg, spec.avg_type).eval()
    model.to(session.device)

    clips = [stack_views(session.preprocess_call(path)()).unsqueeze(0) for path in session.videos]
    if not clips:
        clips = [stack_views(session.clip_batch(spec.views).cpu()).unsqueeze(0)]

    def torch_call(precision: str):
        def call():
            with torch.inference_mode(), autocast(session.device, precision):
                return net(clips[0].to(session.device)).float().cpu().numpy()

        return call

    cases = {"ort fp32": lambda: fp32_engine(clips[0]), "ort int8": lambda: int8_engine(clips[0])}
    for precision in options.precision:
        cases[f"torch {precision}"] = torch_call(precision)
    timings = interleaved(cases, session.device, options.repeat, options.warmup, "onnx")
    flops = spec.views * timesformer_flops(c, 1)
    for name, timing in timings.items():
        engine, precision = name.split()
        session.record("onnx", "onnxruntime" if engine == "ort" else "torch", timing, precision, 1, clips=1, flops=flops,
                       note="1 video, 3 views" + (", dynamic int8 (MatMul/Gemm weights)" if precision == "int8" else ""))  # fmt: skip
    faster = paired_speedup(timings["ort int8"], timings["ort fp32"])
    session.ratio("onnx", "int8_vs_fp32", faster, "ORT int8 speedup over ORT fp32 (>1: int8 faster)")
    for precision in options.precision:
        session.ratio("onnx", "torch_vs_ort_fp32", paired_speedup(timings[f"torch {precision}"], timings["ort fp32"]),
                      "ORT fp32 time / torch time (>1: torch faster)", precision=precision)  # fmt: skip

    fp32_probs = np.concatenate([softmax(fp32_engine(clip)) for clip in clips])
    int8_probs = np.concatenate([softmax(int8_engine(clip)) for clip in clips])
    session.checks["int8_vs_fp32"] = dict(
        clips=len(clips),
        inputs="videos" if session.videos else "random",
        top1_agreement=float((fp32_probs.argmax(-1) == int8_probs.argmax(-1)).mean()),
        max_abs_prob_diff=float(np.abs(fp32_probs - int8_probs).max()),
        speedup=faster,
        int8_bytes=int8_path.stat().st_size,
        fp32_bytes=exported.onnx_path.stat().st_size,
    )
