"""The engines a `Predictor` runs: PyTorch (any checkpoint) or ONNX Runtime (an exported file).

Both take PaddleVideo's input layout `[N, 3, V*T, H, W]` and return the view-averaged output
`[N, classes]` as float32 numpy (logits, or probabilities for `avg_type="prob"`).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ..devices import resolve_amp_dtype, resolve_device
from ..errors import CheckpointError, UserError
from ..utils import first_line
from .spec import InferenceSpec
from .views import MultiViewModel

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> the precision `timesformer.cpu.auto_precision` picks for `device`; others as given."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: use {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    from ..cpu import auto_precision

    return auto_precision(device)


class TorchEngine:
    """PyTorch, on CPU or CUDA, fp32 or under bf16/fp16 autocast ("auto": bf16 where native)."""

    def __init__(self, model: nn.Module, spec: InferenceSpec, device: str | torch.device = "cpu", precision: str = "fp32"):
        self.device = resolve_device(device)
        self.chosen = precision == "auto"  # say so: the user did not pick it
        self.precision = resolve_precision(precision, self.device)
        self.dtype = resolve_amp_dtype(self.device, self.precision)
        self.net = MultiViewModel(model, spec.num_seg, spec.avg_type).to(self.device).eval()

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def description(self) -> str:
        how = ", chosen by --precision auto" if self.chosen else ""
        return f"PyTorch on {self.device.type} ({self.precision}{how})"

    def _run(self, fn, batch: torch.Tensor) -> np.ndarray:
        enabled = self.dtype is not None
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled):
            out = fn(batch.to(self.device, non_blocking=True))
        return out.float().cpu().numpy()

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """View-averaged logits (or probabilities), `[N, classes]`."""
        return self._run(self.net, batch)

    def features(self, batch: torch.Tensor) -> np.ndarray:
        """View-averaged final-norm cls tokens, `[N, D]`."""
        return self._run(self.net.features, batch)


class OnnxEngine:
    """ONNX Runtime: CUDAExecutionProvider when asked for and available, else CPU."""

    def __init__(self, model_file: str | os.PathLike, use_gpu: bool = False):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        self.cuda_missing = use_gpu and "CUDAExecutionProvider" not in ort.get_available_providers()
        if use_gpu and not self.cuda_missing:
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: keep ORT's warnings off the user's console
        try:
            self.session = ort.InferenceSession(str(model_file), options, providers=providers)
        except Exception as err:  # ORT raises its own, unexported exception types for any unreadable model
            raise CheckpointError(f"{model_file}: not a readable ONNX model ({first_line(err)})") from None
        self.provider = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name

    @property
    def on_gpu(self) -> bool:
        return self.provider == "CUDAExecutionProvider"

    @property
    def description(self) -> str:
        if self.cuda_missing:  # the `export` extra installs the CPU build of onnxruntime
            return (f"ONNX Runtime ({self.provider}): --use_gpu=True asked for CUDA, but this onnxruntime has no "
                    "CUDA provider; install it with pip install 'timesformer[export-gpu]'")
        return f"ONNX Runtime ({self.provider})"

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.numpy()})[0]

    def features(self, batch: torch.Tensor) -> np.ndarray:
        raise UserError("features need the PyTorch model: give the checkpoint with -w (an ONNX file holds only the scores)")
