"""`timesformer explain`: maps against transformers (`last`), against the explicit products
of full token-mixing matrices (`rollout`, `grad`), against ALTI's contributions written out
by hand from the weights (`alti`, `norm`), against Integrated Gradients' definition
over the patch tokens and its completeness (`ig`), against separate forwards of occluded clips
(`occlusion`); the command's files and its errors."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from timesformer import build_model, save_model
from timesformer.inference.explain import explain
from timesformer.cli import main
from timesformer.data.synth import MotionStyle, encode_video, render_motion_clip
from timesformer.model import load_model, record_attention

T, IMG, PATCH = 4, 32, 8
N = (IMG // PATCH) ** 2


def _tiny_model(attention_type: str, num_frames: int = T) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(img_size=IMG, patch_size=PATCH, embed_dim=32, depth=2, num_heads=2, num_frames=num_frames,
                        num_classes=5, attention_type=attention_type)  # fmt: skip
    with torch.no_grad():  # no zero temporal_fc or zero time embedding: every attention matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _clip(seed: int = 1) -> torch.Tensor:
    return torch.randn(3, T, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def _full_layout(step: str, a: torch.Tensor, cls_kept: float) -> torch.Tensor:
    """The (1+N*T)^2 matrix of one head-averaged attention step; token 1 + n*T + t is patch n of frame t.

    temporal [N, T, T]: patch n's T tokens mix; the cls token takes no part (`cls_kept`: 1 for
    attention, where it keeps itself; 0 for relevance, where no attention of it has a gradient).
    spatial [T, 1+N, 1+N]: each frame's patches mix with the cls token; the cls row is the
    mean over frames of the frames' cls rows (the model averages the T cls outputs).
    """
    size = 1 + N * T
    full = torch.zeros(size, size, dtype=torch.float64)
    if step == "temporal":
        full[0, 0] = cls_kept
    for n in range(N):
        for t in range(T):
            row = 1 + n * T + t
            if step == "temporal":
                for u in range(T):
                    full[row, 1 + n * T + u] = a[n, t, u]
            else:
                full[row, 0] = a[t, 1 + n, 0]
                for m in range(N):
                    full[row, 1 + m * T + t] = a[t, 1 + n, 1 + m]
    if step == "spatial":
        full[0, 0] = a[:, 0, 0].mean()
        for n in range(N):
            for t in range(T):
                full[0, 1 + n * T + t] = a[t, 0, 1 + n] / T
    return full


def _per_step(model, x, method: str, target: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Each step's head mean of A (rollout) or of (dA ⊙ A)^+ (grad), float64."""
    if method == "rollout":
        with torch.no_grad(), record_attention(model) as maps:
            model(x)
        return [{k: a.mean(1).double() for k, a in block.items()} for block in maps]
    x = x.clone().requires_grad_(True)
    with record_attention(model) as maps:
        logits = model(x)[0]
    target = int(logits.argmax()) if target is None else target
    for block in maps:
        for a in block.values():
            a.retain_grad()
    logits[target].backward()
    return [{k: (a.grad * a).clamp(min=0).mean(1).double().detach() for k, a in block.items()} for block in maps]


def _explicit_cls_row(attention_type: str, steps, method: str) -> torch.Tensor:
    """R's cls row over the patches, [T, N], with R the explicit product of full matrices."""
    eye = torch.eye(1 + N * T, dtype=torch.float64)

    def mix(full: torch.Tensor) -> torch.Tensor:
        return 0.5 * (full + eye) if method == "rollout" else eye + full  # Chefer: R <- R + A R

    relevance = eye.clone()
    for block in steps:
        if attention_type == "joint_space_time":
            relevance = mix(block["joint"][0]) @ relevance
        else:
            cls_kept = 1.0 if method == "rollout" else 0.0
            relevance = mix(_full_layout("temporal", block["temporal"], cls_kept)) @ relevance
            relevance = mix(_full_layout("spatial", block["spatial"], cls_kept)) @ relevance
    return relevance[0, 1:].view(N, T).T


