"""Every TimeSformer / ViT checkpoint format -> one canonical state dict -> a model.

Formats (chosen by file extension, or a directory):
- PaddleVideo `.pdparams`: a pickle of numpy arrays, read by a restricted unpickler;
  Paddle's Linear weights are ``[in, out]`` and get transposed; `backbone.` / `head.fc.`.
- facebookresearch `.pyth` (``{"model_state": {"model.…"}}``), plain torch state dicts
  (`.pth`, `.pt`, `.bin`, …): `torch.load(weights_only=True)`.
- Hugging Face transformers: a directory with `config.json` and `model.safetensors`
  (possibly sharded) or `pytorch_model.bin`.
- timm-style ViT ImageNet weights (`.pth`, `.safetensors`) and the original ViT release
  (`.npz`, JAX names).
- Ours: `.safetensors` whose metadata key `timesformer_config` holds the model config.

Each file is read into a raw name -> array dict, then converted by the `_convert_<format>`
that its names identify (as timm's `checkpoint_filter_fn` dispatches); every value the file
states about the architecture goes through `TimeSformerConfig`'s checks before anything is
allocated. Fine-tuning surgery (a new head, resized embeddings, ViT -> TimeSformer) is in
`finetune.py`. Nothing read from a file is ever executed.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from ..utils import atomic_path, first_line
from .finetune import adapt_for_finetuning
from .safe_pickle import load_numpy_pickle
from .timesformer import TimeSformer, TimeSformerConfig, unwrap_model

CONFIG_METADATA_KEY = "timesformer_config"

_CANONICAL = re.compile(
    r"(cls_token|pos_embed|time_embed|patch_embed\.proj\.(weight|bias)"
    r"|blocks\.\d+\.(norm1|attn\.qkv|attn\.proj|temporal_norm1|temporal_attn\.qkv|temporal_attn\.proj"
    r"|temporal_fc|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
    r"|norm\.(weight|bias)|head\.(weight|bias))"
)

# Hugging Face transformers' TimeSformer names -> ours (after its `timesformer.` prefix).
_TRANSFORMERS_NAMES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.time_embeddings$", "time_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.temporal_attention\.attention\.qkv\.", r"blocks.\1.temporal_attn.qkv."),
    (r"^encoder\.layer\.(\d+)\.temporal_attention\.output\.dense\.", r"blocks.\1.temporal_attn.proj."),
    (r"^encoder\.layer\.(\d+)\.temporal_layernorm\.", r"blocks.\1.temporal_norm1."),
    (r"^encoder\.layer\.(\d+)\.temporal_dense\.", r"blocks.\1.temporal_fc."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
]

# Wrappers around the model's own names: DDP, facebookresearch.
_WRAPPERS = ("module.", "model.")


@dataclass
class Checkpoint:
    """A checkpoint in canonical names, with what its file says about the architecture."""

    state: dict[str, torch.Tensor]
    config: dict = field(default_factory=dict)  # TimeSformerConfig fields the file states
    ignored: list[str] = field(default_factory=list)  # entries that are not model weights
    source: str = ""  # which format it was read as


def _strip(name: str, prefixes: tuple[str, ...]) -> str:
    while name.startswith(prefixes):
        name = name[len(next(p for p in prefixes if name.startswith(p))) :]
    return name


def _convert_ours(name: str) -> str:
    """Ours, timm's ViT and facebookresearch's names (the latter behind `model.`)."""
    return _strip(name, _WRAPPERS)


def _convert_paddlevideo(name: str) -> str:
    name = _strip(name, _WRAPPERS + ("backbone.",))
    return "head." + name[len("head.fc.") :] if name.startswith("head.fc.") else name


def _convert_transformers(name: str) -> str:
    name = _strip(name, _WRAPPERS + ("timesformer.",))
    for pattern, replacement in _TRANSFORMERS_NAMES:
        name, count = re.subn(pattern, replacement, name)
        if count:
            break
    return name


def _name_converter(names: list[str]):
    """The `_convert_<format>` that these names identify."""
    stripped = [_strip(name, _WRAPPERS) for name in names]
    if any(name.startswith(("timesformer.", "embeddings.", "encoder.layer.")) for name in stripped):
        return _convert_transformers
    if any(name.startswith(("backbone.", "head.fc.")) for name in stripped):
        return _convert_paddlevideo
    return _convert_ours


def _canonicalize(raw: dict, source: str, path: Path, transpose_linear: bool = False) -> Checkpoint:
    """`raw` in canonical names; values that are not arrays or names that are not weights are
    listed as ignored, weights that are not floating point refused."""
    convert = _name_converter([str(name) for name in raw])
    state, ignored = {}, []
    for name, value in raw.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
            value = value[1]  # Paddle's (name, array) form
        canonical = convert(str(name))
        if not isinstance(value, (np.ndarray, torch.Tensor)) or not _CANONICAL.fullmatch(canonical):
            ignored.append(str(name))
            continue
        tensor = _float_tensor(value, str(name), path)
        if transpose_linear and canonical.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor.t().contiguous()  # Paddle Linear weights are [in, out]
        state[canonical] = tensor
    return Checkpoint(state, ignored=ignored, source=source)


def _float_tensor(value: np.ndarray | torch.Tensor, name: str, path: Path) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise CheckpointError(f"{path}: {name}: weights must be floating point, found {value.dtype}")
        return value
    if value.dtype.kind != "f" or value.dtype.fields is not None:
        raise CheckpointError(f"{path}: {name}: weights must be floating point, found numpy dtype {str(value.dtype)[:60]}")
    return torch.from_numpy(np.ascontiguousarray(value))


def _read_pdparams(path: Path) -> Checkpoint:
    raw = load_numpy_pickle(path)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a dict of arrays, found {type(raw).__name__}")
    return _canonicalize(raw, "PaddlePaddle .pdparams", path, transpose_linear=True)


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a paragraph; keep the line that names what was refused.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if re.search(r"unsupported|GLOBAL", line, re.IGNORECASE)), lines[-1] if lines else "")
        reason = reason.split(" Please use")[0]  # torch's advice to allowlist the callable is not for a CLI user
        if "Unsupported operand" in reason:  # random bytes, not a hostile pickle
            raise CheckpointError(f"{path}: not a torch checkpoint (neither a zip archive nor a pickle)") from None
        raise CheckpointError(f"{path}: refused to load (only tensors and plain containers are allowed): {reason}") from None
    # IndexError/KeyError: torch's weights-only unpickler on bytes that are no pickle.
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {first_line(err)}") from None


def _unwrap_state_dict(obj: object, path: Path) -> dict:
    """The model weights inside a training checkpoint (`model_state`, `state_dict`, `model`)."""
    while isinstance(obj, dict):
        for key in ("model_state", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        else:
            return obj
    raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")


def _read_torch(path: Path) -> Checkpoint:
    return _canonicalize(_unwrap_state_dict(_torch_load(path), path), "torch state dict", path)


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            raw = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file: {err}") from None
    if CONFIG_METADATA_KEY not in metadata:
        return _canonicalize(raw, "safetensors state dict", path)
    try:
        config = json.loads(metadata[CONFIG_METADATA_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: metadata {CONFIG_METADATA_KEY} is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: metadata {CONFIG_METADATA_KEY} must be a JSON object, found {type(config).__name__}")
    checkpoint = _canonicalize(raw, "timesformer safetensors", path)
    checkpoint.config = config
    return checkpoint


def _convert_jax_vit(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The original ViT release's names and layouts (as timm's `_load_weights` maps them)."""
    out = {
        "cls_token": arrays["cls"],
        "pos_embed": arrays["Transformer/posembed_input/pos_embedding"],
        "patch_embed.proj.weight": arrays["embedding/kernel"].transpose(3, 2, 0, 1),  # HWIO -> OIHW
        "patch_embed.proj.bias": arrays["embedding/bias"],
        "norm.weight": arrays["Transformer/encoder_norm/scale"],
        "norm.bias": arrays["Transformer/encoder_norm/bias"],
    }
    if arrays.get("head/kernel") is not None and arrays["head/kernel"].size:
        out["head.weight"], out["head.bias"] = arrays["head/kernel"].T, arrays["head/bias"]
    i = 0
    while f"Transformer/encoderblock_{i}/LayerNorm_0/scale" in arrays:
        src, dst = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        mha = src + "MultiHeadDotProductAttention_1/"
        dim = arrays[mha + "query/kernel"].shape[0]
        out[dst + "norm1.weight"] = arrays[src + "LayerNorm_0/scale"]
        out[dst + "norm1.bias"] = arrays[src + "LayerNorm_0/bias"]
        # q, k, v kernels are [D, heads, head_dim]; torch wants one [3D, D] matrix.
        out[dst + "attn.qkv.weight"] = np.concatenate(
            [arrays[f"{mha}{n}/kernel"].reshape(dim, -1).T for n in ("query", "key", "value")]
        )
        out[dst + "attn.qkv.bias"] = np.concatenate([arrays[f"{mha}{n}/bias"].reshape(-1) for n in ("query", "key", "value")])
        out[dst + "attn.proj.weight"] = arrays[mha + "out/kernel"].reshape(-1, dim).T
        out[dst + "attn.proj.bias"] = arrays[mha + "out/bias"]
        out[dst + "norm2.weight"] = arrays[src + "LayerNorm_2/scale"]
        out[dst + "norm2.bias"] = arrays[src + "LayerNorm_2/bias"]
        for j in (0, 1):
            out[dst + f"mlp.fc{j + 1}.weight"] = arrays[f"{src}MlpBlock_3/Dense_{j}/kernel"].T
            out[dst + f"mlp.fc{j + 1}.bias"] = arrays[f"{src}MlpBlock_3/Dense_{j}/bias"]
        i += 1
    return out


