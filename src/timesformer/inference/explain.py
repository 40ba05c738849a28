"""Where the model looked: per-frame relevance maps over the patch grid of one clip.

    from timesformer import explain, load_model
    result = explain(model, clip, method="rollout")   # clip [3, T, H, W], the model's input
    result.maps                                        # float32 [T, h, w], each frame in [0, 1]

Five methods read the attention probabilities `record_attention` takes from the same model
(an explicit softmax while recording, the same logits as the fast path); ``ig`` reads only
gradients with respect to the input, and ``occlusion`` only the logits of perturbed clips:

- ``last``: the cls token's attention over the patches in the last block, averaged over the
  heads (divided / space-only: the cls row of each frame's spatial attention; joint: the cls
  row over all N*T patch tokens).
- ``rollout`` (Abnar & Zuidema 2020): every attention step is a token-mixing matrix over the
  ``1 + N*T`` tokens (cls, then patch n of frame t at ``1 + n*T + t``), with the residual
  counted as half: ``A_hat = 0.5 * (mean_heads(A) + I)`` (rows still sum to 1). For a
  divided block the temporal step mixes each patch's T tokens (block diagonal, cls kept) and
  the spatial step mixes each frame's tokens with the cls token; the cls row of the spatial
  step is the mean over frames of the frames' cls rows, because the model averages the T cls
  outputs. The block is ``spatial @ temporal``; the clip is ``M_L @ ... @ M_1`` and the map is
  its cls row over the patch tokens. Space-only frames are separate images whose cls outputs
  are averaged: each frame's map is the cls row of its own rollout.
- ``grad`` (Chefer et al. 2021, "Generic attention-model explainability"): per attention
  step ``A_bar = mean_heads((dA ⊙ A)^+)``, dA the gradient of the target class's logit, and
  the relevance ``R = I`` updated ``R = R + A_bar @ R`` step by step (the same token-mixing
  layout as rollout, cls row of the spatial step averaged over frames); the map is R's cls
  row over the patch tokens. Class-specific: `target` (default the predicted class).
- ``alti`` (Ferrando, Gállego & Costa-jussà 2022, "Measuring the Mixing of Contextual
  Information in the Transformer"; pre-LN as in their ALTI+ code): how much each token's
  vector, not its attention weight, makes up each attention sublayer's output. For a sublayer
  whose output for token i is ``y_i = x_i + A(LN(x))_i`` the output splits exactly into one
  vector per input token plus a constant, ``y_i = sum_j T_i(x_j) + b`` with
  ``T_i(x_j) = sum_h a^h_ij W_O^h v^h_j + [i = j] x_j`` (``v^h_j`` head h's value of ``LN(x_j)``,
  value bias included; ``W_O^h`` head h's columns of the output projection; the residual is the
  sublayer's input; ``b`` the projection's bias, given to no token). Token j's share of ``y_i`` is
  its closeness in L1, ``c_ij = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1)``, normalized so each row
  sums to 1 (a row with nothing positive stays zero). TimeSformer's sublayers, each a step:
  a divided block's temporal step (each patch's T tokens; its output goes through ``temporal_fc``,
  a linear map, so ``W_O^h`` is followed by ``W_fc`` and ``b = W_fc b_O + b_fc``; the cls token is
  not in it and keeps itself, share 1), then its spatial step (each frame's tokens with the cls
  token; a patch's row is that frame's decomposition; the cls output is ``x_cls`` plus the mean
  of its T per-frame outputs, so its one row decomposes over all ``1 + N*T`` tokens: ``x_cls``
  plus ``(1/T) sum_t`` of each frame's cls-query terms on the cls token, and ``(1/T) a^h_{cls,j}
  W_O^h v^h_j`` on patch j of frame t); a joint block is one step over all tokens; a space-only
  block one step per frame (each frame an image, its cls outputs averaged at the end). The MLP
  and the norms after the attention are per token: they mix nothing. The steps' matrices are
  multiplied as rollout's (no residual added: ``T_i(x_i)`` already holds it) and the map is the
  product's cls row over the patch tokens. Class-agnostic, like rollout.
- ``norm`` (Kobayashi et al. 2020 "Attention is Not Only a Weight", 2021 "Incorporating Residual
  and Normalization Layers into Analysis of Masked Language Models"; rolled out as GlobEnc,
  Modarressi et al. 2022): the same vectors ``T_i(x_j)`` and steps as ``alti``, token j's share
  of ``y_i`` its norm ``||T_i(x_j)||_2``, each row normalized to sum 1. In this pre-LN model
  the norm is inside ``f(x_j) = W_O W_V LN(x_j)`` (the LayerNorm after the residual in their
  post-LN BERT belongs here to the next sublayer, per token). Class-agnostic.
- ``ig``, Integrated Gradients (Sundararajan et al. 2017) with the all-zero clip as baseline
  (zero after normalization: every pixel the normalization mean, a clip with no content):
  for the target class's logit ``f``, pixel i's attribution is
  ``x_i * (1/m) * sum_k df/dx_i(a_k * x)``, ``a_k = (k - 1/2) / m``, ``k = 1..m``
  (``m = IG_STEPS = 32``, the midpoint rule of the path integral from the baseline to x);
  a patch's attribution is the sum over its pixels and colour channels. Because the patch
  embedding is linear, this is exactly IG over the patch tokens ``W x_patch`` (their bias, the
  position and the time embedding kept in the baseline). Completeness: the attributions of all
  patches add up to ``f(x) - f(0)`` (up to the midpoint rule's error). The map is the positive
  part (evidence for the class). Class-specific: `target` (default the predicted class).
- ``occlusion`` (Zeiler & Fergus 2014): for the target class's logit ``f`` and every frame t
  and patch cell (i, j), the clip with that one patch of that one frame (all colour channels,
  its ``p x p`` pixels) set to the same baseline as ``ig`` (zero after normalization, the
  normalization mean): ``map[t, i, j] = f(x) - f(x with patch (t, i, j) occluded)``, the drop
  the patch's absence causes; the map is its positive part. No gradients and no attention:
  the same for divided, joint and space-only models. Cost: ``T * h * w`` forwards (in
  batches of `OCCLUSION_CHUNK`, each with the clip itself added for ``f(x)``), e.g.
  ``8 * 14 * 14 = 1568`` for ViT-B 8x224: the dearest method. Class-specific: `target` (default the predicted class).
- ``lrp``, conservative propagation LRP (Ali et al. 2022, "XAI for Transformers: Better
  Explanations through Conservative Propagation"): Layer-wise Relevance Propagation of the target
  class's logit ``f`` down to the tokens entering the first block (patch embedding + position and
  time embeddings), computed as gradient x input of a forward whose backward treats three
  things as constants: the attention probabilities (their "AH rule": ``y_j = sum_i x_i
  [p_ij].detach()``, relevance flows through the values only), LayerNorm's standard deviation
  (their "LN rule": ``y = (x - E[x]) / [sqrt(eps + Var[x])].detach() * w + b``, the centering stays
  a linear map) and the MLP's GELU gate (``gelu(x) = x * Phi(x)`` with ``Phi(x)`` constant: LRP
  passes a neuron's relevance through its element-wise activation unchanged, which AttnLRP,
  Achtibat et al. 2024, states as the identity rule for GELU). Every other operation (linear
  layers, residual sums, the divided block's cls mean) is linear, so with every bias zero the
  relevances of all tokens add up to ``f`` exactly (conservation; biases take the rest). A
  token's relevance is ``sum_d x_d * df/dx_d`` over its embedding; the map is the patch tokens'
  positive part (evidence for the class, as ``ig``). One forward and one backward.
  Class-specific: `target` (default the predicted class).

Only the cls row of each product is needed, so it is carried as a row vector from the last
step to the first (``r = e_cls``; ``r = r @ M`` per step): ``O(L^2)`` per step, never the
``L x L`` products.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import UserError

METHODS = ("rollout", "last", "grad", "alti", "norm", "ig", "occlusion", "lrp")
CONTRIBUTIONS = ("alti", "norm")  # value- and residual-aware token contributions, rolled out
CLASS_SPECIFIC = ("grad", "ig", "occlusion", "lrp")
IG_STEPS = 32  # points on the path from the baseline to the clip (Sundararajan et al.: 20 to 300)
IG_CHUNK = 4  # path points per forward/backward: bounds memory for large models
OCCLUSION_CHUNK = 16  # occluded clips per forward: bounds memory for large models
CONTRIBUTION_CHUNK = 2**24  # float64 values of the vectors T_i(x_j) held at once (128 MiB)


@dataclass
class ExplainResult:
    """Relevance of each patch of each sampled frame for one clip.

    maps: float32 ``[T, h, w]``, each frame's map min-max scaled to [0, 1] (a constant map is 0)
    relevance: float32 ``[T, h, w]``, the same before scaling (comparable across frames)
    predicted: the top-1 class; score: its softmax probability
    target: the class the map explains (`grad`, `ig`, `occlusion`, `lrp`: that class's logit; rollout
        and last are class-agnostic: the predicted one)
    probs: float32 ``[classes]``, the softmax of the logits
    """

    maps: np.ndarray
    relevance: np.ndarray
    predicted: int
    score: float
    target: int
    probs: np.ndarray
    method: str


def explain(model: nn.Module, clip: torch.Tensor, method: str = "rollout", target: int | None = None) -> ExplainResult:
    """Relevance maps of one clip (float ``[3, T, H, W]`` or ``[1, 3, T, H, W]``, normalized as
    the model's test pipeline makes it). `model` should be in eval mode (`load_model` returns it so)."""
    if method not in METHODS:
        raise UserError(f"--method {method}: use one of {', '.join(METHODS)}")
    from ..model import record_attention

    x = clip.unsqueeze(0) if clip.ndim == 4 else clip
    if x.ndim != 5 or x.shape[:2] != (1, 3):
        raise UserError(f"clip shape {tuple(clip.shape)}: expected [3, T, H, W] (one clip)")
    config = getattr(model, "module", model).config
    num_classes = config.num_classes
    if target is not None and method not in CLASS_SPECIFIC:
        raise UserError(
            f"--target {target}: only --method {', '.join(CLASS_SPECIFIC)} are class-specific "
            f"({method} maps are the same for every class)"
        )
    if target is not None and not 0 <= target < num_classes:
        raise UserError(f"--target {target}: the model has classes 0..{num_classes - 1}")
    frames, grid_h, grid_w = x.shape[2], x.shape[3] // config.patch_size, x.shape[4] // config.patch_size
    param = next(model.parameters())
    x = x.to(device=param.device, dtype=param.dtype)

    if method in ("ig", "occlusion"):
        with torch.no_grad():
            logits = model(x)[0]
    elif method == "lrp":
        logits, token_relevance = conservative_lrp(model, x, target)
    elif method == "grad":
        # The maps hang off the graph only when something upstream needs a gradient; the
        # weights are frozen, so the input does.
        x = x.detach().requires_grad_(True)
        with torch.enable_grad(), record_attention(model) as maps:
            logits = model(x)[0]
    else:
        with torch.no_grad(), record_attention(model, block_inputs=method in CONTRIBUTIONS) as maps:
            logits = model(x)[0]
    probs = logits.detach().float().softmax(-1)
    predicted = int(probs.argmax())
    target = predicted if target is None else int(target)

    attention_type = config.attention_type
    if method == "ig":
        relevance = integrated_gradients(model, x, target, config.patch_size).clamp(min=0).flatten(1)
    elif method == "occlusion":
        relevance = occlusion(model, x, target, config.patch_size).clamp(min=0).flatten(1)
    elif method == "lrp":
        relevance = patch_tokens(token_relevance, attention_type, frames).clamp(min=0)
    elif method == "last":
        relevance = last_layer_map(maps, attention_type, frames)
    elif method in CONTRIBUTIONS:
        steps = contribution_steps(model, maps, frames, method)
        relevance = cls_relevance(steps, attention_type, frames, residual="none")
    else:
        steps = _head_means(maps) if method == "rollout" else _gradient_weighted(maps, logits[target])
        relevance = cls_relevance(steps, attention_type, frames, residual="half" if method == "rollout" else "add")
    relevance = relevance.reshape(frames, grid_h, grid_w).float().cpu().numpy()
    return ExplainResult(
        maps=scale_per_frame(relevance), relevance=relevance, predicted=predicted,
        score=float(probs[predicted]), target=target, probs=probs.cpu().numpy(), method=method,
    )  # fmt: skip


def centre_crop_pipeline(spec):
    """The test pipeline of `spec` (an `InferenceSpec`: frames, short side, normalization) with
    one centre crop: the view `explain` shows, so that every map lies on the pixels drawn.
    (UniformCrop's middle view, up to PaddleVideo's rounding of an odd margin.)"""
    from ..data.pipeline import VideoPipeline

    return VideoPipeline.for_mode(
        "test", spec.num_seg, mean=spec.mean, std=spec.std, short_side_min=spec.short_size,
        short_side_max=spec.short_size, crop_size=spec.target_size, crop="center",
    )  # fmt: skip


def scale_per_frame(relevance: np.ndarray) -> np.ndarray:
    """Each frame's map min-max scaled to [0, 1]; a constant frame becomes zeros."""
    flat = relevance.reshape(relevance.shape[0], -1).astype(np.float64)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    scaled = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > 0)
    return scaled.reshape(relevance.shape).astype(np.float32)


