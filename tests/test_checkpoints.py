"""Checkpoint formats, safety, architecture inference, pretrained-ViT rules, `convert`."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from timesformer import build_model, load_model, save_model
from timesformer.cli import main
from timesformer.errors import CheckpointError
from timesformer.model.checkpoints import infer_config, load_weights, read_checkpoint, read_state_dict
from timesformer.model.safe_pickle import load_numpy_pickle

TINY = dict(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_frames=2, num_classes=5)


def _fixture_arrays(fixture: Path) -> dict:
    return load_numpy_pickle(fixture / "model.pdparams")


def _assert_fixture_logits(model, fixture: Path) -> None:
    ref = np.load(fixture / "ref.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(ref["x"]))
    np.testing.assert_allclose(logits.numpy(), ref["logits"], atol=1e-4, rtol=0)


# ---------- PaddleVideo .pdparams ----------


@pytest.mark.parametrize("protocol", [2, 5])
def test_pdparams_any_pickle_protocol(tmp_path, paddle_fixture, protocol):
    """Paddle writes protocols 2-4; protocol 2 stores bytes through _codecs.encode."""
    path = tmp_path / "model.pdparams"
    path.write_bytes(pickle.dumps(_fixture_arrays(paddle_fixture), protocol=protocol))
    _assert_fixture_logits(load_model(path, num_heads=4), paddle_fixture)


def test_pdparams_names_and_transposes(paddle_fixture):
    raw = _fixture_arrays(paddle_fixture)
    checkpoint = read_checkpoint(paddle_fixture / "model.pdparams")
    state = checkpoint.state
    assert "head.weight" in state and "blocks.1.temporal_fc.bias" in state
    assert checkpoint.ignored == ["StructuredToParameterName@@"]
    np.testing.assert_array_equal(state["head.weight"].numpy(), raw["head.fc.weight"].T)  # Linear: [in, out] -> [out, in]
    np.testing.assert_array_equal(state["blocks.0.attn.qkv.weight"].numpy(), raw["backbone.blocks.0.attn.qkv.weight"].T)
    np.testing.assert_array_equal(state["pos_embed"].numpy(), raw["backbone.pos_embed"])  # not a Linear
    np.testing.assert_array_equal(state["patch_embed.proj.weight"].numpy(), raw["backbone.patch_embed.proj.weight"])


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pdparams_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"backbone.cls_token": _Exploit(marker)}, protocol=2))
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    message = str(err.value)
    assert "evil.pdparams" in message and "system" in message and "\n" not in message
    assert not marker.exists()


def test_hostile_pyth_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pyth"
    torch.save({"model_state": {"model.cls_token": _Exploit(marker)}}, path)
    for reader in (load_model, read_state_dict):
        with pytest.raises(CheckpointError) as err:
            reader(path)
        assert "evil.pyth" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 1
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_model(garbage)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pdparams")
    unrelated = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(CheckpointError, match="resnet.pth.*cls_token"):
        load_model(unrelated)


@pytest.mark.parametrize(
    "index_text", ["{not json", "[1, 2]", '{"metadata": {}}', '{"weight_map": {"a": 3}}', '{"weight_map": {"a": "../x.bin"}}']
)
def test_broken_transformers_index_is_one_line(tmp_path, index_text):
    (tmp_path / "config.json").write_text('{"hidden_size": 64}')
    (tmp_path / "model.safetensors.index.json").write_text(index_text)
    with pytest.raises(CheckpointError, match="model.safetensors.index.json") as err:
        read_checkpoint(tmp_path)
    assert "\n" not in str(err.value)


# ---------- facebookresearch .pyth, plain state dicts, ours ----------


def test_official_pyth_layout(tmp_path, paddle_fixture):
    """facebookresearch saves {"model_state": {"model.<name>": tensor}, "optimizer_state", "epoch", "cfg"}."""
    state = read_state_dict(paddle_fixture / "model.pdparams")
    path = tmp_path / "checkpoint_epoch_00015.pyth"
    torch.save(
        {
            "epoch": 15,
            "model_state": {f"model.{name}": tensor for name, tensor in state.items()},
            "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.005}]},
            "cfg": "TIMESFORMER:\n  ATTENTION_TYPE: divided_space_time\n",
        },
        path,
    )
    _assert_fixture_logits(load_model(path, num_heads=4), paddle_fixture)


def test_plain_state_dict_with_ddp_prefix(tmp_path):
    model = build_model(**TINY, attention_type="joint_space_time").eval()
    path = tmp_path / "plain.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    loaded = load_model(path, num_heads=2)
    assert loaded.config.attention_type == "joint_space_time"
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_our_safetensors_round_trip(tmp_path, paddle_fixture):
    model = load_model(paddle_fixture / "model.pdparams", num_heads=4)
    path = save_model(model, tmp_path / "ours.safetensors", metadata={"epoch": 3})
    loaded = load_model(path)  # heads, eps, everything from the metadata
    assert loaded.config == model.config
    assert not list(tmp_path.glob(".*.tmp"))
    _assert_fixture_logits(loaded, paddle_fixture)


def test_convert_cli(tmp_path, paddle_fixture, capsys):
    dst = tmp_path / "tiny.safetensors"
    assert main(["convert", str(paddle_fixture / "model.pdparams"), str(dst), "--num_heads", "4"]) == 0
    out = capsys.readouterr().out
    assert "attention_type=divided_space_time" in out and "num_heads=4" in out and "num_frames=8" in out
    assert "StructuredToParameterName@@" in out  # the ignored key is named
    _assert_fixture_logits(load_model(dst), paddle_fixture)
    assert main(["convert", str(paddle_fixture / "model.pdparams"), str(tmp_path / "x.pth")]) == 1


# ---------- architecture inference and shape errors ----------


@pytest.mark.parametrize(
    "attention_type, expected",
    [("divided_space_time", "divided_space_time"), ("joint_space_time", "joint_space_time"), ("space_only", "space_only")],
)
def test_infer_config(attention_type, expected):
    model = build_model(img_size=48, patch_size=16, embed_dim=192, depth=3, num_heads=3, num_frames=16,
                        num_classes=101, mlp_ratio=2.0, qkv_bias=False, attention_type=attention_type)
    fields = infer_config(model.state_dict())
    assert fields["attention_type"] == expected
    assert (fields["img_size"], fields["patch_size"], fields["embed_dim"], fields["depth"]) == (48, 16, 192, 3)
    assert fields["num_heads"] == 3  # 192 // 64
    assert (fields["num_classes"], fields["mlp_ratio"], fields["qkv_bias"]) == (101, 2.0, False)
    assert fields.get("num_frames") == (None if expected == "space_only" else 16)


def test_shape_mismatch_names_key_and_shapes(paddle_fixture):
    with pytest.raises(CheckpointError) as err:
        load_model(paddle_fixture / "model.pdparams", num_heads=4, num_classes=101)
    message = str(err.value)
    assert "head.weight" in message and "[400, 96]" in message and "[101, 96]" in message and "\n" not in message


def test_load_weights_requires_exact_fit_for_timesformer_weights(tmp_path):
    path = save_model(build_model(**TINY), tmp_path / "a.safetensors")
    other = build_model(**{**TINY, "num_frames": 4})
    with pytest.raises(CheckpointError, match=r"time_embed.*\[1, 2, 32\].*\[1, 4, 32\]"):
        load_weights(other, path)
    same = build_model(**TINY)
    assert load_weights(same, path) == []
    torch.testing.assert_close(same.state_dict(), read_state_dict(path))


# ---------- ImageNet ViT inits ----------


def _timm_vit_state(grid: int, dim: int = 32, depth: int = 2, classes: int = 1000) -> dict[str, torch.Tensor]:
    """A timm-style image ViT (what timm and the ViT release name its parameters)."""
    g = torch.Generator().manual_seed(0)
    state = {
        "cls_token": torch.randn(1, 1, dim, generator=g),
        "pos_embed": torch.randn(1, grid * grid + 1, dim, generator=g),
        "patch_embed.proj.weight": torch.randn(dim, 3, 16, 16, generator=g),
        "patch_embed.proj.bias": torch.randn(dim, generator=g),
        "norm.weight": torch.randn(dim, generator=g),
        "norm.bias": torch.randn(dim, generator=g),
        "head.weight": torch.randn(classes, dim, generator=g),
        "head.bias": torch.randn(classes, generator=g),
    }
    for i in range(depth):
        for name, shape in [("norm1", (dim,)), ("attn.qkv", (3 * dim, dim)), ("attn.proj", (dim, dim)),
                            ("norm2", (dim,)), ("mlp.fc1", (4 * dim, dim)), ("mlp.fc2", (dim, 4 * dim))]:
            state[f"blocks.{i}.{name}.weight"] = torch.randn(*shape, generator=g)
            state[f"blocks.{i}.{name}.bias"] = torch.randn(shape[0], generator=g)
    return state


def test_imagenet_vit_init_rules(tmp_path):
    vit = _timm_vit_state(grid=2)
    path = tmp_path / "vit.pth"
    torch.save(vit, path)
    model = build_model(img_size=48, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_frames=4, num_classes=7)
    head_before, time_before = model.head.weight.clone(), model.time_embed.clone()
    left = load_weights(model, path)
    assert set(left) == {"time_embed", "head.weight", "head.bias", "blocks.1.temporal_fc.weight", "blocks.1.temporal_fc.bias",
                         "blocks.0.temporal_fc.weight", "blocks.0.temporal_fc.bias"}
    assert torch.equal(model.head.weight, head_before) and torch.equal(model.time_embed, time_before)
    for i in range(2):
        block = model.blocks[i]
        assert torch.equal(block.temporal_attn.qkv.weight, vit[f"blocks.{i}.attn.qkv.weight"])
        assert torch.equal(block.temporal_attn.proj.bias, vit[f"blocks.{i}.attn.proj.bias"])
        assert torch.equal(block.temporal_norm1.weight, vit[f"blocks.{i}.norm1.weight"])
        assert torch.equal(block.attn.qkv.weight, vit[f"blocks.{i}.attn.qkv.weight"])
    # pos grid 2x2 -> 3x3 by corner-aligned linear interpolation (scipy.ndimage.zoom order 1)
    old = vit["pos_embed"][0, 1:].reshape(2, 2, -1)
    new = model.pos_embed.detach()[0, 1:].reshape(3, 3, -1)
    torch.testing.assert_close(new[0, 0], old[0, 0])
    torch.testing.assert_close(new[2, 2], old[1, 1])
    torch.testing.assert_close(new[0, 1], (old[0, 0] + old[0, 1]) / 2)
    torch.testing.assert_close(new[1, 1], old.mean(dim=(0, 1)))
    torch.testing.assert_close(model.pos_embed.detach()[0, 0], vit["pos_embed"][0, 0])


def test_imagenet_vit_depth_mismatch_is_refused(tmp_path):
    path = tmp_path / "vit.safetensors"
    from safetensors.torch import save_file

    save_file(_timm_vit_state(grid=2, depth=3), str(path))
    with pytest.raises(CheckpointError, match="unexpected key 'blocks.2"):
        load_weights(build_model(**TINY), path)


def _to_jax_vit(state: dict[str, torch.Tensor], heads: int) -> dict[str, np.ndarray]:
    """The original ViT release's .npz layout, written from the timm layout."""
    n = {k: v.numpy() for k, v in state.items()}
    dim = n["cls_token"].shape[-1]
    out = {
        "cls": n["cls_token"], "Transformer/posembed_input/pos_embedding": n["pos_embed"],
        "embedding/kernel": n["patch_embed.proj.weight"].transpose(2, 3, 1, 0), "embedding/bias": n["patch_embed.proj.bias"],
        "Transformer/encoder_norm/scale": n["norm.weight"], "Transformer/encoder_norm/bias": n["norm.bias"],
        "head/kernel": n["head.weight"].T, "head/bias": n["head.bias"], "pre_logits/kernel": np.zeros((1,)),
    }
    for i in range(2):
        b, p = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        mha = b + "MultiHeadDotProductAttention_1/"
        out[b + "LayerNorm_0/scale"], out[b + "LayerNorm_0/bias"] = n[p + "norm1.weight"], n[p + "norm1.bias"]
        out[b + "LayerNorm_2/scale"], out[b + "LayerNorm_2/bias"] = n[p + "norm2.weight"], n[p + "norm2.bias"]
        for j, part in enumerate(("query", "key", "value")):
            w = n[p + "attn.qkv.weight"][j * dim:(j + 1) * dim]  # [out, in]
            out[mha + part + "/kernel"] = w.T.reshape(dim, heads, dim // heads)
            out[mha + part + "/bias"] = n[p + "attn.qkv.bias"][j * dim:(j + 1) * dim].reshape(heads, dim // heads)
        out[mha + "out/kernel"] = n[p + "attn.proj.weight"].T.reshape(heads, dim // heads, dim)
        out[mha + "out/bias"] = n[p + "attn.proj.bias"]
        for j in (0, 1):
            out[f"{b}MlpBlock_3/Dense_{j}/kernel"] = n[f"{p}mlp.fc{j + 1}.weight"].T
            out[f"{b}MlpBlock_3/Dense_{j}/bias"] = n[f"{p}mlp.fc{j + 1}.bias"]
    return out


def test_original_vit_npz(tmp_path):
    vit = _timm_vit_state(grid=2)
    path = tmp_path / "ViT-B_16.npz"
    np.savez(path, **_to_jax_vit(vit, heads=2))
    checkpoint = read_checkpoint(path)
    assert checkpoint.ignored == ["pre_logits/kernel"]
    assert checkpoint.state.keys() == vit.keys()
    for name, tensor in vit.items():
        torch.testing.assert_close(checkpoint.state[name], tensor, atol=0, rtol=0, msg=name)


def test_fine_tuning_weights_for_another_class_count_leave_the_head_at_init(tmp_path):
    # K400 weights (400 classes) fine-tuned on UCF101 (101): everything but the classifier loads.
    from timesformer.model.checkpoints import load_weights, save_model
    from timesformer.model.timesformer import build_model

    fields = dict(img_size=32, patch_size=16, embed_dim=64, depth=1, num_heads=2, num_frames=2)
    source = save_model(build_model(num_classes=5, **fields), tmp_path / "five.safetensors")
    target = build_model(num_classes=3, **fields)
    head_before = target.head.weight.clone()
    with pytest.raises(CheckpointError, match="head.weight"):  # testing needs the trained head
        load_weights(target, source)
    left = load_weights(target, source, new_head=True)
    assert sorted(left) == ["head.bias", "head.weight"]
    assert torch.equal(target.head.weight, head_before)
    saved = load_model(source).state_dict()
    assert all(torch.equal(value, saved[name]) for name, value in target.state_dict().items() if not name.startswith("head."))
