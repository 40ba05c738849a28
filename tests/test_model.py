"""The model against independent references: PaddleVideo's own outputs and transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from timesformer import build_model, load_model
from timesformer.errors import ConfigError
from timesformer.model.timesformer import TimeSformerConfig


def test_paddlevideo_fixture_logits(paddle_fixture):
    model = load_model(paddle_fixture / "model.pdparams", num_heads=4)
    assert model.config.embed_dim == 96 and model.config.depth == 2 and model.config.num_classes == 400
    ref = np.load(paddle_fixture / "ref.npz")
    with torch.no_grad():
        feat = model.forward_features(torch.from_numpy(ref["x"]))
        logits = model.forward_head(feat)
    np.testing.assert_allclose(feat.numpy(), ref["feat"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits.numpy(), ref["logits"], atol=1e-4, rtol=0)


def test_paddlevideo_fixture_video_scores(paddle_fixture):
    """PaddleVideo's 3-crop scores for example.avi: each crop a clip, logits averaged."""
    model = load_model(paddle_fixture / "model.pdparams", num_heads=4)
    ref = np.load(paddle_fixture / "video_example.npz")
    crops = torch.from_numpy(ref["input"]).split(8, dim=2)
    with torch.no_grad():
        scores = torch.stack([model(c) for c in crops]).mean(0)
    np.testing.assert_allclose(scores.numpy(), ref["scores"], atol=1e-4, rtol=0)