def _read_npz(path: Path) -> Checkpoint:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: not a readable .npz: {err}") from None
    if "Transformer/posembed_input/pos_embedding" not in arrays:
        return _canonicalize(arrays, ".npz state dict", path)
    try:
        mapped = _convert_jax_vit(arrays)
    except KeyError as err:
        raise CheckpointError(f"{path}: original-ViT .npz without key {err.args[0]!r} (hybrid ViTs are not supported)") from None
    checkpoint = _canonicalize(mapped, "original ViT .npz", path)
    used = {"cls", "embedding/kernel", "embedding/bias", "head/kernel", "head/bias"}
    checkpoint.ignored = [n for n in arrays if n not in used and not n.startswith("Transformer/")]
    return checkpoint


def _transformers_config(config: dict) -> dict:
    """TimeSformerConfig fields from a transformers `config.json`, values as the file has them
    (`TimeSformerConfig` checks them)."""
    names = {
        "image_size": "img_size",
        "patch_size": "patch_size",
        "num_channels": "in_chans",
        "num_frames": "num_frames",
        "hidden_size": "embed_dim",
        "num_hidden_layers": "depth",
        "num_attention_heads": "num_heads",
        "layer_norm_eps": "norm_eps",
        "qkv_bias": "qkv_bias",
        "attention_type": "attention_type",
    }
    fields = {ours: config[theirs] for theirs, ours in names.items() if theirs in config}
    for side in ("img_size", "patch_size"):  # transformers allows [height, width]: ours are square
        value = fields.get(side)
        if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
            fields[side] = value[0]
    return fields


