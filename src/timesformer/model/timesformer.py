"""TimeSformer (Bertasius et al., 2021): a ViT over the patches of every frame of a clip.

The maths is PaddleVideo's `VisionTransformer` + `TimeSformerHead`, itself a port of the
official facebookresearch code, so the three agree on every checkpoint:

- patch tokens are ordered (patch n, frame t) -> index ``n * T + t`` behind one cls token;
- `divided_space_time`: temporal attention within each patch's T tokens, then spatial
  attention within each frame (the cls token joins every frame, its T outputs averaged);
- `joint_space_time`: one attention over all ``1 + N*T`` tokens;
- `space_only`: every frame is an image for the ViT (no time embedding); the frames are
  averaged after the last block.

Parameter names are the canonical ones (timm ViT style, PaddleVideo's backbone without
`backbone.` and with `head` for `head.fc`); every checkpoint format maps into them.

Speed: attention is SDPA on strided views of one fused qkv GEMM; in eval mode the
residual adds, biases and GELU run inside oneDNN GEMMs on CPU and autocast weights are
cast once (see `Linear`). Training mode computes the same maths the plain way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError

ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")


@dataclass
class TimeSformerConfig:
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 400
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    num_frames: int = 8
    attention_type: str = "divided_space_time"
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    grad_checkpointing: bool = False

    def __post_init__(self):
        if self.attention_type not in ATTENTION_TYPES:
            raise ConfigError(f"attention_type: {self.attention_type!r} is not one of {', '.join(ATTENTION_TYPES)}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"num_heads: {self.num_heads} does not divide embed_dim {self.embed_dim}")
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size: {self.img_size} is not a multiple of patch_size {self.patch_size}")

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "TimeSformerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a TimeSformerConfig field (fields: {', '.join(sorted(known))})")
        return cls(**fields)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the whole branch for some rows of dim 0, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


def _has_mkldnn_linear() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_MKLDNN_LINEAR = _has_mkldnn_linear()


def _disable_mkldnn_linear() -> None:
    global _MKLDNN_LINEAR
    _MKLDNN_LINEAR = False


class Linear(nn.Linear):
    """`nn.Linear` (optionally followed by exact GELU, or added to a residual) with a fast
    path for inference.

    Without gradients, three costs of eager inference go away:
    - under autocast, every call casts every weight (86M values for ViT-B) to bf16 again:
      the cast is kept, keyed on the weights' identity and version (an update invalidates it);
    - on CPU, `F.linear` writes the broadcast bias into the output before the GEMM and GELU
      is one more pass: oneDNN's linear applies bias and GELU inside the GEMM (about 2x
      faster in bf16 for ViT-B's shapes, 5-20% in fp32);
    - a residual of the output's dtype is added inside the GEMM too, not in a pass of its own.
    Training, tracing and export take the plain `F.linear` path.
    """

    _cast: tuple | None = None  # (dtype, weight, bias, their versions, cast weight, cast bias)

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gelu: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        self.gelu = gelu

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``gelu(x W^T + b)`` or ``residual + x W^T + b``."""
        weight, bias = self.weight, self.bias
        inference = not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
        # Real eager tensors only: export and compile trace with tensor subclasses (fake tensors).
        if inference and type(x) is torch.Tensor and not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            device = x.device.type
            if torch.is_autocast_enabled(device):
                weight, bias = self._autocast_weights(torch.get_autocast_dtype(device))
            if device == "cpu" and _MKLDNN_LINEAR and weight.dtype in (torch.float32, torch.bfloat16):
                try:
                    return self._onednn_linear(x.to(weight.dtype), weight, bias, residual)
                except RuntimeError:  # a oneDNN build without this dtype on this CPU: use ATen
                    _disable_mkldnn_linear()
        x = F.linear(x, weight, bias)
        if self.gelu:
            x = F.gelu(x)
        return x if residual is None else residual + x

    def _onednn_linear(self, x, weight, bias, residual) -> torch.Tensor:
        if self.gelu:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")  # erf GELU
        if residual is not None and residual.dtype == weight.dtype and residual.is_contiguous():
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
        x = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return x if residual is None else residual + x

    def _autocast_weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        versions = (self.weight._version, None if self.bias is None else self.bias._version)
        cast = self._cast
        if cast is None or cast[0] != dtype or cast[1] is not self.weight or cast[2] is not self.bias or cast[3] != versions:
            bias = None if self.bias is None else self.bias.detach().to(dtype)
            cast = self._cast = (dtype, self.weight, self.bias, versions, self.weight.detach().to(dtype), bias)
        return cast[4], cast[5]


