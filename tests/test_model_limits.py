"""Absurd sizes and types from a file or a flag: one line naming the file, key and value,
raised before anything is allocated."""

from __future__ import annotations

import json
import math
import pickle
import time

import numpy as np
import pytest
import torch

from timesformer import build_model, load_model, save_model
from timesformer.errors import CheckpointError, ConfigError, UserError
from timesformer.model.timesformer import TimeSformerConfig

TINY = dict(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_frames=2, num_classes=3)


def _one_line_error(call, *needles: str, error=UserError) -> str:
    start = time.perf_counter()
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    for needle in needles:
        assert needle in message, (needle, message)
    assert time.perf_counter() - start < 5, "an absurd value must be refused, not attempted"
    return message


BAD_FIELDS = [
    # (field, value, words the message must hold)
    ("depth", 10**9, "[1, 64]"),
    ("depth", 0, "[1, 64]"),
    ("depth", "12", "not an integer"),
    ("depth", 12.0, "not an integer"),
    ("depth", True, "not an integer"),
    ("depth", None, "not an integer"),
    ("embed_dim", -768, "outside"),
    ("embed_dim", 10**6, "outside"),
    ("num_heads", 0, "outside"),
    ("num_heads", -4, "outside"),
    ("num_heads", 5, "does not divide"),
    ("num_heads", [12], "not an integer"),
    ("num_frames", 10**7, "outside"),
    ("img_size", 10**6, "outside"),
    ("img_size", 100, "not a multiple"),
    ("patch_size", 0, "outside"),
    ("num_classes", 0, "outside"),
    ("mlp_ratio", math.inf, "not finite"),
    ("mlp_ratio", math.nan, "not finite"),
    ("mlp_ratio", 0, "outside"),
    ("mlp_ratio", 1e9, "outside"),
    ("mlp_ratio", "4", "not a number"),
    ("drop_rate", 1.0, "outside"),
    ("drop_path_rate", -0.1, "outside"),
    ("attn_drop_rate", math.nan, "not finite"),
    ("norm_eps", 0, "outside"),
    ("norm_eps", math.inf, "not finite"),
    ("qkv_bias", "false", "not true or false"),
    ("qkv_bias", 1, "not true or false"),
    ("attention_type", "divided", "not one of"),
    ("attention_type", 3, "not one of"),
]


@pytest.mark.parametrize("field, value, words", BAD_FIELDS)
def test_config_refuses_bad_values_in_one_line(field, value, words):
    """`build_model(**fields)` and `-o` overrides go through the same checks."""
    _one_line_error(lambda: build_model(**{**TINY, field: value}), f"{field}:", words, error=ConfigError)


def test_config_bounds_the_parameter_count():
    # Each field in range, together 77 billion weights: refused from the closed form.
    config = dict(depth=64, embed_dim=8192, num_heads=64)
    message = _one_line_error(lambda: TimeSformerConfig(**config), "parameters", error=ConfigError)
    assert "not a real model" in message
    # The closed form is the model's real count.
    for attention_type in ("divided_space_time", "joint_space_time", "space_only"):
        fields = {**TINY, "attention_type": attention_type, "qkv_bias": attention_type != "space_only"}
        model = build_model(**fields)
        assert model.config.parameter_count() == sum(p.numel() for p in model.parameters())


def test_config_from_something_else_than_an_object():
    for fields in ([1, 2], "depth=3", 12, None):
        _one_line_error(lambda fields=fields: TimeSformerConfig.from_dict(fields), "TimeSformerConfig", error=ConfigError)
    _one_line_error(lambda: TimeSformerConfig.from_dict({"dpeth": 3}), "'dpeth'", "not a TimeSformerConfig field", error=ConfigError)


def _with_metadata(tmp_path, config_json: str):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    tensors = {name: t.contiguous() for name, t in build_model(**TINY).state_dict().items()}
    save_file(tensors, str(path), metadata={"timesformer_config": config_json})
    return path


