"""FLOPs of a TimeSformer forward pass, counted analytically (2 per multiply-add)."""

from __future__ import annotations

from ..model.timesformer import TimeSformerConfig


def timesformer_flops(config: TimeSformerConfig, batch: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one forward pass of `batch` clips.

    Counts every matrix product: patch embedding, qkv/proj/temporal_fc/mlp Linears, the two
    attention products (q·kᵀ and attn·v) and the head. The last block's work is what its cls
    token needs (all keys and values, the cls queries, projections and MLP: nothing else is
    read after it; `Block.forward`'s `cls_only`), so that every implementation is credited
    the same, necessary work. Norms, softmax, GELU and additions (well under 1%) are not
    counted. TimeSformer-B 8x224 divided: 374.1 GFLOP per clip (the full last block would
    add 17.6).
    """
    dim, frames, mlp = config.embed_dim, config.num_frames, config.mlp_hidden_dim
    patches = (config.img_size // config.patch_size) ** 2
    patch_inputs = config.in_chans * config.patch_size**2

    def linear(tokens: int, fan_in: int, fan_out: int) -> int:
        return tokens * fan_in * fan_out

    def attention(groups: int, queries: int, keys: int) -> int:
        return 2 * groups * queries * keys * dim  # q·kᵀ and attn·v over all heads

    def block(queries: int) -> int:
        """One block computing the outputs of `queries` tokens per attention sequence (the
        cls token alone: 1)."""
        if config.attention_type == "divided_space_time":
            per_frame = patches + 1  # the cls token joins every frame's spatial attention
            rows = 1 if queries == 1 else 1 + patches * frames  # tokens leaving the block
            return (
                linear(patches * frames, dim, 3 * dim) + attention(patches, frames, frames)  # temporal
                + 2 * linear(patches * frames, dim, dim)  # temporal proj + temporal_fc
                + linear(frames * per_frame, dim, 3 * dim) + attention(frames, queries, per_frame)  # spatial
                + linear(frames * queries, dim, dim)  # spatial proj
                + linear(rows, dim, 2 * mlp)  # mlp fc1 + fc2
            )  # fmt: skip
        tokens = 1 + patches * frames if config.attention_type == "joint_space_time" else patches + 1
        sequences = 1 if config.attention_type == "joint_space_time" else frames  # space_only: a frame is an image
        return sequences * (
            linear(tokens, dim, 3 * dim) + attention(1, queries, tokens) + linear(queries, dim, dim + 2 * mlp)
        )

    full = 1 + patches * frames if config.attention_type == "joint_space_time" else patches + 1
    macs = linear(patches * frames, patch_inputs, dim)
    macs += (config.depth - 1) * block(full) + block(1) + linear(1, dim, config.num_classes)
    return 2 * batch * macs