class Attention(nn.Module):
    """Multi-head self-attention over dim 1 of ``[batch, tokens, dim]``, fused qkv, SDPA."""

    # Set by `record_attention`: receives each call's softmax probabilities.
    record: Callable[[torch.Tensor], None] | None = None

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_drop(self.proj(self.attend(x)))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The heads' outputs, concatenated: everything but the output projection."""
        batch, tokens, dim = x.shape
        # One permute of a view: q, k, v come out as strided [batch, heads, tokens, head_dim].
        qkv = self.qkv(x).view(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.attn_drop if self.training else 0.0
        if self.record is None:
            # SDPA's default scale is head_dim ** -0.5, the reference's.
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            probs = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
            self.record(probs)
            out = F.dropout(probs, dropout, self.training) @ v
        return out.transpose(1, 2).reshape(batch, tokens, dim)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = Linear(dim, hidden, gelu=True)  # exact (erf) GELU, as the reference
        self.fc2 = Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``fc2(gelu(fc1(x)))``; in eval mode (no dropout) optionally plus `residual`, fused."""
        return self.drop(self.fc2(self.drop(self.fc1(x)), residual))


class Block(nn.Module):
    def __init__(self, config: TimeSformerConfig, drop_path_rate: float):
        super().__init__()
        dim, eps = config.embed_dim, config.norm_eps
        self.attention_type = config.attention_type
        self.drop_path_rate = drop_path_rate

        def attention() -> Attention:
            return Attention(dim, config.num_heads, config.qkv_bias, config.attn_drop_rate, config.drop_rate)

        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = attention()
        if self.attention_type == "divided_space_time":
            self.temporal_norm1 = nn.LayerNorm(dim, eps=eps)
            self.temporal_attn = attention()
            self.temporal_fc = Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, config.mlp_hidden_dim, config.drop_rate)

    def _drop_path(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_path_rate, self.training)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.attention_type == "divided_space_time":
            x = self._divided_attention(x, num_frames)
        elif self.training:
            x = x + self._drop_path(self.attn(self.norm1(x)))
        else:
            x = self.attn.proj(self.attn.attend(self.norm1(x)), residual=x)
        if self.training:
            return x + self._drop_path(self.mlp(self.norm2(x)))
        # Eval: no dropout, no drop path, so the residual add can join the last GEMM.
        return self.mlp(self.norm2(x), residual=x)

    def _divided_attention(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: ``[B, 1 + N*T, D]``, patch tokens at ``1 + n*T + t``."""
        batch, _, dim = x.shape
        T = num_frames
        cls, patches = x[:, :1], x[:, 1:]
        N = patches.shape[1] // T

        # Temporal: each patch's T tokens are consecutive, so grouping them is a view.
        xt = self.temporal_norm1(patches).view(batch * N, T, dim)
        res = self._drop_path(self.temporal_attn(xt)).view(batch, N * T, dim)
        patches = self.temporal_fc(res, residual=patches)

        # Spatial: group by frame, the (shared) cls token first in every frame.
        xs = patches.view(batch, N, T, dim).transpose(1, 2)
        xs = torch.cat((cls.unsqueeze(1).expand(batch, T, 1, dim), xs), dim=2)
        xs = self.norm1(xs.view(batch * T, 1 + N, dim))
        if self.training:
            # Drop path per (clip, frame) row of the spatial attention, as the reference.
            res = self._drop_path(self.attn(xs)).view(batch, T, 1 + N, dim)
            res_cls = res[:, :, 0].mean(dim=1, keepdim=True)  # the T cls outputs become one
            res_patches = res[:, :, 1:].transpose(1, 2).reshape(batch, N * T, dim)
            return torch.cat((cls + res_cls, patches + res_patches), dim=1)
        # Eval: regroup the heads' outputs before the (linear) projection, so that the
        # projection of the patches adds their residual inside the GEMM; the cls outputs
        # are averaged first (the mean commutes with an affine map).
        heads = self.attn.attend(xs).view(batch, T, 1 + N, dim)
        cls = self.attn.proj(heads[:, :, 0].mean(dim=1, keepdim=True), residual=cls.contiguous())
        heads = heads[:, :, 1:].transpose(1, 2).reshape(batch, N * T, dim)
        return torch.cat((cls, self.attn.proj(heads, residual=patches)), dim=1)


class PatchEmbed(nn.Module):
    def __init__(self, config: TimeSformerConfig):
        super().__init__()
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, config.patch_size, stride=config.patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """``[B, C, T, H, W]`` -> tokens ``[B*T, h*w, D]`` (frame-major), grid height h, width w."""
        batch, chans, frames, height, width = x.shape
        x = self.proj(x.transpose(1, 2).reshape(batch * frames, chans, height, width))
        grid_h, grid_w = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), grid_h, grid_w