def _transformers_model(attention_type: str, **kw):
    transformers = pytest.importorskip("transformers")
    TimesformerConfig, TimesformerForVideoClassification = (
        transformers.TimesformerConfig, transformers.TimesformerForVideoClassification)

    config = TimesformerConfig(
        image_size=32, patch_size=8, num_frames=4, hidden_size=48, num_hidden_layers=2,
        num_attention_heads=3, intermediate_size=96, num_labels=7, attention_type=attention_type, **kw,
    )
    torch.manual_seed(0)
    model = TimesformerForVideoClassification(config).eval()
    with torch.no_grad():  # no zero temporal_fc or zero biases: every weight matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _transformers_logits(model, x: torch.Tensor) -> torch.Tensor:
    """transformers' logits; for space_only its frames averaged before the final norm,
    as the official code and PaddleVideo do (transformers itself returns per-frame logits)."""
    pixels = x.transpose(1, 2)  # transformers takes [B, T, C, H, W]
    if model.config.attention_type != "space_only":
        return model(pixel_values=pixels).logits
    hidden = model.timesformer(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
    hidden = hidden.view(x.shape[0], x.shape[2], *hidden.shape[1:]).mean(1)
    return model.classifier(model.timesformer.layernorm(hidden)[:, 0])


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_transformers_parity(tmp_path, attention_type):
    reference = _transformers_model(attention_type)
    reference.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    assert model.config.attention_type == attention_type and model.config.num_heads == 3
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = _transformers_logits(reference, x)
        got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_runtime_resize_of_pos_and_time_embeddings(tmp_path):
    """More frames and a larger image than stored: nearest-resized embeddings, as transformers
    (and the official code) do; transformers' joint attention supports both."""
    reference = _transformers_model("joint_space_time")
    reference.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    x = torch.randn(1, 3, 6, 48, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(pixel_values=x.transpose(1, 2)).logits, atol=1e-4, rtol=1e-4)


def _reference_divided_block(block, x: torch.Tensor, T: int) -> torch.Tensor:
    """PaddleVideo's divided block, transcribed literally (copies and all), as the oracle."""
    B, _, D = x.shape
    N = (x.shape[1] - 1) // T
    xt = x[:, 1:].reshape(B * N, T, D)
    res = block.temporal_attn(block.temporal_norm1(xt)).reshape(B, N * T, D)
    xt = x[:, 1:] + block.temporal_fc(res)
    init_cls = x[:, :1]
    cls = init_cls.repeat(1, T, 1).reshape(B * T, 1, D)
    xs = xt.reshape(B, N, T, D).permute(0, 2, 1, 3).reshape(B * T, N, D)
    res = block.attn(block.norm1(torch.cat((cls, xs), 1)))
    res_cls = res[:, 0].reshape(B, T, D).mean(1, keepdim=True)
    res_s = res[:, 1:].reshape(B, T, N, D).permute(0, 2, 1, 3).reshape(B, N * T, D)
    x = torch.cat((init_cls, xt), 1) + torch.cat((res_cls, res_s), 1)
    return x + block.mlp(block.norm2(x))


def test_divided_block_matches_literal_transcription():
    model = build_model(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_frames=3).eval()
    block = model.blocks[0]
    x = torch.randn(2, 1 + 16 * 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(block(x, 3), _reference_divided_block(block, x, 3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("drop_path_rate", [0.0, 0.5])
def test_temporal_branch_folds_projection_and_temporal_fc_with_the_same_gradients(drop_path_rate):
    """Training computes the temporal output projection and `temporal_fc` as one linear map
    (their product); the output and every gradient equal the two layers applied in turn."""
    torch.manual_seed(0)
    model = build_model(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, num_frames=4,
                        drop_path_rate=drop_path_rate).train()  # fmt: skip
    block = model.blocks[-1]  # drop path grows with depth: the last block has the whole rate
    torch.nn.init.normal_(block.temporal_fc.weight, std=0.2)  # zero at init: the test needs a real product
    torch.nn.init.normal_(block.temporal_fc.bias, std=0.2)
    xt = torch.randn(2 * 16, 4, 24, dtype=torch.float64, requires_grad=True)  # 128 tokens > 24 channels: folded
    block.double()
    results = []
    for branch in (block.temporal_branch, lambda x: block.temporal_fc(block.drop_path(block.temporal_attn(x)))):
        torch.manual_seed(1)  # the same drop path draws
        out = branch(xt)
        grads = torch.autograd.grad(out.square().sum(), [xt, *block.parameters()], allow_unused=True)
        results.append((out, grads))
    (folded, folded_grads), (plain, plain_grads) = results
    assert drop_path_rate == 0 or (plain == block.temporal_fc.bias).all(dim=-1).any()  # some rows dropped
    torch.testing.assert_close(folded, plain)
    for name, a, b in zip(["input", *dict(block.named_parameters())], folded_grads, plain_grads):
        if b is not None:
            torch.testing.assert_close(a, b, msg=name)


def test_init_follows_reference():
    model = build_model(img_size=32, patch_size=16, embed_dim=32, depth=3, num_heads=2, num_classes=5)
    assert torch.count_nonzero(model.blocks[0].temporal_fc.weight) > 0
    for block in model.blocks[1:]:
        assert torch.count_nonzero(block.temporal_fc.weight) == 0 and torch.count_nonzero(block.temporal_fc.bias) == 0
    assert torch.count_nonzero(model.time_embed) == 0
    assert 0.015 < model.blocks[0].mlp.fc1.weight.std().item() < 0.025  # trunc-normal 0.02
    assert torch.all(model.blocks[1].norm1.weight == 1) and torch.all(model.blocks[1].norm1.bias == 0)
    assert torch.count_nonzero(model.blocks[2].attn.qkv.bias) == 0


def test_grad_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    fields = dict(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_frames=2, num_classes=3, drop_path_rate=0.0)
    plain = build_model(**fields)
    ckpt = build_model(**fields, grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 2, 32, 32)
    plain(x).square().sum().backward()
    ckpt(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_drop_path_in_training_only():
    model = build_model(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_frames=2, drop_path_rate=0.9)
    x = torch.randn(4, 3, 2, 32, 32)
    torch.manual_seed(0)
    train_out = model.train()(x)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), model(x))
    assert not torch.allclose(train_out, model(x))


def test_config_validation_and_round_trip():
    config = TimeSformerConfig(embed_dim=64, num_heads=4, num_classes=10)
    assert TimeSformerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="attention_type"):
        TimeSformerConfig(attention_type="divided")
    with pytest.raises(ConfigError, match="num_heads"):
        TimeSformerConfig(embed_dim=96, num_heads=5)
    with pytest.raises(ConfigError, match="num_head"):
        TimeSformerConfig.from_dict({"num_head": 3})


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_inference_fast_path_matches_plain_path(attention_type):
    """`fast_inference` (oneDNN GEMMs with bias/GELU/residual fused, prepared weights, a bf16
    residual stream under autocast, temporal_fc folded into the projection) computes the plain
    maths: fp32 within 1e-5, bf16 autocast within 0.05 of fp32 (logits of order 1)."""
    torch.manual_seed(0)
    model = build_model(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_frames=3,
                        num_classes=5, drop_path_rate=0.0, attention_type=attention_type)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.randn(2, 3, 3, 32, 32)
    training = model.train()(x)  # grad enabled: the plain path
    model.eval()
    with torch.no_grad():
        fast = model(x)
        model.fast_inference = False
        plain = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain_bf16 = model(x)
        model.fast_inference = True
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast_bf16 = model(x)
            again = model(x)  # from the prepared bf16 weights
    assert fast.abs().max() > 0.5  # logits of order 1: the tolerances mean something
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain, training.detach(), atol=1e-5, rtol=1e-5)
    assert torch.equal(fast_bf16, again)
    torch.testing.assert_close(fast_bf16.float(), plain_bf16.float(), atol=0.05, rtol=0.05)
    torch.testing.assert_close(fast_bf16.float(), plain, atol=0.05, rtol=0.05)


def test_fast_path_follows_weight_updates():
    """Prepared weights (bf16 casts, oneDNN layouts, the temporal_fc product) are made again
    when a parameter changes in place or is replaced."""
    torch.manual_seed(0)
    model = build_model(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_frames=2, num_classes=3).eval()
    x = torch.randn(1, 3, 2, 32, 32)

    def both():
        with torch.no_grad():
            fast = model(x)
            model.fast_inference = False
            plain = model(x)
            model.fast_inference = True
        return fast, plain

    for precision in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision):
            before, _ = both()
            with torch.no_grad():
                model.blocks[0].temporal_attn.proj.weight.mul_(3.0)  # folded into temporal_fc's GEMM
                model.blocks[0].mlp.fc2.bias.add_(1.0)
            model.blocks[0].attn.qkv.weight = torch.nn.Parameter(torch.randn_like(model.blocks[0].attn.qkv.weight))
            fast, plain = both()
        assert not torch.allclose(fast.float(), before.float(), atol=1e-3)
        tolerance = 0.05 if precision else 1e-5
        torch.testing.assert_close(fast.float(), plain.float(), atol=tolerance, rtol=tolerance)
    # fp32's weights were kept while bf16 ran; the bf16 round's updates must reach them too.
    fast, plain = both()
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def test_fast_path_keeps_each_precisions_weights():
    """Alternating fp32 and bf16 (the benchmark, a server with both) reuses each precision's
    prepared weights instead of remaking them at every switch; results stay the same."""
    torch.manual_seed(0)
    model = build_model(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_frames=2, num_classes=3).eval()
    x = torch.randn(1, 3, 2, 32, 32)
    qkv = model.blocks[0].attn.qkv

    def run(bf16: bool):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(x), dict(qkv.__dict__["_fast_inference_weights"])

    first_fp32, _ = run(False)
    first_bf16, kept = run(True)
    again_fp32, _ = run(False)
    again_bf16, kept_again = run(True)
    assert torch.equal(first_fp32, again_fp32) and torch.equal(first_bf16, again_bf16)
    assert len(kept) == 2 and all(kept_again[slot] is prepared for slot, prepared in kept.items())