# --------------------------------------------------------------------------- methods


def last_layer_map(maps: list[dict[str, torch.Tensor]], attention_type: str, frames: int) -> torch.Tensor:
    """``[T, N]``: the cls row over the patches of the last block's attention, mean over heads."""
    last = maps[-1]
    if attention_type == "joint_space_time":
        cls_row = last["joint"][0].mean(0)[0, 1:]  # [N*T], patch n of frame t at n*T + t
        return cls_row.view(-1, frames).T
    return last["spatial"].mean(1)[:, 0, 1:]  # [T, N]


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: int, patch_size: int,
                         steps: int | None = None) -> torch.Tensor:  # fmt: skip
    """Integrated Gradients of the `target` logit from the all-zero clip to `x` (``[1, 3, T, H, W]``),
    summed over each patch's pixels and channels: signed, float64 ``[T, H/p, W/p]``.

    Midpoint rule with `steps` points (default `IG_STEPS`); their sum over all patches is ``f(x) - f(0)`` up to that
    rule's error (completeness)."""
    from tqdm import tqdm

    steps = IG_STEPS if steps is None else steps
    alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    gradient_sum = torch.zeros_like(x[0], dtype=torch.float64)
    chunks = alphas.split(IG_CHUNK)
    for chunk in tqdm(chunks, desc="integrated gradients", unit="pass", leave=False, disable=None):
        path = (chunk.to(x.dtype).view(-1, 1, 1, 1, 1) * x.detach()).requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(model(path)[:, target].sum(), path)
        gradient_sum += gradient.double().sum(0)
    pixels = (x[0].double() * gradient_sum / steps).sum(0)  # [T, H, W]
    frames, grid_h, grid_w = pixels.shape[0], pixels.shape[1] // patch_size, pixels.shape[2] // patch_size
    # The patch embedding drops a remainder row or column of pixels (zero gradient) as well.
    grid = pixels[:, : grid_h * patch_size, : grid_w * patch_size]
    return grid.reshape(frames, grid_h, patch_size, grid_w, patch_size).sum(dim=(2, 4))