def _read_json_object(file: Path) -> dict:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{file}: not readable JSON ({err})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{file}: expected a JSON object, found {type(value).__name__}")
    return value


def _shard_names(index_file: Path) -> list[str]:
    """The shard files a transformers `*.index.json` names: plain file names beside it."""
    weight_map = _read_json_object(index_file).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(name, str) and name and Path(name).name == name
                                                   for name in weight_map.values()):  # fmt: skip
        raise CheckpointError(f"{index_file}: weight_map must map weight names to shard file names in its folder")
    return sorted(set(weight_map.values()))


def _read_transformers_dir(path: Path) -> Checkpoint:
    config = _read_json_object(path / "config.json")
    raw: dict = {}
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index_name).exists():
            shards = _shard_names(path / index_name)
            break
    else:
        shards = [name for name in ("model.safetensors", "pytorch_model.bin") if (path / name).exists()][:1]
    if not shards:
        raise CheckpointError(f"{path}: a transformers directory needs model.safetensors or pytorch_model.bin")
    ignored: list[str] = []
    for shard in shards:
        part = _read_safetensors(path / shard) if shard.endswith(".safetensors") else _read_torch(path / shard)
        raw.update(part.state)
        ignored += part.ignored
    checkpoint = Checkpoint(raw, _transformers_config(config), ignored, "transformers directory")
    return checkpoint


def _resolve_source(path: str | Path) -> Path:
    """Where a checkpoint's files are: a local path as it is, a Hugging Face Hub id
    (`org/name`, see `model.hub`) as its downloaded, cached directory."""
    from .hub import resolve_weights

    return resolve_weights(path)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read any supported checkpoint into canonical names (see the module docstring)."""
    path = _resolve_source(path)
    if path.is_dir():
        if (path / "config.json").exists():
            return _read_transformers_dir(path)
        raise CheckpointError(f"{path}: a directory checkpoint must be a transformers one (config.json + weights)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    suffix = path.suffix.lower()
    if suffix in (".pdparams", ".pdparam"):
        return _read_pdparams(path)
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix == ".npz":
        return _read_npz(path)
    return _read_torch(path)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Canonical state dict of any supported checkpoint."""
    return read_checkpoint(path).state