def test_fresh_divided_model_cannot_tell_a_clip_from_its_reverse():
    # time_embed starts at zeros (PaddleVideo's init): without it, temporal attention is
    # order-blind, so a new model scores a clip and its time reversal alike. The demo's
    # learning curve sits on this symmetric plateau (0.5: the axis) until training breaks it.
    torch.manual_seed(0)
    model = build_model(img_size=16, patch_size=8, num_classes=4, embed_dim=16, depth=2, num_heads=2,
                        num_frames=4, drop_path_rate=0.0).eval()  # fmt: skip
    assert torch.count_nonzero(model.time_embed) == 0
    clip = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), model(clip.flip(2)), rtol=1e-4, atol=1e-5)
        model.time_embed.normal_(std=0.5)  # once time carries a position, order shows
        assert (model(clip) - model(clip.flip(2))).abs().max() > 1e-4


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_last_block_computes_the_cls_token_alone(attention_type):
    """`cls_only` (used for the last block, whose patch tokens nothing reads) gives the cls
    output of the full block, and the same gradients; for divided blocks the full block is
    PaddleVideo's, transcribed literally."""
    torch.manual_seed(0)
    model = build_model(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_frames=3,
                        drop_path_rate=0.0, attention_type=attention_type).train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # temporal_fc and biases away from their zero init
    block = model.blocks[0]
    rows = 2 * 3 if attention_type == "space_only" else 2
    tokens = 1 + 16 if attention_type == "space_only" else 1 + 16 * 3
    x = torch.randn(rows, tokens, 32, requires_grad=True)
    full = _reference_divided_block(block, x, 3) if attention_type == "divided_space_time" else block(x, 3)
    cls = block(x, 3, cls_only=True)
    assert cls.shape == (rows, 1, 32)
    torch.testing.assert_close(cls, full[:, :1], atol=1e-5, rtol=1e-5)
    weight = torch.randn(rows, 1, 32)
    expected = torch.autograd.grad((full[:, :1] * weight).sum(), [x, *block.parameters()], allow_unused=True)
    got = torch.autograd.grad((cls * weight).sum(), [x, *block.parameters()], allow_unused=True)
    for name, e, g in zip(["x", *(n for n, _ in block.named_parameters())], expected, got):
        if e is None:
            assert g is None or not g.any(), name
        else:
            torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4, msg=name)