@pytest.mark.parametrize(
    "config_json, words",
    [
        (json.dumps({**TINY, "depth": 10**9}), "depth: 1000000000"),
        (json.dumps({**TINY, "num_heads": 0}), "num_heads: 0"),
        (json.dumps({**TINY, "num_heads": "2"}), "num_heads: '2'"),
        (json.dumps({**TINY, "drop_path_rate": float("nan")}), "drop_path_rate: nan"),
        (json.dumps({**TINY, "mlp_ratio": float("inf")}), "mlp_ratio: inf"),
        (json.dumps({**TINY, "embed_dim": 2**40}), "embed_dim:"),
        (json.dumps([1, 2, 3]), "must be a JSON object"),
        (json.dumps("depth"), "must be a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_our_checkpoint_metadata_is_checked(tmp_path, config_json, words):
    path = _with_metadata(tmp_path, config_json)
    _one_line_error(lambda: load_model(path), "model.safetensors", words)


@pytest.mark.parametrize(
    "key, value",
    [("num_hidden_layers", 10**9), ("num_attention_heads", 0), ("hidden_size", "32"), ("layer_norm_eps", float("nan")),
     ("num_frames", -2), ("image_size", [32, 48])],
)  # fmt: skip
def test_transformers_config_json_is_checked(tmp_path, key, value):
    model = build_model(**TINY)
    save_model(model, tmp_path / "ours.safetensors")
    directory = tmp_path / "hf"
    directory.mkdir()
    from safetensors.torch import save_file

    # transformers' names for the weights are not needed: the config is read and checked first.
    save_file({n: t.contiguous() for n, t in model.state_dict().items()}, str(directory / "model.safetensors"))
    config = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 16,
              "num_frames": 2, key: value}  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config))
    _one_line_error(lambda: load_model(directory), "hf")


def _npz_with(tmp_path, name: str, array: np.ndarray):
    state = {n: t.numpy() for n, t in build_model(**TINY).state_dict().items()}
    state[name] = array
    path = tmp_path / "weights.npz"
    np.savez(path, **state)
    return path


@pytest.mark.parametrize(
    "array",
    [np.array(["a", "b"]), np.zeros(3, dtype=[("x", "f4"), ("y", "i4")]), np.arange(6, dtype=np.int64).reshape(2, 3),
     np.array([b"xy"])],
)  # fmt: skip
def test_npz_weights_that_are_not_floats(tmp_path, array):
    path = _npz_with(tmp_path, "cls_token", array)
    _one_line_error(lambda: load_model(path), "weights.npz", "cls_token", error=CheckpointError)


class _Call:
    """Pickles as ``func(*args)``: what a hostile file can ask the unpickler to do."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(
    "payload, words",
    [
        # 10^7 x 10^7 floats (400 TB) asked for before any data: refused from the shape.
        (_Call(np._core.multiarray._reconstruct, (np.ndarray, (10**7, 10**7), b"f")), "shape"),
        (_Call(np._core.multiarray._reconstruct, (np.ndarray, (10**5, 10**5), b"f")), "shape"),
        (_Call(np.ndarray, ((10**7, 10**7),)), "ndarray"),
        (_Call(np.dtype, ("O",)), "objects"),
        (np.array(["x", "y"]), "floating point"),
        (np.zeros(2, dtype=[("a", "f4")]), "floating point"),
        (np.arange(4), "floating point"),
    ],
)
def test_pdparams_asking_for_absurd_or_wrong_arrays(tmp_path, payload, words):
    state = {f"backbone.{n}": t.numpy() for n, t in build_model(**TINY).state_dict().items()}
    state["backbone.cls_token"] = payload
    path = tmp_path / "model.pdparams"
    path.write_bytes(pickle.dumps(state, protocol=2))
    _one_line_error(lambda: load_model(path), "model.pdparams", words, error=CheckpointError)


def test_absurd_weight_shapes_are_refused_before_building(tmp_path):
    """Names that ask for depth 10^9 or shapes that are not weights: refused by the config
    checks, not by running out of memory while building."""
    state = build_model(**TINY).state_dict()
    for name, tensor in [("blocks.999999999.norm2.bias", torch.zeros(32)), ("pos_embed", torch.zeros(5)),
                         ("patch_embed.proj.weight", torch.zeros(32, 3, 16))]:  # fmt: skip
        path = tmp_path / "weights.pth"
        torch.save({**state, name: tensor}, path)
        _one_line_error(lambda: load_model(path), "weights.pth")