def occlusion(model: nn.Module, x: torch.Tensor, target: int, patch_size: int) -> torch.Tensor:
    """Drop of the `target` logit when one patch of one frame of `x` (``[1, 3, T, H, W]``) is set
    to the all-zero baseline: signed, float64 ``[T, H/p, W/p]``, ``f(x) - f(x occluded)``.

    The ``T * h * w`` occluded clips go through the model `OCCLUSION_CHUNK` at a time, each batch
    led by `x` itself: ``f(x)`` is taken from the same batch, so a batch size's rounding cancels
    and a patch already equal to the baseline drops exactly 0."""
    from tqdm import tqdm

    frames, grid_h, grid_w = x.shape[2], x.shape[3] // patch_size, x.shape[4] // patch_size
    cells = [(t, i, j) for t in range(frames) for i in range(grid_h) for j in range(grid_w)]
    drops = []
    starts = range(0, len(cells), OCCLUSION_CHUNK)
    for start in tqdm(starts, desc="occlusion", unit="pass", leave=False, disable=None):
        chunk = cells[start : start + OCCLUSION_CHUNK]
        batch = x.detach().expand(1 + len(chunk), -1, -1, -1, -1).clone()
        for k, (t, i, j) in enumerate(chunk, start=1):
            batch[k, :, t, i * patch_size : (i + 1) * patch_size, j * patch_size : (j + 1) * patch_size] = 0
        with torch.no_grad():
            logits = model(batch)[:, target].double().cpu()
        drops.append(logits[0] - logits[1:])
    return torch.cat(drops).view(frames, grid_h, grid_w)


