"""`record_attention`: the recorded probabilities against closed-form softmax and transformers."""

from __future__ import annotations

import pytest
import torch

from timesformer import build_model, load_model, record_attention

ATTENTION_TYPES = ["divided_space_time", "joint_space_time", "space_only"]
T, GRID, HEADS, DIM = 3, 4, 3, 48  # 32 px / 8 px patches: N = 16


def _tiny_model(attention_type: str):
    torch.manual_seed(0)
    model = build_model(img_size=32, patch_size=8, embed_dim=DIM, depth=2, num_heads=HEADS, num_frames=T,
                        num_classes=5, attention_type=attention_type)  # fmt: skip
    with torch.no_grad():  # no zero temporal_fc or time_embed: every weight matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _clip(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, T, 32, 32, generator=torch.Generator().manual_seed(1))


def _softmax_by_hand(attention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) per head, from the module's own qkv weights."""
    batch, tokens, dim = x.shape
    qkv = x @ attention.qkv.weight.T + attention.qkv.bias
    q, k, _ = qkv.view(batch, tokens, 3, HEADS, dim // HEADS).permute(2, 0, 3, 1, 4)
    return torch.softmax(q @ k.transpose(-1, -2) / (dim // HEADS) ** 0.5, dim=-1)


def _qkv_inputs(model) -> tuple[dict, list]:
    """Each attention module's input (what its qkv GEMM sees), captured by hooks."""
    inputs, handles = {}, []
    for name, module in model.named_modules():
        if name.endswith("attn.qkv"):
            handles.append(module.register_forward_hook(lambda m, args, out, name=name: inputs.__setitem__(name, args[0])))
    return inputs, handles


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_recorded_maps_are_the_softmax_of_each_block(attention_type):
    model = _tiny_model(attention_type)
    x = _clip()
    inputs, handles = _qkv_inputs(model)
    with torch.no_grad():
        fast = model(x)
        with record_attention(model) as maps:
            recorded = model(x)
    for handle in handles:
        handle.remove()
    torch.testing.assert_close(recorded, fast, atol=1e-5, rtol=1e-5)
    assert len(maps) == 2

    N, B = GRID * GRID, 2
    expected_shapes = {
        "divided_space_time": {"temporal": (B * N, HEADS, T, T), "spatial": (B * T, HEADS, 1 + N, 1 + N)},
        "joint_space_time": {"joint": (B, HEADS, 1 + N * T, 1 + N * T)},
        "space_only": {"spatial": (B * T, HEADS, 1 + N, 1 + N)},
    }[attention_type]
    module_of = {"temporal": "temporal_attn", "spatial": "attn", "joint": "attn"}
    for i, block_maps in enumerate(maps):
        assert {k: tuple(v.shape) for k, v in block_maps.items()} == expected_shapes
        for key, probs in block_maps.items():
            torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5, rtol=0)
            attention = getattr(model.blocks[i], module_of[key])
            by_hand = _softmax_by_hand(attention, inputs[f"blocks.{i}.{module_of[key]}.qkv"])
            torch.testing.assert_close(probs, by_hand, atol=1e-5, rtol=1e-4)


def test_temporal_rows_follow_the_contract_layout():
    """Row b*N + n of the temporal maps is patch n of clip b: its T tokens are that patch's."""
    model = _tiny_model("divided_space_time")
    x = _clip()
    with torch.no_grad(), record_attention(model) as maps:
        model(x)
    # Clip 1 alone gives the rows N..2N-1 of the batch of two (block 0 sees only its own clip).
    with torch.no_grad(), record_attention(model) as alone:
        model(x[1:])
    N = GRID * GRID
    torch.testing.assert_close(maps[0]["temporal"][N:], alone[0]["temporal"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(maps[0]["spatial"][T:], alone[0]["spatial"], atol=1e-6, rtol=1e-5)


def test_nothing_recorded_outside_and_maps_carry_gradients():
    model = _tiny_model("divided_space_time").requires_grad_(True)
    x = _clip(1)
    with record_attention(model) as maps:
        logits = model(x)
    assert all(m.record is None for m in model.modules() if hasattr(m, "record"))
    spatial = maps[-1]["spatial"]
    assert spatial.requires_grad
    (grad,) = torch.autograd.grad(logits[0, logits[0].argmax()], spatial)
    assert grad.shape == spatial.shape and grad.abs().sum() > 0
    with torch.no_grad(), record_attention(model) as maps:
        model(x)
    assert not maps[0]["temporal"].requires_grad
    # A frozen model (as load_model returns it): the maps still carry gradients.
    model.requires_grad_(False)
    with record_attention(model) as maps:
        logits = model(x)
    (grad,) = torch.autograd.grad(logits[0, 0], maps[0]["temporal"])
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_last_layer_maps_equal_transformers(tmp_path, attention_type):
    transformers = pytest.importorskip("transformers", reason="transformers is an optional reference")
    config = transformers.TimesformerConfig(
        image_size=32, patch_size=8, num_frames=T, hidden_size=DIM, num_hidden_layers=2,
        num_attention_heads=HEADS, intermediate_size=96, num_labels=5, attention_type=attention_type,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = transformers.TimesformerForVideoClassification(config).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    reference.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    x = _clip()
    with torch.no_grad():
        theirs = reference.timesformer(pixel_values=x.transpose(1, 2), output_attentions=True).attentions[-1]
        with record_attention(model) as maps:
            model(x)
    ours = maps[-1]["joint" if attention_type == "joint_space_time" else "spatial"]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
