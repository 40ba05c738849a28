"""`Linear`: `nn.Linear` whose fp32 GEMMs on CPU run on oneDNN, forward and backward.

PyTorch's CPU wheel sends fp32 `F.linear` and its backward matmuls to MKL, whose SGEMM runs
a slow code path on AMD CPUs; oneDNN (already inside PyTorch, and what bf16 matmuls use)
does not. Measured on AMD EPYC (Zen 4, 1 thread), TimeSformer-B's shapes: oneDNN 1.1-2x
MKL for the forward, the input gradient and the weight gradient; on Intel the two are
close. So in training (and any other call that needs gradients) a CPU fp32 linear goes
through `_OneDNNLinear`: the same maths, fp32 accumulation, other rounding order.

Everything else takes `F.linear`: bf16/fp16 autocast (ATen already calls oneDNN there),
CUDA, export and compile tracing (they must see the plain op), and inference without
gradients (`fast_inference` has its own fused kernels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fast_inference import onednn_linear_available


class Linear(nn.Linear):
    """Drop-in `nn.Linear` (same parameters, same state dict keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, on oneDNN where `Linear` would use it."""
    if _uses_onednn(x, weight):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def _uses_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and type(x) in (torch.Tensor, nn.Parameter)  # real eager tensors: export and compile trace F.linear
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and onednn_linear_available()
    )


def _gemm(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b_t.T + bias`` on oneDNN (`a` ``[..., K]``, `b_t` ``[N, K]``, either may be strided)."""
    return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _gemm(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_2d = grad.reshape(-1, grad.shape[-1])
        x_2d = x.reshape(-1, x.shape[-1])
        # With create_graph (a gradient penalty) the backward itself is differentiated: ATen's
        # ops have derivatives, oneDNN's op has none.
        gemm = (lambda a, b_t: a @ b_t.t()) if torch.is_grad_enabled() else _gemm
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = gemm(grad_2d, weight.t()).view(x.shape)  # grad @ W
        if ctx.needs_input_grad[1]:
            grad_weight = gemm(grad_2d.t(), x_2d.t())  # grad^T @ x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_2d.sum(0)
        return grad_x, grad_weight, grad_bias
