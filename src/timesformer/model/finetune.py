"""Fine-tuning surgery: a checkpoint's state dict adapted to the model it initializes.

- TimeSformer weights fit exactly; with `new_head`, a classifier for another class count
  (K400 weights fine-tuned on UCF101) is dropped and the model's head stays at its init.
- Image ViT weights (no `time_embed`, no temporal blocks) follow PaddleVideo's
  pretrained-ViT rules: head dropped, pos grid resized (corner-aligned bilinear, as
  `scipy.ndimage.zoom(order=1)`), each block's `attn` / `norm1` copied to `temporal_attn` /
  `temporal_norm1`, `time_embed` and `temporal_fc` left at their init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .timesformer import TimeSformer


def adapt_for_finetuning(state: dict[str, torch.Tensor], model: TimeSformer, new_head: bool) -> tuple[dict, tuple[str, ...]]:
    """`state` made to fit `model`, and the model keys it may leave at their init."""
    image_vit = "time_embed" not in state and not any(".temporal_" in name for name in state)
    if image_vit and "pos_embed" in state:
        return _vit_to_timesformer(state, model)
    head = model.state_dict()["head.weight"]
    if new_head and "head.weight" in state and state["head.weight"].shape[0] != head.shape[0]:
        return {name: value for name, value in state.items() if not name.startswith("head.")}, ("head.weight", "head.bias")
    return state, ()


def resize_pos_grid(pos: torch.Tensor, tokens: int) -> torch.Tensor:
    """ViT pos_embed -> `tokens` (1 + grid²) by linear interpolation of the grid, as
    PaddleVideo's `scipy.ndimage.zoom(order=1)` does (corner-aligned)."""
    old, new = round((pos.shape[1] - 1) ** 0.5), round((tokens - 1) ** 0.5)
    grid = pos[:, 1:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bilinear", align_corners=True)
    return torch.cat((pos[:, :1].float(), grid.permute(0, 2, 3, 1).reshape(1, new * new, -1)), dim=1).to(pos.dtype)


def _vit_to_timesformer(state: dict[str, torch.Tensor], model: TimeSformer) -> tuple[dict, tuple[str, ...]]:
    """PaddleVideo's pretrained-ViT rules: the image ViT becomes the spatial part of every block."""
    state = dict(state)
    expected = model.state_dict()
    may_miss = ["time_embed"]
    if model.config.attention_type != "space_only" or state.get("head.weight", torch.empty(0)).shape != expected["head.weight"].shape:
        state.pop("head.weight", None)
        state.pop("head.bias", None)
        may_miss += ["head.weight", "head.bias"]
    if state["pos_embed"].shape[1] != expected["pos_embed"].shape[1]:
        state["pos_embed"] = resize_pos_grid(state["pos_embed"], expected["pos_embed"].shape[1])
    if model.config.attention_type == "divided_space_time":
        for name in list(state):
            if name.startswith("blocks.") and (".attn." in name or ".norm1." in name):
                state[name.replace(".attn.", ".temporal_attn.").replace(".norm1.", ".temporal_norm1.")] = state[name]
        may_miss += [name for name in expected if ".temporal_fc." in name]
    return state, tuple(may_miss)