@pytest.mark.parametrize("method", ["rollout", "grad"])
@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_rollout_and_grad_equal_explicit_matrix_products(attention_type, method):
    model, clip = _tiny_model(attention_type), _clip()
    expected = _explicit_cls_row(attention_type, _per_step(model, clip[None], method), method)
    result = explain(model, clip, method=method)
    assert result.relevance.shape == (T, IMG // PATCH, IMG // PATCH)
    np.testing.assert_allclose(result.relevance.reshape(T, N), expected.numpy(), rtol=1e-5, atol=1e-9)
    if method == "rollout":  # products of row-stochastic matrices: the cls row over every token sums to 1
        assert 0.0 < result.relevance.sum() < 1.0


@pytest.mark.parametrize("method", ["rollout", "grad"])
def test_space_only_frames_are_separate_images(method):
    """Space-only: frame t is an image with its own cls token; the final cls is the frames' mean."""
    model, clip = _tiny_model("space_only"), _clip()
    steps = _per_step(model, clip[None], method)
    eye = torch.eye(1 + N, dtype=torch.float64)
    expected = []
    for t in range(T):
        relevance = eye.clone()
        for block in steps:
            a = block["spatial"][t]
            relevance = (0.5 * (a + eye) if method == "rollout" else eye + a) @ relevance
        expected.append(relevance[0, 1:] / T)
    result = explain(model, clip, method=method)
    np.testing.assert_allclose(result.relevance.reshape(T, N), torch.stack(expected).numpy(), rtol=1e-5, atol=1e-9)


def test_grad_explains_the_target_class():
    model, clip = _tiny_model("divided_space_time"), _clip()
    predicted = explain(model, clip, method="grad")
    other = (predicted.predicted + 1) % 5
    targeted = explain(model, clip, method="grad", target=other)
    assert predicted.target == predicted.predicted and targeted.target == other
    assert targeted.predicted == predicted.predicted  # the prediction does not depend on the target
    expected = _explicit_cls_row("divided_space_time", _per_step(model, clip[None], "grad", other), "grad")
    np.testing.assert_allclose(targeted.relevance.reshape(T, N), expected.numpy(), rtol=1e-5, atol=1e-9)
    assert not np.allclose(targeted.relevance, predicted.relevance)


def _token_space_ig(model, x: torch.Tensor, target: int, steps: int) -> torch.Tensor:
    """Integrated Gradients over the patch tokens ``W x_patch`` (conv bias, position and time
    embedding kept), from the definition: one forward per path point, the tokens swapped in by a
    hook on the patch embedding. ``[T, N]``, float64."""
    bias = model.patch_embed.proj.bias
    with torch.no_grad():
        content = model.patch_embed(x)[0] - bias  # [T, N, D], frame-major
    gradient_sum = torch.zeros_like(content, dtype=torch.float64)
    for k in range(steps):
        tokens = (bias + (k + 0.5) / steps * content).detach().requires_grad_(True)
        handle = model.patch_embed.register_forward_hook(lambda module, args, out: (tokens, *out[1:]))
        try:
            logit = model(x)[0, target]
        finally:
            handle.remove()
        gradient_sum += torch.autograd.grad(logit, tokens)[0].double()
    return (content.double() * gradient_sum / steps).sum(-1)


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_ig_equals_token_space_definition_and_is_complete(attention_type):
    from timesformer.inference.explain import integrated_gradients

    model, clip = _tiny_model(attention_type), _clip()
    clip[:, 2, 8:16, 24:32] = 0.0  # patch (row 1, col 3) of frame 2 is the baseline itself
    x = clip[None]
    with torch.no_grad():
        logits, baseline_logits = model(x)[0], model(torch.zeros_like(x))[0]
    other = (int(logits.argmax()) + 1) % 5  # not the predicted class: the target is honoured
    signed = integrated_gradients(model, x, other, PATCH, steps=4)
    expected = _token_space_ig(model, x, other, steps=4)
    np.testing.assert_allclose(signed.reshape(T, N).numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)
    # Completeness (Sundararajan et al. 2017): the attributions add up to f(x) - f(baseline);
    # with 64 path points the midpoint rule's error is well under 1%.
    signed = integrated_gradients(model, x, other, PATCH, steps=64)
    gap = float(logits[other] - baseline_logits[other])
    assert abs(float(signed.sum()) - gap) < 0.01 * abs(gap), (float(signed.sum()), gap)
    # A patch equal to the baseline contributes nothing; the others do.
    assert float(signed[2, 1, 3]) == 0.0 and np.count_nonzero(signed.numpy()) == T * N - 1


def test_ig_map_is_the_positive_part_for_the_target(monkeypatch):
    from timesformer.inference import explain as explain_module
    from timesformer.inference.explain import integrated_gradients

    monkeypatch.setattr(explain_module, "IG_STEPS", 4)  # the step count is not what this tests
    model, clip = _tiny_model("divided_space_time"), _clip()
    predicted = explain(model, clip, method="ig")
    other = (predicted.predicted + 1) % 5
    targeted = explain(model, clip, method="ig", target=other)
    assert predicted.target == predicted.predicted and targeted.target == other
    for result in (predicted, targeted):
        signed = integrated_gradients(model, clip[None], result.target, PATCH, steps=4)
        np.testing.assert_allclose(result.relevance, signed.clamp(min=0).numpy(), rtol=1e-6, atol=1e-9)
    assert not np.allclose(targeted.relevance, predicted.relevance)


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_occlusion_equals_separate_forwards_of_occluded_clips(attention_type, monkeypatch):
    from timesformer.inference import explain as explain_module

    monkeypatch.setattr(explain_module, "OCCLUSION_CHUNK", 15)  # T*N = 64 clips: a ragged last batch
    model, clip = _tiny_model(attention_type), _clip()
    clip[:, 2, 8:16, 24:32] = 0.0  # patch (row 1, col 3) of frame 2 is the baseline itself
    with torch.no_grad():
        logits = model(clip[None])[0]
    other = (int(logits.argmax()) + 1) % 5  # not the predicted class: the target is honoured
    signed = explain_module.occlusion(model, clip[None], other, PATCH)
    assert signed.shape == (T, IMG // PATCH, IMG // PATCH)
    for t, i, j in [(0, 0, 0), (1, 2, 1), (3, 3, 3), (2, 0, 3)]:
        occluded = clip.clone()
        occluded[:, t, i * PATCH : (i + 1) * PATCH, j * PATCH : (j + 1) * PATCH] = 0.0
        with torch.no_grad():
            drop = float(logits[other] - model(occluded[None])[0, other])
        np.testing.assert_allclose(float(signed[t, i, j]), drop, rtol=1e-5, atol=1e-6)
    # Occluding a patch that already is the baseline leaves the clip unchanged: no drop at all.
    assert float(signed[2, 1, 3]) == 0.0 and np.count_nonzero(signed.numpy()) == T * N - 1
    if attention_type == "divided_space_time":  # the command's path: positive part, target honoured
        result = explain(model, clip, method="occlusion", target=other)
        assert result.target == other and result.predicted == int(logits.argmax())
        assert (signed.numpy() < 0).any()
        np.testing.assert_allclose(result.relevance, signed.clamp(min=0).numpy(), rtol=1e-5, atol=1e-6)


def _hand_layer_norm(x: torch.Tensor, norm) -> torch.Tensor:
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight.double() + norm.bias.double()


def _hand_heads(attn, norm, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence [L, D] through one attention, by hand from the weights: per head h the
    probabilities [H, L, L] and ``W_O^h v^h_j`` [H, L, D] (value bias in, output bias out)."""
    dim, heads = seq.shape[-1], attn.num_heads
    width = dim // heads
    q, k, v = (_hand_layer_norm(seq, norm) @ attn.qkv.weight.double().T + attn.qkv.bias.double()).split(dim, -1)
    probs, outs = [], []
    for h in range(heads):
        part = slice(h * width, (h + 1) * width)
        probs.append(torch.softmax(q[:, part] @ k[:, part].T / width**0.5, dim=-1))
        outs.append(v[:, part] @ attn.proj.weight.double()[:, part].T)
    return torch.stack(probs), torch.stack(outs)


def _hand_share_row(vectors: torch.Tensor, bias: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """y = sum_j T(x_j) + b; alti (Ferrando et al. 2022): share_j ∝ max(0, |y|_1 - |y - T(x_j)|_1);
    norm (Kobayashi et al.): share_j ∝ |T(x_j)|_2."""
    y = vectors.sum(0) + bias
    if method == "alti":
        weight = torch.clamp(y.abs().sum() - (y - vectors).abs().sum(-1), min=0)
    else:
        weight = torch.sqrt((vectors**2).sum(-1))
    return weight / weight.sum(), y


def _hand_contribution_matrix(model, x: torch.Tensor, frames: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One block's alti or norm token-mixing matrix [(1+N*T)^2] (spatial step @ temporal step for divided)
    for the block input x [1+N*T, D] (space_only: [T, 1+N, D], frames as separate images; the
    matrix then block-diagonal per frame over T*(1+N) tokens), and the block's output, with every
    token's vectors T_i(x_j) written out one query at a time."""
    block = model
    b_o = block.attn.proj.bias.double()

    def sublayer(rows, attn, norm, seq, after=None, bias=b_o):
        """Rows of queries `rows` of one attention over seq [L, D]: ALTI shares [r, L] and outputs."""
        probs, outs = _hand_heads(attn, norm, seq)
        if after is not None:  # temporal_fc after the projection: a linear map of every head's vector
            outs = outs @ after.T
        shares, outputs = [], []
        for i in rows:
            vectors = (probs[:, i, :, None] * outs).sum(0)
            vectors[i] = vectors[i] + seq[i]
            share, y = _hand_share_row(vectors, bias, method)
            shares.append(share)
            outputs.append(y)
        return torch.stack(shares), torch.stack(outputs), probs, outs

    if block.attention_type == "space_only":
        matrices, outputs = [], []
        for t in range(frames):
            shares, y, _, _ = sublayer(range(x.shape[1]), block.attn, block.norm1, x[t])
            matrices.append(shares)
            outputs.append(y)
        return torch.block_diag(*matrices), torch.stack(outputs)
    size = x.shape[0]
    if block.attention_type == "joint_space_time":
        shares, y, _, _ = sublayer(range(size), block.attn, block.norm1, x)
        return shares, y
    n_patches = (size - 1) // frames
    temporal = torch.zeros(size, size, dtype=torch.float64)
    temporal[0, 0] = 1.0  # the cls token takes no part in temporal attention
    mid = x.clone()
    fc, temporal_b_o = block.temporal_fc, block.temporal_attn.proj.bias.double()
    for n in range(n_patches):
        index = [1 + n * frames + t for t in range(frames)]
        shares, y, _, _ = sublayer(range(frames), block.temporal_attn, block.temporal_norm1, x[index],
                                   after=fc.weight.double(), bias=fc.weight.double() @ temporal_b_o + fc.bias.double())  # fmt: skip
        temporal[np.ix_(index, index)] = shares
        mid[index] = y
    spatial = torch.zeros(size, size, dtype=torch.float64)
    cls_vectors = torch.zeros_like(x)
    cls_vectors[0] = x[0]
    out = mid.clone()
    for t in range(frames):
        index = [0] + [1 + n * frames + t for n in range(n_patches)]
        shares, y, probs, outs = sublayer(range(1, 1 + n_patches), block.attn, block.norm1, mid[index])
        spatial[np.ix_(index[1:], index)] = shares
        out[index[1:]] = y
        # The cls output is x_cls plus the mean over frames of its per-frame attention outputs.
        cls_vectors[index] += (probs[:, 0, :, None] * outs).sum(0) / frames
    spatial[0], out[0] = _hand_share_row(cls_vectors, b_o, method)
    return spatial @ temporal, out


@pytest.mark.parametrize("method", ["alti", "norm"])
@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_contributions_equal_hand_computed_ones(attention_type, method):
    """ALTI (Ferrando et al. 2022) and norm (Kobayashi et al.) from the weights, one query at a
    time: each block's matrix, rolled out as a product; the decomposition adds up to what the
    model computes."""
    model, clip = _tiny_model(attention_type), _clip()
    with torch.no_grad():
        x = model.embed(clip[None]).double()
        x = x if attention_type == "space_only" else x[0]
        product = None
        for block in model.blocks:
            matrix, after_attention = _hand_contribution_matrix(block, x, T, method)
            expected_out = block.double()(x if attention_type == "space_only" else x[None], T)
            block.float()
            out = after_attention + block.mlp.double()(block.norm2.double()(after_attention))
            block.float()
            torch.testing.assert_close(out, expected_out if attention_type == "space_only" else expected_out[0])
            np.testing.assert_allclose(matrix.sum(-1).numpy(), 1.0, rtol=1e-12)  # every row shares out 1
            product = matrix if product is None else matrix @ product
            x = out
    result = explain(model, clip, method=method)
    if attention_type == "space_only":  # frame t's cls row of its own product; the frames' cls outputs averaged
        size = 1 + N
        expected = torch.stack([product[t * size, t * size + 1 : (t + 1) * size] / T for t in range(T)])
    else:
        expected = product[0, 1:].view(N, T).T
    np.testing.assert_allclose(result.relevance.reshape(T, N), expected.numpy(), rtol=1e-4, atol=1e-7)
    assert 0.0 < result.relevance.sum() < 1.0  # the cls token keeps a share of itself
    # Recording the block inputs leaves the logits those of the fast path, and leaves no hook behind.
    with torch.no_grad():
        np.testing.assert_allclose(result.probs, model(clip[None])[0].softmax(-1).numpy(), rtol=1e-5, atol=1e-7)
    assert not any(block._forward_pre_hooks for block in model.blocks)
    assert not np.allclose(result.relevance, explain(model, clip, method="rollout").relevance, rtol=0.1)


@pytest.mark.parametrize("method", ["alti", "norm", "lrp"])
def test_map_changes_when_the_weights_are_randomized(method):
    """Adebayo et al. 2018's model randomization test: with every weight re-drawn (same scale),
    a map that explains the model must change; one that only follows the input would not."""
    model, clip = _tiny_model("divided_space_time"), _clip()
    before = explain(model, clip, method=method)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * p.std())
    after = explain(model, clip, method=method)

    def ranks(a: np.ndarray) -> np.ndarray:
        return a.ravel().argsort().argsort()

    # Spearman's rank correlation of the two maps, Adebayo et al.'s measure of similarity.
    assert np.corrcoef(ranks(before.relevance), ranks(after.relevance))[0, 1] < 0.5


def _without_biases(model: torch.nn.Module) -> torch.nn.Module:
    """Every bias zero (qkv, projections, MLP, temporal_fc, LayerNorms, head): nothing but the
    tokens feeds the logit, so a conservative explanation must give all of it to the tokens."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    return model


def _plain_gradient_x_input(model, x: torch.Tensor, target: int) -> torch.Tensor:
    with record_attention(model, block_inputs=True) as maps:
        logit = model(x.clone().requires_grad_(True))[0, target]
    tokens = maps[0]["input"]
    (gradient,) = torch.autograd.grad(logit, tokens)
    return (tokens * gradient).sum(-1).double().detach()


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_lrp_is_conservative_without_biases(attention_type):
    """Ali et al. 2022: with the attention probabilities and LayerNorm's std constant (and the
    GELU gate, LRP's identity through an activation), the network is linear and homogeneous in
    the tokens once the biases are gone: the tokens' relevances add up to the logit."""
    from timesformer.inference.explain import conservative_lrp

    model, x = _without_biases(_tiny_model(attention_type)), _clip()[None]
    with torch.no_grad():
        logits = model(x)[0]
    other = (int(logits.argmax()) + 1) % 5
    for target in (None, other):
        returned, relevance = conservative_lrp(model, x, target)
        expected = int(logits.argmax()) if target is None else target
        assert relevance.shape == ((1, 1 + N * T) if attention_type != "space_only" else (T, 1 + N))
        torch.testing.assert_close(returned, logits, rtol=1e-5, atol=1e-6)  # the rules change no value
        total, logit = float(relevance.sum()), float(logits[expected])
        assert abs(total - logit) < 1e-4, (total, logit)
    # The plain gradient x input of the same model is not conservative (LayerNorm is
    # scale-invariant): the rules are what makes the sum come out.
    plain = _plain_gradient_x_input(model, x, other)
    assert abs(float(plain.sum()) - float(logits[other])) > 1e-2


def _layer_norm_by_hand(x, norm):
    centered = x - x.mean(-1, keepdim=True)
    return centered / (centered.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt().detach() * norm.weight + norm.bias


def _attention_by_hand(x, attn):
    """[G, L, D] -> [G, L, D] with the probabilities detached (the AH rule), heads written out."""
    heads, dim = attn.num_heads, x.shape[-1]
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).split(dim, dim=-1)
    outs = []
    for h in range(heads):
        cols = slice(h * dim // heads, (h + 1) * dim // heads)
        probs = torch.softmax(q[..., cols] @ k[..., cols].transpose(-1, -2) / (dim // heads) ** 0.5, dim=-1)
        outs.append(probs.detach() @ v[..., cols])
    return F.linear(torch.cat(outs, dim=-1), attn.proj.weight, attn.proj.bias)


def _one_block_logits_by_hand(model, tokens: torch.Tensor, attention_type: str) -> torch.Tensor:
    """The one-block model from its first block's input [1, 1+N*T, D], every rule spelled out."""
    block = model.blocks[0]
    x = tokens[0]
    if attention_type == "divided_space_time":
        cls, patches = x[:1], x[1:].view(N, T, -1)  # patch n of frame t at 1 + n*T + t
        temporal = _attention_by_hand(_layer_norm_by_hand(patches, block.temporal_norm1), block.temporal_attn)
        patches = patches + F.linear(temporal, block.temporal_fc.weight, block.temporal_fc.bias)
        frames = torch.stack([torch.cat((cls, patches[:, t])) for t in range(T)])  # [T, 1+N, D]
        spatial = _attention_by_hand(_layer_norm_by_hand(frames, block.norm1), block.attn)
        x = torch.cat((cls + spatial[:, 0].mean(0, keepdim=True),
                       (patches + spatial[:, 1:].transpose(0, 1)).reshape(N * T, -1)))  # fmt: skip
    else:
        x = x + _attention_by_hand(_layer_norm_by_hand(x[None], block.norm1), block.attn)[0]
    hidden = F.linear(_layer_norm_by_hand(x, block.norm2), block.mlp.fc1.weight, block.mlp.fc1.bias)
    gate = 0.5 * (1 + torch.erf(hidden / 2**0.5))
    x = x + F.linear(hidden * gate.detach(), block.mlp.fc2.weight, block.mlp.fc2.bias)
    return F.linear(_layer_norm_by_hand(x[0], model.norm), model.head.weight, model.head.bias)


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_lrp_equals_gradient_x_input_with_the_rules_written_out(attention_type):
    """One block, biases kept: the method's token relevances are gradient x input of the model
    written out by hand with the probabilities, LayerNorm's std and the GELU gate detached."""
    from timesformer.inference.explain import conservative_lrp, patch_tokens

    torch.manual_seed(0)
    model = build_model(img_size=IMG, patch_size=PATCH, embed_dim=32, depth=1, num_heads=2, num_frames=T,
                        num_classes=5, attention_type=attention_type).eval()  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model, x = model.double(), _clip()[None].double()
    with torch.no_grad():
        tokens = model.embed(x)
        logits = _one_block_logits_by_hand(model, tokens, attention_type)
    target = (int(logits.argmax()) + 2) % 5
    tokens.requires_grad_(True)
    (gradient,) = torch.autograd.grad(_one_block_logits_by_hand(model, tokens, attention_type)[target], tokens)
    expected = (tokens * gradient).sum(-1).detach()
    returned, relevance = conservative_lrp(model, x, target)
    torch.testing.assert_close(returned, logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(relevance, expected, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(_plain_gradient_x_input(model, x, target), expected, rtol=1e-3)
    result = explain(model, _clip().double(), method="lrp", target=target)
    expected_map = patch_tokens(expected, attention_type, T).clamp(min=0).reshape(T, IMG // PATCH, IMG // PATCH)
    np.testing.assert_allclose(result.relevance, expected_map.float().numpy(), rtol=1e-5, atol=1e-8)
    assert result.target == target and (result.relevance == 0).any() and (result.relevance > 0).any()


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_last_equals_transformers_output_attentions(tmp_path, attention_type):
    from test_model import _transformers_model

    reference = _transformers_model(attention_type)
    reference.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    frames, side = reference.config.num_frames, reference.config.image_size // reference.config.patch_size
    x = torch.randn(1, 3, frames, reference.config.image_size, reference.config.image_size,
                    generator=torch.Generator().manual_seed(2))  # fmt: skip
    with torch.no_grad():
        out = reference(pixel_values=x.transpose(1, 2), output_attentions=True)
    last = out.attentions[-1].mean(1)  # mean over heads
    if attention_type == "joint_space_time":
        expected = last[0, 0, 1:].view(side * side, frames).T  # token 1 + n*T + t
    else:
        expected = last[:, 0, 1:]  # [T, N]: the cls row of each frame's spatial attention
    result = explain(model, x[0], method="last")
    np.testing.assert_allclose(result.relevance.reshape(frames, -1), expected.numpy(), rtol=1e-4, atol=1e-7)
    if attention_type != "space_only":  # transformers' space-only logits are per frame
        assert result.predicted == int(out.logits[0].argmax())
    # Each frame's map is scaled to [0, 1].
    assert np.allclose(result.maps.reshape(frames, -1).max(1), 1.0) and result.maps.min() == 0.0


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A divided model for 8 frames of 32x32 and a video of a square moving right."""
    root = tmp_path_factory.mktemp("explain")
    weights = root / "tiny.safetensors"
    save_model(_tiny_model("divided_space_time", num_frames=8), weights)
    video = root / "clip.mp4"
    encode_video(render_motion_clip(0, np.random.default_rng(0), MotionStyle(colors="gray")), video)
    return root, weights, video


def test_command_writes_maps_strip_and_video(made, tmp_path, capsys):
    root, weights, video = made
    out = tmp_path / "maps"
    assert main(["explain", "-w", str(weights), "-i", str(video), "-o", str(out), "--method", "grad"]) == 0
    assert "top-1 class " in capsys.readouterr().out
    maps = np.load(out / "clip_attention.npy")
    assert maps.shape == (8, 4, 4) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and np.allclose(maps.reshape(8, -1).max(1), 1.0)
    png = (out / "clip_attention.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) < 200_000
    with av.open(str(out / "clip_attention.mp4")) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 8 and min(decoded[0].shape[:2]) >= 256  # 32 px upscaled to be seen
    assert sorted(p.name for p in out.iterdir()) == ["clip_attention.mp4", "clip_attention.npy", "clip_attention.png"]


def test_command_ig_takes_a_target(made, tmp_path, capsys):
    root, weights, video = made
    out = tmp_path / "maps"
    args = ["explain", "-w", str(weights), "-i", str(video), "-o", str(out), "--method", "ig", "--target", "3"]
    assert main(args) == 0
    assert "ig map of class 3" in capsys.readouterr().out
    maps = np.load(out / "clip_attention.npy")
    assert maps.shape == (8, 4, 4) and maps.min() >= 0.0 and maps.max() == 1.0


@pytest.mark.parametrize("case", ["missing", "folder", "random_bytes", "target_high", "target_negative",
                                  "target_with_rollout", "method", "output_is_input"])  # fmt: skip
def test_command_bad_input_is_one_line(made, tmp_path, capsys, case):
    root, weights, video = made
    out = tmp_path / "out"
    args = {"-w": str(weights), "-i": str(video), "-o": str(out)}
    extra: list[str] = []
    if case == "missing":
        args["-i"] = str(tmp_path / "nope.mp4")
    elif case == "folder":
        args["-i"] = str(root)
    elif case == "random_bytes":
        junk = tmp_path / "junk.mp4"
        junk.write_bytes(np.random.default_rng(0).bytes(4096))
        args["-i"] = str(junk)
    elif case == "target_high":
        extra = ["--method", "grad", "--target", "5"]
    elif case == "target_with_rollout":
        extra = ["--target", "1"]
    elif case == "target_negative":
        extra = ["--target", "-1"]
    elif case == "method":
        extra = ["--method", "saliency"]
    else:  # the weights stored where an output would go
        args["-o"] = str(root)
        args["-w"] = str(root / "clip_attention.npy")
        (root / "clip_attention.npy").write_bytes(weights.read_bytes())
    before = {p: p.read_bytes() for p in root.iterdir() if p.is_file()}
    code = main(["explain", *[a for kv in args.items() for a in kv], *extra])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith("timesformer explain: error:"), err
    expected = {
        "missing": "nope.mp4", "folder": "folder", "random_bytes": "junk.mp4", "target_high": "--target 5",
        "target_negative": "--target -1", "target_with_rollout": "only --method grad",
        "method": "--method saliency", "output_is_input": "-w",
    }[case]  # fmt: skip
    assert expected in err
    assert not out.exists() or not any(out.iterdir())
    assert {p: p.read_bytes() for p in root.iterdir() if p.is_file()} == before
    if case == "output_is_input":
        (root / "clip_attention.npy").unlink()