def conservative_lrp(model: nn.Module, x: torch.Tensor, target: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Conservative propagation LRP (Ali et al. 2022) of the `target` logit (default the
    predicted class) for one clip `x` (``[1, 3, T, H, W]``).

    Returns the logits ``[classes]`` and the signed relevance of every token entering the first
    block, float64 in that input's layout less the embedding dim: ``[1, 1 + N*T]`` (patch n of
    frame t at ``1 + n*T + t``), space_only ``[T, 1 + N]`` (every frame's own cls token first).
    With every bias zero the relevances add up to the logit."""
    from ..model import record_attention

    x = x.detach().requires_grad_(True)  # the weights may be frozen: the graph must reach the tokens
    with torch.enable_grad(), record_attention(model, block_inputs=True) as maps, _conservative_rules(model):
        logits = model(x)[0]
        target = int(logits.argmax()) if target is None else target
        for block in maps:
            for key, probs in block.items():
                if key != "input":
                    # The AH rule: the probabilities pass no gradient back to q and k, as a
                    # detached constant would; the value path is untouched.
                    probs.register_hook(torch.zeros_like)
        tokens = maps[0]["input"]
        (gradient,) = torch.autograd.grad(logits[target], tokens)
    return logits.detach(), (tokens.detach().double() * gradient.double()).sum(-1)


@contextmanager
def _conservative_rules(model: nn.Module) -> Iterator[None]:
    """While inside, every LayerNorm divides by a detached standard deviation (the LN rule) and
    every GELU multiplies its input by a detached gate; the forward values are unchanged."""
    from ..model.timesformer import unwrap_model

    hooks = []
    for module in unwrap_model(model).modules():
        if isinstance(module, nn.LayerNorm):
            hooks.append(module.register_forward_hook(_layer_norm_rule))
        elif isinstance(module, nn.GELU):
            hooks.append(module.register_forward_hook(_gelu_rule))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def _layer_norm_rule(norm: nn.LayerNorm, args: tuple, output: torch.Tensor) -> torch.Tensor:
    x = args[0]
    centered = x - x.mean(-1, keepdim=True)
    std = (centered.square().mean(-1, keepdim=True) + norm.eps).sqrt()
    return centered / std.detach() * norm.weight + norm.bias


def _gelu_rule(gelu: nn.GELU, args: tuple, output: torch.Tensor) -> torch.Tensor:
    x = args[0]
    gate = 0.5 * (1.0 + torch.erf(x * 2**-0.5))  # the model's GELU is the exact (erf) one: x * Phi(x)
    return x * gate.detach()


def patch_tokens(relevance: torch.Tensor, attention_type: str, frames: int) -> torch.Tensor:
    """``[T, N]``: the patch tokens of a per-token tensor in the first block's input layout
    (``[1, 1 + N*T]``, patch n of frame t at ``1 + n*T + t``; space_only ``[T, 1 + N]``)."""
    if attention_type == "space_only":
        return relevance[:, 1:]
    return relevance[0, 1:].view(-1, frames).T


def _head_means(maps: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    return [{key: probs.detach().mean(1) for key, probs in block.items()} for block in maps]


def _gradient_weighted(maps: list[dict[str, torch.Tensor]], logit: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Chefer et al.'s ``mean_heads((dlogit/dA ⊙ A)^+)`` for every recorded attention."""
    keys = [(i, key) for i, block in enumerate(maps) for key in block]
    grads = torch.autograd.grad(logit, [maps[i][key] for i, key in keys])
    weighted: list[dict[str, torch.Tensor]] = [{} for _ in maps]
    for (i, key), grad in zip(keys, grads):
        weighted[i][key] = (grad * maps[i][key]).clamp(min=0).mean(1).detach()
    return weighted


def cls_relevance(
    steps: list[dict[str, torch.Tensor]], attention_type: str, frames: int, residual: str
) -> torch.Tensor:
    """The cls row over the patch tokens of the product of every step's token-mixing matrix, ``[T, N]``.

    `steps`: per block the head-averaged maps (batch of one), keys as `record_attention`'s.
    residual "half": each step mixes by ``0.5 * (A + I)`` (rollout); "add": by ``I + A``
    (Chefer's ``R = R + A R``); "none": by the matrix itself (ALTI's, which holds the residual).
    """

    def mixing(a: torch.Tensor) -> torch.Tensor:
        if residual == "none":
            return a
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        return 0.5 * (a + eye) if residual == "half" else a + eye

    blocks = [{key: mixing(a.double()) for key, a in block.items()} for block in steps]
    if attention_type == "joint_space_time":
        r = torch.zeros(blocks[0]["joint"].shape[-1], dtype=torch.float64, device=blocks[0]["joint"].device)
        r[0] = 1.0
        for block in reversed(blocks):
            r = r @ block["joint"][0]
        return r[1:].view(-1, frames).T

    spatial = blocks[0]["spatial"]
    # Row vector split as the cls weight and the patch weights [N, T] (token 1 + n*T + t).
    cls = torch.ones((), dtype=torch.float64, device=spatial.device)
    patches = spatial.new_zeros(spatial.shape[-1] - 1, frames)
    if attention_type == "space_only":
        # Each frame an image with its own cls token; the model averages the frames' cls outputs.
        rows = torch.cat((spatial.new_full((frames, 1), 1.0 / frames), patches.T), dim=1)
        for block in reversed(blocks):
            rows = torch.einsum("ti,tij->tj", rows, block["spatial"])
        return rows[:, 1:]
    for block in reversed(blocks):
        cls, patches = _spatial_step(cls, patches, block["spatial"])
        patches = torch.einsum("nt,ntu->nu", patches, block["temporal"])  # cls untouched: weight 1
    return patches.T


def _spatial_step(cls: torch.Tensor, patches: torch.Tensor, spatial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``r @ M`` for a divided block's spatial step; `spatial` ``[T, 1+N, 1+N]`` per-frame mixing.

    M's cls row is the mean over frames of the frames' cls rows, so frame t's share of the
    cls weight is ``cls / T``; each frame's token vector then mixes by its own matrix, and the
    cls weights the frames send back add up.
    """
    frames = spatial.shape[0]
    rows = torch.cat(((cls / frames).expand(frames, 1), patches.T), dim=1)  # [T, 1+N]
    out = torch.einsum("ti,tij->tj", rows, spatial)
    return out[:, 0].sum(), out[:, 1:].T


# --------------------------------------------------------------------------- alti, norm: token contributions


@torch.no_grad()
def contribution_steps(model: nn.Module, maps: list[dict[str, torch.Tensor]], frames: int,
                       method: str = "alti") -> list[dict[str, torch.Tensor]]:  # fmt: skip
    """The token-to-token contributions of every attention step, float64, in the layout
    `cls_relevance` reads (the keys of `record_attention`, head dimension gone): `method`
    "alti" (L1 closeness of ``T_i(x_j)`` to ``y_i``) or "norm" (the L2 norm of ``T_i(x_j)``).

    `maps`: `record_attention(model, block_inputs=True)` of one clip. Divided blocks give
    ``{"temporal": [N, T, T], "spatial": [T, 1+N, 1+N]}``; the spatial cls row, one row over all
    tokens, is stored as rollout's layout reads it: ``[t, 0, 0]`` the cls token's share for every
    t and ``[t, 0, 1+n]`` T times patch n of frame t's share.
    """
    from tqdm import tqdm

    from ..model.timesformer import Block, unwrap_model

    model = unwrap_model(model)
    attention_type = model.config.attention_type
    measure = _closeness_shares if method == "alti" else _norm_shares
    steps = []
    blocks = tqdm(zip(model.blocks, maps), total=len(maps), desc=method, unit="block", leave=False, disable=None)
    for block, recorded in blocks:
        x = recorded["input"].double()  # [1, 1+N*T, D]; space_only [T, 1+N, D]
        if attention_type != "divided_space_time":  # one step: joint over all tokens, space_only per frame
            key = "joint" if attention_type == "joint_space_time" else "spatial"
            shares, _ = _sublayer_contributions(recorded[key], _head_vectors(block.attn, block.norm1, x), x,
                                                block.attn.proj.bias.double(), measure)  # fmt: skip
            steps.append({key: shares})
            continue
        cls, patches = x[0, :1], x[0, 1:].view(-1, frames, x.shape[-1])  # [1, D], [N, T, D]
        fc_weight, fc_bias = block.temporal_fc.weight.double(), block.temporal_fc.bias.double()
        temporal_vectors = _head_vectors(block.temporal_attn, block.temporal_norm1, patches) @ fc_weight.T
        temporal_bias = fc_weight @ block.temporal_attn.proj.bias.double() + fc_bias
        temporal, patches = _sublayer_contributions(recorded["temporal"], temporal_vectors, patches, temporal_bias,
                                                    measure)  # fmt: skip
        groups = Block.spatial_groups(cls[None], patches.reshape(1, -1, x.shape[-1]), frames)  # [T, 1+N, D]
        probs, vectors = recorded["spatial"].double(), _head_vectors(block.attn, block.norm1, groups)
        spatial_bias = block.attn.proj.bias.double()
        spatial, _ = _sublayer_contributions(probs, vectors, groups, spatial_bias, measure)
        spatial[:, 0] = _divided_cls_row(probs, vectors, cls[0], spatial_bias, measure)
        steps.append({"temporal": temporal, "spatial": spatial})
    return steps


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x, norm.normalized_shape, norm.weight.double(), norm.bias.double(), norm.eps)


def _head_vectors(attention: nn.Module, norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``W_O^h v^h_j`` for every head h and token j of the sequences `x` ``[G, L, D]``: ``[G, H, L, D]``
    (the value bias inside v, the output projection's bias left out)."""
    dim, heads = x.shape[-1], attention.num_heads
    weight, bias = attention.qkv.weight[2 * dim :].double(), attention.qkv.bias
    bias = None if bias is None else bias[2 * dim :].double()
    values = torch.nn.functional.linear(_layer_norm(norm, x), weight, bias)  # [G, L, D], heads side by side
    values = values.view(*x.shape[:-1], heads, dim // heads)
    out_weight = attention.proj.weight.double().view(dim, heads, dim // heads)
    return torch.einsum("glhc,dhc->ghld", values, out_weight)


def _sublayer_contributions(probs: torch.Tensor, head_vectors: torch.Tensor, residual: torch.Tensor,
                            bias: torch.Tensor, measure) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Contributions (`measure`) of one attention sublayer over groups of L tokens: ``T_i(x_j) = sum_h a^h_ij
    head_vectors[h, j] + [i = j] residual_j``, ``y_i = sum_j T_i(x_j) + bias``.

    probs ``[G, H, L, L]``, head_vectors ``[G, H, L, D]``, residual ``[G, L, D]``. Returns the
    shares ``[G, L, L]`` and the outputs ``y`` ``[G, L, D]``. The vectors T_i(x_j) are made a
    block of rows at a time (`CONTRIBUTION_CHUNK` values)."""
    probs = probs.double()
    outputs = torch.einsum("ghij,ghjd->gid", probs, head_vectors) + residual + bias
    groups, tokens, dim = residual.shape
    shares = residual.new_empty(groups, tokens, tokens)
    rows = max(1, CONTRIBUTION_CHUNK // (tokens * dim))
    for g in range(groups):
        for start in range(0, tokens, rows):
            stop = min(start + rows, tokens)
            vectors = torch.einsum("hij,hjd->ijd", probs[g, :, start:stop], head_vectors[g])  # [r, L, D]
            index = torch.arange(start, stop)
            vectors[index - start, index] += residual[g, start:stop]
            shares[g, start:stop] = measure(outputs[g, start:stop], vectors)
    return shares, outputs


def _divided_cls_row(probs: torch.Tensor, head_vectors: torch.Tensor, cls: torch.Tensor,
                     bias: torch.Tensor, measure) -> torch.Tensor:  # fmt: skip
    """The cls token's contribution row in a divided block's spatial step, in the per-frame layout
    ``[T, 1+N]`` (``[t, 0]`` the cls token's share, ``[t, 1+n]`` T times patch n of frame t's).

    The model adds the mean of the T frames' cls outputs: ``y = x_cls + (1/T) sum_t sum_j
    a^t_{cls,j} W_O v^t_j + b``, one decomposition over the cls token and all N*T patches."""
    frames = probs.shape[0]
    terms = torch.einsum("thj,thjd->tjd", probs[:, :, 0], head_vectors) / frames  # [T, 1+N, D]
    vectors = torch.cat(((cls + terms[:, 0].sum(0))[None], terms[:, 1:].reshape(-1, cls.shape[-1])))
    output = vectors.sum(0) + bias
    shares = measure(output[None], vectors[None])[0]  # [1 + T*N], patch n of frame t at 1 + t*N + n
    return torch.cat((shares[:1].expand(frames, 1), frames * shares[1:].view(frames, -1)), dim=1)


def _closeness_shares(outputs: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1)`` normalized over j; outputs ``[R, D]``, vectors ``[R, J, D]``."""
    closeness = (outputs.abs().sum(-1, keepdim=True) - (outputs[:, None] - vectors).abs().sum(-1)).clamp(min=0)
    return closeness / closeness.sum(-1, keepdim=True).clamp(min=torch.finfo(closeness.dtype).tiny)


def _norm_shares(outputs: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``||T_i(x_j)||_2`` normalized over j (Kobayashi et al.); vectors ``[R, J, D]`` (`outputs` unused)."""
    norms = vectors.norm(dim=-1)
    return norms / norms.sum(-1, keepdim=True).clamp(min=torch.finfo(norms.dtype).tiny)