def test_training_gradients_on_onednn_match_float64():
    """CPU fp32 training runs its linear layers on oneDNN (`model.linear`); the loss and every
    gradient match the same model in float64 (plain ATen maths)."""
    from timesformer.model import linear

    torch.manual_seed(0)
    fields = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_frames=3, num_classes=5, drop_path_rate=0.0)
    model = build_model(**fields).train()
    reference = build_model(**fields).double().train()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 3, 32, 32)
    calls = []
    original = linear._OneDNNLinear.apply
    linear._OneDNNLinear.apply = lambda *args: calls.append(1) or original(*args)
    try:
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1, 3]))
        loss.backward()
    finally:
        linear._OneDNNLinear.apply = original
    if linear.onednn_linear_available():
        # per block: qkv twice, the temporal projection and temporal_fc as one (and their
        # weights' product), proj, fc1, fc2; the head
        assert len(calls) == 2 * 7 + 1
    reference_loss = torch.nn.functional.cross_entropy(reference(x.double()), torch.tensor([1, 3]))
    reference_loss.backward()
    torch.testing.assert_close(loss.double(), reference_loss, atol=1e-6, rtol=1e-5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad.double(), q.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_onednn_linear_supports_a_gradient_penalty():
    """A second backward through the first (create_graph) gives nn.Linear's result: the
    backward switches to ATen's differentiable products when it is itself recorded."""
    from timesformer.model.linear import Linear

    torch.manual_seed(0)
    ours, reference = Linear(6, 5), torch.nn.Linear(6, 5).double()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(3, 6)

    def penalty_gradients(module, inputs):
        inputs = inputs.clone().requires_grad_()
        (grad,) = torch.autograd.grad(module(inputs).square().sum(), inputs, create_graph=True)
        return torch.autograd.grad(grad.square().sum(), list(module.parameters()))

    for got, expected in zip(penalty_gradients(ours, x), penalty_gradients(reference, x.double())):
        assert expected.abs().max() > 0.1
        torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
