"""Inference kernels for `TimeSformer`: the maths of `timesformer.py`, fused.

Used when `TimeSformer.fast_inference` is on (the default) and `applies`: eval mode, no
gradient wanted, a real eager tensor (export and compile trace the plain path, and so does
`record_attention`). What changes, never the result beyond rounding:

- weights are prepared once and kept (keyed on the parameters' identity and version, so an
  update invalidates them): under autocast cast once, not in every call (86M values for
  ViT-B); for oneDNN in bf16, laid out in its blocked format (5-10% faster GEMMs);
- on CPU, oneDNN's linear applies bias, exact GELU and the residual add inside the GEMM
  (about 2x faster than ATen's in bf16 for ViT-B's shapes, which writes the bias first
  and makes GELU and the add passes of their own);
- under bf16 autocast the residual stream stays bf16 (LayerNorm then keeps bf16 too): an
  fp32 stream costs a cast before every GEMM and after every add;
- divided attention: the temporal output projection and `temporal_fc` are one linear map
  (their product, in fp32, then cast), and the spatial projection runs after regrouping the
  heads' outputs, so the patches' residual joins that GEMM and the T cls outputs are
  averaged before it (a mean commutes with an affine map);
- under autocast, attention's 1/sqrt(head_dim) is folded into the cached q rows of the qkv
  weights (in fp32, then cast), not applied to the keys in every call;
- the prepared weights are kept per compute dtype: a process that alternates fp32 and bf16
  (the benchmark, a server with both) does not remake them on every switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .timesformer import Attention, Block, TimeSformer


def _has_onednn_linear() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN_LINEAR = _has_onednn_linear()


def onednn_linear_available() -> bool:
    """Whether oneDNN's linear op is usable here (also used by `linear.Linear` in training)."""
    return _ONEDNN_LINEAR


def _disable_onednn_linear() -> None:
    global _ONEDNN_LINEAR
    _ONEDNN_LINEAR = False


def applies(model: "TimeSformer", x: torch.Tensor) -> bool:
    """Whether `model`'s blocks may run here on `x` through these kernels."""
    if not model.fast_inference or model.training or any(block.attn.record is not None for block in model.blocks):
        return False
    # Real eager tensors only: export and compile trace with tensor subclasses (fake tensors).
    if type(x) is not torch.Tensor or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    return not torch.is_grad_enabled() or not (x.requires_grad or any(p.requires_grad for p in model.parameters()))


