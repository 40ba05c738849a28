"""Export a TimeSformer to ONNX in PaddleVideo's inference layout, and check the file.

The exported graph is `MultiViewModel`: input `[N, 3, 3*num_seg, H, W]` (the three test
crops stacked along T, dynamic N), output the view-averaged logits `[N, num_classes]`
(softmaxes averaged when `avg_type` is "prob"). `TimeSformer.json` beside it records what
the model expects (frames, size, mean/std, views, classes, label file), so `predict` needs
nothing else. Before anything is moved into the output folder, ONNX Runtime runs the file
on a random input and must agree with PyTorch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..utils import atomic_write_text
from ..data.labels import default_label_file
from ..inference.spec import SPEC_SUFFIX, InferenceSpec
from ..inference.views import MultiViewModel

DEFAULT_OPSET = 18
ONNX_PROTO_LIMIT = 2 * 1024**3  # protobuf's limit: larger models keep their weights in a `.data` file
CHEAP_CHECK_PARAMS = 30_000_000  # below this the self-check also runs a batch of 2 (dynamic batch)


class ExportCheckError(UserError):
    """ONNX Runtime and PyTorch disagree on the exported model."""


@dataclass
class ExportResult:
    onnx_path: Path
    spec_path: Path
    max_abs_diff: float
    tolerance: float
    check_batch: int
    seconds: float
    external_data: bool
    torch_export_path: Path | None = None


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter warns about optional ops (torchvision) and deprecations the user cannot act on."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(
    model: nn.Module,
    spec: InferenceSpec,
    out_dir: str | os.PathLike,
    name: str = "TimeSformer",
    opset: int = DEFAULT_OPSET,
    label_file: str | os.PathLike | None = None,
    torch_export: bool = False,
) -> ExportResult:
    """Write `out_dir/<name>.onnx` (+ `.json`, label list, optional `.pt2`); checked by ONNX Runtime first.

    The label list is `label_file` if given, else the shipped Kinetics-400 list for a
    400-class model; it is copied beside the model and named in the JSON.
    """
    import onnxruntime as ort

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = MultiViewModel(model, spec.num_seg, spec.avg_type).eval()
    size = spec.target_size
    example = torch.randn(2, 3, spec.views * spec.num_seg, size, size, generator=torch.Generator().manual_seed(0))
    param_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    external = param_bytes > ONNX_PROTO_LIMIT * 0.9

    label_file = default_label_file(spec.num_classes, label_file)
    spec.label_file = Path(label_file).name if label_file is not None else None
    spec.opset = opset

    # Everything is written into a temporary folder beside the outputs, checked, then
    # renamed into place: a failed or killed export leaves the previous files untouched.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir))
    try:
        onnx_tmp = staging / f"{name}.onnx"
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                net,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[spec.input_name],
                output_names=[spec.output_name],
                dynamic_shapes={"x": {0: torch.export.Dim("N", min=1)}},
                external_data=external,
                verbose=False,
            )
            program.save(onnx_tmp, external_data=external)
            if torch_export:
                exported = program.exported_program
                exported.example_inputs = None  # else the random example (15 MB) is saved with it
                torch.export.save(exported, staging / f"{name}.pt2")
        del program  # the exporter's copy of the weights

        check_batch = 2 if sum(p.numel() for p in net.parameters()) < CHEAP_CHECK_PARAMS else 1
        x = example[:check_batch]
        with torch.inference_mode():
            expected = net(x).numpy()
        session = ort.InferenceSession(str(onnx_tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {spec.input_name: x.numpy()})[0]
        del session
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        tolerance = 1e-3 * max(1.0, float(np.abs(expected).max()))
        if not diff <= tolerance:
            raise ExportCheckError(
                f"{out_dir / (name + '.onnx')}: ONNX Runtime output differs from PyTorch by {diff:.3g} "
                f"(tolerance {tolerance:.3g}); nothing was written"
            )

        onnx_path = out_dir / f"{name}.onnx"
        spec_path = out_dir / f"{name}{SPEC_SUFFIX}"
        if label_file is not None:
            shutil.copyfile(label_file, staging / spec.label_file)
        for produced in sorted(staging.iterdir(), key=lambda p: p.suffix == ".onnx"):  # the .onnx last
            os.replace(produced, out_dir / produced.name)
        atomic_write_text(spec_path, spec.to_json())
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    torch_export_path = out_dir / f"{name}.pt2" if torch_export else None
    return ExportResult(
        onnx_path, spec_path, diff, tolerance, check_batch, time.perf_counter() - started, external, torch_export_path
    )


INT8_INFIX = ".int8"  # TimeSformer.onnx -> TimeSformer.int8.onnx (and its .json), beside it


def int8_path(onnx_path: str | os.PathLike) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + INT8_INFIX + onnx_path.suffix)


def quantize_int8(onnx_path: str | os.PathLike) -> Path:
    """ONNX Runtime dynamic int8 quantization of the linear layers (MatMul/Gemm weights int8,
    activations quantized per batch at run time), written beside the fp32 model as
    `<name>.int8.onnx` with a copy of its `.json`, so `predict --model_file` takes it as is.
    Written into a temporary file first: a failure leaves no partial model."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path = Path(onnx_path)
    target = int8_path(onnx_path)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.stem}.", suffix=".tmp", dir=onnx_path.parent))
    try:
        produced = staging / target.name
        root = logging.getLogger()  # ORT logs advice on pre-processing here, which a user cannot act on
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(onnx_path, produced, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        spec_file = onnx_path.with_suffix(SPEC_SUFFIX)
        if spec_file.is_file():
            atomic_write_text(target.with_suffix(SPEC_SUFFIX), spec_file.read_text())
        os.replace(produced, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target