def infer_config(state: dict[str, torch.Tensor]) -> dict:
    """`TimeSformerConfig` fields that the weights' names and shapes determine.

    Heads cannot be read from weights: ``embed_dim // 64`` (ViT's head width) is assumed.
    """
    for required, ndim in (("cls_token", 3), ("pos_embed", 3), ("patch_embed.proj.weight", 4), ("blocks.0.attn.qkv.weight", 2),
                           ("blocks.0.mlp.fc1.weight", 2)):  # fmt: skip
        if required not in state:
            raise CheckpointError(f"no {required!r} among the weights: not a TimeSformer or ViT checkpoint")
        if state[required].ndim != ndim or 0 in state[required].shape:
            raise CheckpointError(f"{required}: shape {list(state[required].shape)} is not a {ndim}-d weight")
    if "time_embed" in state and state["time_embed"].ndim != 3:
        raise CheckpointError(f"time_embed: shape {list(state['time_embed'].shape)} is not a 3-d weight")
    if "head.weight" in state and state["head.weight"].ndim != 2:
        raise CheckpointError(f"head.weight: shape {list(state['head.weight'].shape)} is not a 2-d weight")
    embed_dim = state["cls_token"].shape[-1]
    patch = state["patch_embed.proj.weight"]
    grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    if any(".temporal_" in name for name in state):
        attention_type = "divided_space_time"
    elif "time_embed" in state:
        attention_type = "joint_space_time"
    else:
        attention_type = "space_only"
    fields = {
        "img_size": grid * patch.shape[-1],
        "patch_size": patch.shape[-1],
        "in_chans": patch.shape[1],
        "embed_dim": embed_dim,
        "depth": 1 + max(int(name.split(".")[1]) for name in state if name.startswith("blocks.")),
        "num_heads": max(1, embed_dim // 64),
        "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "attention_type": attention_type,
    }
    if "head.weight" in state:
        fields["num_classes"] = state["head.weight"].shape[0]
    if "time_embed" in state:
        fields["num_frames"] = state["time_embed"].shape[1]
    return fields


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def _check_fit(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, may_miss: tuple = ()) -> None:
    """Every model key must be in `state` (except `may_miss`) with its shape, and nothing else."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            if name in may_miss:
                continue
            raise CheckpointError(f"{path}: missing key {name!r} (the model expects shape {_shape(tensor)})")
        if state[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: {name}: checkpoint shape {_shape(state[name])} does not fit the model's {_shape(tensor)}"
            )
    unexpected = [name for name in state if name not in expected]
    if unexpected:
        raise CheckpointError(f"{path}: unexpected key {unexpected[0]!r}: the model has no such parameter")


def _load_exact(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, may_miss: tuple = ()) -> list[str]:
    """Load `state` into `model` (see `_check_fit`); returns the model keys left as they were."""
    _check_fit(model, state, path, may_miss)
    model.load_state_dict(state, strict=False)
    return [name for name in model.state_dict() if name not in state]


def checkpoint_config(checkpoint: Checkpoint, path: str | Path, **overrides) -> TimeSformerConfig:
    """The architecture: inferred from the weights, then what the file states, then `overrides`."""
    try:
        fields = infer_config(checkpoint.state)
        fields.update(checkpoint.config)
        fields.update(overrides)
        return TimeSformerConfig.from_dict(fields)
    except (CheckpointError, ConfigError) as err:
        raise type(err)(f"{path}: {err}") from None


def model_from_checkpoint(checkpoint: Checkpoint, path: str | Path, **overrides) -> TimeSformer:
    config = checkpoint_config(checkpoint, path, **overrides)
    # Built on the meta device: initializing weights that the checkpoint replaces costs seconds.
    with torch.device("meta"):
        model = TimeSformer(config)
    _check_fit(model, checkpoint.state, Path(path))
    state = {name: tensor.to(torch.float32).contiguous() for name, tensor in checkpoint.state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def load_model(path: str | Path, **overrides) -> TimeSformer:
    """The model a checkpoint describes, ready for inference; `overrides` replace config fields.

    It is in eval mode with its parameters frozen, so a forward pass records no autograd graph
    (and takes the fused inference path) even outside `torch.no_grad()`. To fine-tune it,
    call `model.requires_grad_(True).train()`.
    """
    return model_from_checkpoint(read_checkpoint(path), path, **overrides).requires_grad_(False)


def load_weights(model: TimeSformer, path: str | Path, new_head: bool = False) -> list[str]:
    """Initialize `model` from a checkpoint (fine-tuning, `-w`); returns the keys left at init.

    TimeSformer weights must fit exactly; with `new_head`, a classifier for another number of
    classes is left at its init instead; image ViT weights follow the pretrained-ViT rules
    (see `finetune.py`).
    """
    path = _resolve_source(path)
    state, may_miss = adapt_for_finetuning(read_checkpoint(path).state, model, new_head)
    return _load_exact(model, state, path, may_miss)


def save_model(model: torch.nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Write our `.safetensors` (config JSON in metadata key `timesformer_config`), atomically."""
    from safetensors.torch import save_file

    model = unwrap_model(model)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    meta = {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in (metadata or {}).items()}
    meta[CONFIG_METADATA_KEY] = json.dumps(model.config.to_dict())
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path
