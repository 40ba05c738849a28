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

This file is the maths, written the plain way. Inference (eval mode, no gradients) runs the
same maths through fused kernels (`fast_inference.py`, switched by
`TimeSformer.fast_inference`); a test keeps the two paths equal.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from . import fast_inference
from .linear import Linear, linear

ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")

# bf16 attention on CPU over at most this many tokens per sequence is an explicit
# softmax(q k^T) v: measured on AMD Zen (AVX512-BF16, 1 thread, ViT-B's 12 heads of 64), it
# beats SDPA's flash kernel by 1.07x at 8 tokens (temporal, T = 8), 1.2-1.5x at 16-197
# (spatial) and ties at 1569 (joint), where SDPA's bounded memory wins. In fp32 SDPA is
# 1.5-3x faster at every length, and on CUDA flash attention always wins.
EXPLICIT_MAX_TOKENS = 256

# Sanity bounds for sizes a file or flag may ask for (ViT-G, the largest ViT trained, has
# depth 48 and width 1664): far above any real model, far below what would exhaust memory
# before an error.
_INT_BOUNDS = {
    "img_size": (1, 4096),
    "patch_size": (1, 4096),
    "in_chans": (1, 64),
    "num_classes": (1, 1_000_000),
    "embed_dim": (1, 8192),
    "depth": (1, 64),
    "num_heads": (1, 8192),
    "num_frames": (1, 1024),
}
_MAX_MLP_RATIO = 64.0
_MAX_PARAMETERS = 20_000_000_000  # 80 GB of fp32 weights


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
        """Type and range of every field, before a single weight is allocated."""
        for name, (low, high) in _INT_BOUNDS.items():
            _check_int(name, getattr(self, name), low, high)
        for name in ("qkv_bias", "grad_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: {_show(getattr(self, name))} is not true or false")
        if not isinstance(self.attention_type, str) or self.attention_type not in ATTENTION_TYPES:
            raise ConfigError(f"attention_type: {_show(self.attention_type)} is not one of {', '.join(ATTENTION_TYPES)}")
        _check_float("mlp_ratio", self.mlp_ratio, 0.0, _MAX_MLP_RATIO, low_open=True)
        _check_float("norm_eps", self.norm_eps, 0.0, 1.0, low_open=True)
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            _check_float(name, getattr(self, name), 0.0, 1.0, high_open=True)
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"num_heads: {self.num_heads} does not divide embed_dim {self.embed_dim}")
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size: {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.mlp_hidden_dim < 1:
            raise ConfigError(f"mlp_ratio: {self.mlp_ratio} leaves no MLP hidden units for embed_dim {self.embed_dim}")
        if self.parameter_count() > _MAX_PARAMETERS:
            raise ConfigError(
                f"depth/embed_dim/img_size: {self.parameter_count():,} parameters (depth {self.depth}, embed_dim "
                f"{self.embed_dim}, mlp_ratio {self.mlp_ratio}) is beyond {_MAX_PARAMETERS:,}: not a real model"
            )

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def parameter_count(self) -> int:
        """Number of weights the model will have (closed form, nothing allocated)."""
        dim, hidden, tokens = self.embed_dim, self.mlp_hidden_dim, (self.img_size // self.patch_size) ** 2
        linear = lambda fan_in, fan_out: fan_in * fan_out + fan_out  # noqa: E731
        attention = 3 * dim * dim + (3 * dim if self.qkv_bias else 0) + linear(dim, dim)
        block = attention + linear(dim, hidden) + linear(hidden, dim) + 4 * dim
        if self.attention_type == "divided_space_time":
            block += attention + linear(dim, dim) + 2 * dim
        embed = self.in_chans * self.patch_size**2 * dim + dim + (tokens + 2) * dim
        if self.attention_type != "space_only":
            embed += self.num_frames * dim
        return embed + self.depth * block + 2 * dim + linear(dim, self.num_classes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "TimeSformerConfig":
        if not isinstance(fields, dict):
            raise ConfigError(f"model config: expected an object of TimeSformerConfig fields, found {type(fields).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(name) for name in set(fields) - known)
        if unknown:
            raise ConfigError(f"{_show(unknown[0])}: not a TimeSformerConfig field (fields: {', '.join(sorted(known))})")
        return cls(**fields)


def _show(value: object) -> str:
    """A value for a one-line message: repr, cut when long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: {_show(value)} is not an integer")
    if not low <= value <= high:
        raise ConfigError(f"{name}: {value} is outside [{low}, {high}]")


def _check_float(name: str, value: object, low: float, high: float, low_open=False, high_open=False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: {_show(value)} is not a number")
    if not math.isfinite(value):
        raise ConfigError(f"{name}: {value} is not finite")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{name}: {value} is outside {interval}")


def attention(
    q, k, v, dropout: float = 0.0, record: Callable[[torch.Tensor], None] | None = None, scale: float | None = None
) -> torch.Tensor:
    """softmax(scale q k^T) v over ``[..., tokens, head_dim]``, scale ``1/sqrt(head_dim)``
    unless given (1.0 where q comes pre-scaled); `record` receives the softmax probabilities
    (pre-dropout) and forces the explicit computation."""
    explicit = q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.shape[-2] <= EXPLICIT_MAX_TOKENS
    if record is None and not explicit:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scale)  # None: the reference's
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q @ (k.transpose(-2, -1) if scale == 1.0 else k.transpose(-2, -1) * scale)
    # In place when autograd does not keep the scores: one 7 MB buffer less per ViT-B block.
    probs = scores.softmax(dim=-1) if scores.requires_grad else torch.softmax(scores, dim=-1, out=scores)
    if record is not None:
        if torch.is_grad_enabled() and not probs.requires_grad:
            probs.requires_grad_()  # a frozen model's maps: the graph starts here
        record(probs)
    return F.dropout(probs, dropout, training=dropout > 0) @ v


class Attention(nn.Module):
    """Multi-head self-attention over dim 1 of ``[batch, tokens, dim]``, fused qkv."""

    # Set by `record_attention`: receives each call's softmax probabilities.
    record: Callable[[torch.Tensor], None] | None = None

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
        return self.proj_drop(self.proj(self.attend(self.qkv(x), cls_only)))

    def attend(self, qkv: torch.Tensor, cls_only: bool = False, scale: float | None = None) -> torch.Tensor:
        """``[batch, tokens, 3 * dim]`` projections -> the heads' outputs ``[batch, tokens, dim]``
        (``[batch, 1, dim]`` with `cls_only`: the first token's output alone); `scale` as in
        `attention`."""
        batch, tokens, dim = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        # One permute of a view: q, k, v come out as strided [batch, heads, tokens, head_dim].
        q, k, v = qkv.view(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        if cls_only:
            q = q[:, :, :1]
        out = attention(q, k, v, self.attn_drop if self.training else 0.0, self.record, scale)
        return out.transpose(1, 2).reshape(batch, q.shape[2], dim)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU, as the reference
        self.fc2 = Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: zero the whole branch for some rows of dim 0, rescale the rest."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class Block(nn.Module):
    def __init__(self, config: TimeSformerConfig, drop_path_rate: float):
        super().__init__()
        dim, eps = config.embed_dim, config.norm_eps
        self.attention_type = config.attention_type

        def attention() -> Attention:
            return Attention(dim, config.num_heads, config.qkv_bias, config.attn_drop_rate, config.drop_rate)

        if self.attention_type == "divided_space_time":
            self.temporal_norm1 = nn.LayerNorm(dim, eps=eps)
            self.temporal_attn = attention()
            self.temporal_fc = Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = attention()
        self.drop_path = DropPath(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, config.mlp_hidden_dim, config.drop_rate)

    def forward(self, x: torch.Tensor, num_frames: int, cls_only: bool = False) -> torch.Tensor:
        """With `cls_only`, only the cls token's output (``[B, 1, D]``; ``[B*T, 1, D]`` for
        space_only) is computed: after the last block nothing else is read, so its patch
        tokens' queries, projections and MLP (9/16 of a block's GEMMs) are skipped."""
        if self.attention_type == "divided_space_time":
            x = self.divided_attention(x, num_frames, cls_only)
        else:
            x = (x[:, :1] if cls_only else x) + self.drop_path(self.attn(self.norm1(x), cls_only))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def divided_attention(self, x: torch.Tensor, T: int, cls_only: bool = False) -> torch.Tensor:
        """Temporal then spatial attention; x: ``[B, 1 + N*T, D]``, patch tokens at ``1 + n*T + t``."""
        batch, _, dim = x.shape
        cls, patches = x[:, :1], x[:, 1:]
        N = patches.shape[1] // T

        # Temporal: each patch's T tokens are consecutive, so grouping them is a view.
        xt = self.temporal_norm1(patches).view(batch * N, T, dim)
        patches = patches + self.temporal_branch(xt).view(batch, N * T, dim)

        # Spatial: group by frame, the (shared) cls token first in every frame; drop path
        # per (clip, frame) row, as the reference.
        xs = self.spatial_groups(cls, patches, T)
        res = self.drop_path(self.attn(self.norm1(xs), cls_only)).view(batch, T, -1, dim)
        res_cls = res[:, :, 0].mean(dim=1, keepdim=True)  # the T cls outputs become one
        if cls_only:
            return cls + res_cls
        res_patches = res[:, :, 1:].transpose(1, 2).reshape(batch, N * T, dim)
        return torch.cat((cls + res_cls, patches + res_patches), dim=1)

    def temporal_branch(self, xt: torch.Tensor) -> torch.Tensor:
        """``temporal_fc(drop_path(temporal_attn(xt)))`` for ``[B*N, T, D]`` tokens.

        Without dropout after it, the attention's output projection and `temporal_fc` are one
        linear map: one GEMM with their product's weight (drop path, a factor per row, commutes
        with it; `temporal_fc`'s bias comes after). Forward and backward, that trades two of
        six ``[B*N*T, D] x [D, D]`` GEMMs for three ``[D, D] x [D, D]`` ones, a gain wherever
        there are more tokens than channels (1568 against 768 for one 8x224 clip: 2.8 GFLOP
        less per block and step).
        """
        attn, fc = self.temporal_attn, self.temporal_fc
        if attn.proj_drop.p > 0 or xt.shape[0] * xt.shape[1] <= xt.shape[2]:
            return fc(self.drop_path(attn(xt)))
        heads = attn.attend(attn.qkv(xt))
        weight = linear(fc.weight, attn.proj.weight.t())  # W_fc W_proj, as a linear map: on oneDNN in fp32
        return self.drop_path(linear(heads, weight, fc.weight @ attn.proj.bias)) + fc.bias

    @staticmethod
    def spatial_groups(cls: torch.Tensor, patches: torch.Tensor, T: int) -> torch.Tensor:
        """``[B, 1, D]`` cls and ``[B, N*T, D]`` patches -> per-frame sequences ``[B*T, 1 + N, D]``."""
        batch, _, dim = patches.shape
        xs = patches.view(batch, -1, T, dim).transpose(1, 2)
        return torch.cat((cls.unsqueeze(1).expand(batch, T, 1, dim), xs), dim=2).view(batch * T, -1, dim)


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
    # Inference (eval mode, no gradients) through the fused kernels of `fast_inference`.
    fast_inference: bool = True

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
        # Stochastic depth rising linearly from 0 to drop_path_rate.
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

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` -> the first block's input: ``[B, 1 + N*T, D]`` (``[B*T, 1 + N, D]``
        for space_only)."""
        batch, frames = x.shape[0], x.shape[2]
        tokens, grid_h, grid_w = self.patch_embed(x)
        pos = self._pos_embed(grid_h, grid_w)
        cls = self.cls_token + pos[:, :1]  # identical for every frame
        tokens = tokens + pos[:, 1:]
        dim = tokens.shape[-1]
        if self.config.attention_type == "space_only":
            return self.pos_drop(torch.cat((cls.expand(batch * frames, 1, dim), tokens), dim=1))
        # (b t) n d -> b (n t) d with the time embedding added on the way.
        tokens = self.pos_drop(tokens).view(batch, frames, -1, dim) + self._time_embed(frames).unsqueeze(2)
        tokens = self.time_drop(tokens).transpose(1, 2).flatten(1, 2)
        return torch.cat((self.pos_drop(cls.expand(batch, 1, dim)), tokens), dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` -> final-norm cls token ``[B, D]``."""
        batch, frames = x.shape[0], x.shape[2]
        tokens = self.embed(x)
        if fast_inference.applies(self, tokens):
            tokens = fast_inference.blocks(self, tokens, frames)
        else:
            # The last block computes the cls token only, except while attention maps are
            # recorded (they are the full matrices).
            last = len(self.blocks) - 1 if self.blocks[-1].attn.record is None else None
            for i, block in enumerate(self.blocks):
                if self.config.grad_checkpointing and self.training:
                    tokens = checkpoint(block, tokens, frames, i == last, use_reentrant=False)
                else:
                    tokens = block(tokens, frames, i == last)
        cls = tokens[:, 0]
        if self.config.attention_type == "space_only":
            # The reference averages every token over the frames, then takes the cls one.
            cls = cls.view(batch, frames, -1).mean(dim=1)
        # The final norm is per token: normalizing the cls token alone gives the same result.
        return self.norm(cls)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(**fields) -> TimeSformer:
    """A freshly initialized TimeSformer; `fields` are `TimeSformerConfig` fields."""
    return TimeSformer(TimeSformerConfig.from_dict(fields))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The TimeSformer inside a DistributedDataParallel and/or torch.compile wrapper."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def _store(maps: dict, key: str, probs: torch.Tensor) -> None:
    maps[key] = probs


def _store_input(maps: dict, module: nn.Module, args: tuple) -> None:
    maps["input"] = args[0]


@contextmanager
def record_attention(model: nn.Module, block_inputs: bool = False) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Record every block's attention probabilities (post-softmax, pre-dropout) while inside.

    Yields a list with one dict per block, filled by each forward pass (the last one wins):
    divided_space_time ``{"temporal": [B*N, heads, T, T] (rows b*N + n),
    "spatial": [B*T, heads, 1+N, 1+N] (rows b*T + t; token 0 is cls, 1 + n patch n)}``;
    joint_space_time ``{"joint": [B, heads, 1+N*T, 1+N*T]}`` (token 1 + n*T + t);
    space_only ``{"spatial": [B*T, heads, 1+N, 1+N]}``. While recording, attention is an
    explicit softmax on the plain path (same logits as the fast path); with grad enabled the
    maps are part of the autograd graph, even for a frozen model, so gradients with respect
    to them can be taken (`torch.autograd.grad(score, maps[i]["spatial"])`).
    `block_inputs`: each dict also holds ``"input"``, the block's input tokens (``[B, 1+N*T, D]``;
    space_only ``[B*T, 1+N, D]``), from which the block's weights give every sublayer's values.
    """
    model = unwrap_model(model)
    attention_type = model.config.attention_type
    spatial_key = "joint" if attention_type == "joint_space_time" else "spatial"
    maps: list[dict[str, torch.Tensor]] = [{} for _ in model.blocks]
    recorders = []
    for block, block_maps in zip(model.blocks, maps):
        recorders.append((block.attn, partial(_store, block_maps, spatial_key)))
        if attention_type == "divided_space_time":
            recorders.append((block.temporal_attn, partial(_store, block_maps, "temporal")))
    for module, record in recorders:
        module.record = record
    hooks = [block.register_forward_pre_hook(partial(_store_input, block_maps))
             for block, block_maps in zip(model.blocks, maps)] if block_inputs else []  # fmt: skip
    try:
        yield maps
    finally:
        for module, _ in recorders:
            del module.record  # back to the class default, None
        for hook in hooks:
            hook.remove()
