"""FLOPs of a TimeSformer forward pass, counted analytically (2 per multiply-add)."""

from __future__ import annotations

from ..model.timesformer import TimeSformerConfig


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