class TimeSformer(nn.Module):
    def __init__(self, config: TimeSformerConfig):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        grid = config.img_size // config.patch_size

        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        if config.attention_type != "space_only":
            self.time_embed = nn.Parameter(torch.zeros(1, config.num_frames, dim))
        self.pos_drop = nn.Dropout(config.drop_rate)
        self.time_drop = nn.Dropout(config.drop_rate)
        # Stochastic depth rising linearly from 0 to drop_path_rate (plain floats, so that the
        # model can be built on the meta device).
        rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(Block(config, rate) for rate in rates)
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.head = Linear(dim, config.num_classes)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The reference init, with std 0.02 for every Linear (see PADDLEVIDEO_BEHAVIOR.md)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if hasattr(self, "time_embed"):
            nn.init.zeros_(self.time_embed)
        # Every block but the first starts as a pure spatial ViT block.
        for block in self.blocks[1:]:
            if hasattr(block, "temporal_fc"):
                nn.init.zeros_(block.temporal_fc.weight)
                nn.init.zeros_(block.temporal_fc.bias)

    def _pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Stored pos_embed, its patch grid nearest-resized when the token count differs."""
        pos = self.pos_embed
        if pos.shape[1] == grid_h * grid_w + 1:
            return pos
        side = int((pos.shape[1] - 1) ** 0.5)
        grid = pos[:, 1:].transpose(1, 2).reshape(1, -1, side, side)
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="nearest").flatten(2).transpose(1, 2)
        return torch.cat((pos[:, :1], grid), dim=1)

    def _time_embed(self, frames: int) -> torch.Tensor:
        time = self.time_embed
        if time.shape[1] == frames:
            return time
        return F.interpolate(time.transpose(1, 2), size=frames, mode="nearest").transpose(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` -> final-norm cls token ``[B, D]``."""
        batch, frames = x.shape[0], x.shape[2]
        tokens, grid_h, grid_w = self.patch_embed(x)
        pos = self._pos_embed(grid_h, grid_w)
        cls = self.cls_token + pos[:, :1]  # identical for every frame
        tokens = tokens + pos[:, 1:]
        dim = tokens.shape[-1]

        if self.config.attention_type == "space_only":
            x = torch.cat((cls.expand(batch * frames, 1, dim), tokens), dim=1)
            x = self.pos_drop(x)
        else:
            # (b t) n d -> b (n t) d with the time embedding added on the way.
            tokens = self.pos_drop(tokens).view(batch, frames, -1, dim) + self._time_embed(frames).unsqueeze(2)
            tokens = self.time_drop(tokens).transpose(1, 2).flatten(1, 2)
            x = torch.cat((self.pos_drop(cls.expand(batch, 1, dim)), tokens), dim=1)

        for block in self.blocks:
            if self.config.grad_checkpointing and self.training:
                x = checkpoint(block, x, frames, use_reentrant=False)
            else:
                x = block(x, frames)

        cls_out = x[:, 0]
        if self.config.attention_type == "space_only":
            # The reference averages every token over the frames, then takes the cls one.
            cls_out = cls_out.view(batch, frames, dim).mean(dim=1)
        # The final norm is per token: normalizing the cls token alone gives the same result.
        return self.norm(cls_out)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(**fields) -> TimeSformer:
    """A freshly initialized TimeSformer; `fields` are `TimeSformerConfig` fields."""
    return TimeSformer(TimeSformerConfig.from_dict(fields))


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def _store(maps: dict, key: str, probs: torch.Tensor) -> None:
    maps[key] = probs


@contextmanager
def record_attention(model: nn.Module) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Record every block's attention probabilities (post-softmax, pre-dropout) while inside.

    Yields a list with one dict per block, filled by each forward pass (the last one wins):
    divided_space_time ``{"temporal": [B*N, heads, T, T] (rows b*N + n),
    "spatial": [B*T, heads, 1+N, 1+N] (rows b*T + t; token 0 is cls, 1 + n patch n)}``;
    joint_space_time ``{"joint": [B, heads, 1+N*T, 1+N*T]}`` (token 1 + n*T + t);
    space_only ``{"spatial": [B*T, heads, 1+N, 1+N]}``. While recording, attention is an
    explicit softmax (same logits as SDPA); with grad enabled the maps are part of the
    autograd graph, so gradients with respect to them can be taken (`Tensor.retain_grad`).
    """
    model = _unwrap(model)
    attention_type = model.config.attention_type
    spatial_key = "joint" if attention_type == "joint_space_time" else "spatial"
    maps: list[dict[str, torch.Tensor]] = [{} for _ in model.blocks]
    recorders = []
    for block, block_maps in zip(model.blocks, maps):
        recorders.append((block.attn, partial(_store, block_maps, spatial_key)))
        if attention_type == "divided_space_time":
            recorders.append((block.temporal_attn, partial(_store, block_maps, "temporal")))
    for attention, record in recorders:
        attention.record = record
    try:
        yield maps
    finally:
        for attention, _ in recorders:
            del attention.record  # back to the class default, None