def blocks(model: "TimeSformer", x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """All blocks of `model` on the first block's input `x`; returns the last block's output."""
    dtype = x.dtype
    device = x.device.type
    if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16:
        x = x.to(torch.bfloat16)
    last = len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        x = _block(block, x, num_frames, cls_only=i == last)
    return x.to(dtype)


def _block(block: "Block", x: torch.Tensor, T: int, cls_only: bool) -> torch.Tensor:
    """`Block.forward`; with `cls_only`, the cls token's output alone (see there)."""
    if block.attention_type == "divided_space_time":
        x = _divided_attention(block, x, T, cls_only)
    else:
        heads = _attend(block.attn, block.norm1(x), cls_only)
        x = linear(block.attn.proj, heads, residual=(x[:, :1] if cls_only else x).contiguous())
    hidden = linear(block.mlp.fc1, block.norm2(x), gelu=True)
    return linear(block.mlp.fc2, hidden, residual=x)


def _divided_attention(block: "Block", x: torch.Tensor, T: int, cls_only: bool) -> torch.Tensor:
    batch, _, dim = x.shape
    cls, patches = x[:, :1], x[:, 1:]
    N = patches.shape[1] // T

    xt = block.temporal_norm1(patches).view(batch * N, T, dim)
    heads = _attend(block.temporal_attn, xt).view(batch, N * T, dim)
    patches = linear(block.temporal_fc, heads, residual=patches, before=block.temporal_attn.proj)

    xs = block.spatial_groups(cls, patches, T)
    heads = _attend(block.attn, block.norm1(xs), cls_only).view(batch, T, -1, dim)
    cls = linear(block.attn.proj, heads[:, :, 0].mean(dim=1, keepdim=True), residual=cls.contiguous())
    if cls_only:
        return cls
    heads = heads[:, :, 1:].transpose(1, 2).reshape(batch, N * T, dim)
    return torch.cat((cls, linear(block.attn.proj, heads, residual=patches)), dim=1)


def _attend(attn: "Attention", x: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
    """``attn.attend(attn.qkv(x), cls_only)``. Where the qkv weights are cast copies anyway
    (autocast), the queries' 1/sqrt(head_dim) is folded into them; fp32 computes with the
    parameters themselves (no second copy of 3 D^2 values per block) and `attention` scales."""
    fold = _compute_dtype(attn.qkv) != attn.qkv.weight.dtype
    q_scale = (attn.qkv.out_features // 3 // attn.num_heads) ** -0.5 if fold else 1.0
    return attn.attend(linear(attn.qkv, x, q_scale=q_scale), cls_only, scale=1.0 if fold else None)


def linear(
    module: nn.Linear,
    x: torch.Tensor,
    residual: torch.Tensor | None = None,
    gelu: bool = False,
    before: nn.Linear | None = None,
    q_scale: float = 1.0,
) -> torch.Tensor:
    """``gelu(module(x))`` or ``residual + module(x)``; with `before`, ``module(before(x))``
    as one GEMM; `q_scale` multiplies the first third of the outputs (a qkv projection's q)."""
    weights = _weights(module, before, rows=x.numel() // x.shape[-1], q_scale=q_scale)
    x = x.to(weights.dtype)
    if weights.onednn:
        try:
            return _onednn_linear(x, weights.weight, weights.bias, residual, gelu)
        except RuntimeError:  # a oneDNN build without this dtype on this CPU: ATen from now on
            _disable_onednn_linear()
            return linear(module, x, residual, gelu, before, q_scale)
    with torch.autocast(x.device.type, enabled=False):
        out = F.linear(x, weights.weight, weights.bias)
    if gelu:
        out = F.gelu(out)
    return out if residual is None else residual + out


def _onednn_linear(x, weight, bias, residual, gelu) -> torch.Tensor:
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")  # erf GELU
    if residual is not None and residual.dtype == x.dtype and residual.is_contiguous():
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    out = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return out if residual is None else residual + out


@dataclass
class _Weights:
    key: tuple  # oneDNN or not, identities and versions of the parameters used
    weight: torch.Tensor
    bias: torch.Tensor | None
    dtype: torch.dtype
    onednn: bool
    parameters: list  # kept alive, so that no other tensor takes their ids


def _compute_dtype(module: nn.Linear) -> torch.dtype:
    device = module.weight.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else module.weight.dtype


def _weights(module: nn.Linear, before: nn.Linear | None, rows: int, q_scale: float = 1.0) -> _Weights:
    """The weight and bias `linear` computes with: cast to the autocast dtype, the product with
    `before` taken, q's rows scaled, laid out for oneDNN. Kept per (dtype, q_scale); made again
    only when a parameter is replaced or updated in place (its identity or version changes)."""
    device, dtype = module.weight.device.type, _compute_dtype(module)
    params = [p for m in (module, before) if m is not None for p in (m.weight, m.bias) if p is not None]
    key = (_ONEDNN_LINEAR, tuple(id(p) for p in params), tuple(p._version for p in params))
    kept = module.__dict__.setdefault("_fast_inference_weights", {})
    cached = kept.get((dtype, q_scale))
    if cached is not None and cached.key == key:
        return cached
    weight, bias = module.weight.detach(), None if module.bias is None else module.bias.detach()
    if before is not None:  # module(before(h)) = h (W Wb)^T + (W bb + b), in fp32
        weight, bias = weight.float() @ before.weight.detach().float(), bias.float() + weight.float() @ before.bias.detach().float()
    if q_scale != 1.0:
        rows_q = weight.shape[0] // 3
        weight = torch.cat((weight[:rows_q].float() * q_scale, weight[rows_q:].float()))
        if bias is not None:
            bias = torch.cat((bias[:rows_q].float() * q_scale, bias[rows_q:].float()))
    weight, bias = weight.to(dtype), None if bias is None else bias.to(dtype)
    onednn = device == "cpu" and _ONEDNN_LINEAR and dtype in (torch.float32, torch.bfloat16)
    if onednn and dtype == torch.bfloat16:
        # oneDNN's blocked layout, made once: 5-10% faster bf16 GEMMs than reordering in every
        # call (fp32 gains a few % only, not worth a second copy of the weights).
        try:
            weight = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
        except RuntimeError:  # a oneDNN build without bf16 on this CPU
            _disable_onednn_linear()
            return _weights(module, before, rows, q_scale)
    cached = kept[(dtype, q_scale)] = _Weights(key, weight, bias, dtype, onednn, params)
    return cached
