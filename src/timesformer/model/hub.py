"""Hugging Face Hub ids (`facebook/timesformer-base-finetuned-k400`) as weights.

An id resolves to a local transformers directory (`config.json` + weights) through
`huggingface_hub` (the optional `hub` extra), so its cache, its offline mode (`HF_HUB_OFFLINE=1`)
and its endpoint (`HF_ENDPOINT`) apply as they do for every Hugging Face library. A path that
exists locally is always a path; `org/name` is an id only when no such file or folder exists and
it does not end like a checkpoint file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import CheckpointError, UserError
from ..utils import first_line

# `org/name` or `org/name@revision`, as the Hub spells repository names.
_HUB_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})(?:@(?P<rev>[A-Za-z0-9_./-]{1,200}))?$"
)
_CHECKPOINT_SUFFIXES = (".pdparams", ".pdparam", ".pth", ".pyth", ".pt", ".bin", ".safetensors", ".npz", ".ckpt")
# What a TimeSformer repository needs; README, ONNX files, TF / Flax weights are not fetched.
_FILES = ["config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
_TORCH_FALLBACK = ["config.json", "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]


def parse_hub_id(text: str | os.PathLike) -> tuple[str, str | None] | None:
    """(repo id, revision or None) when `text` names a Hub repository rather than a local path."""
    text = os.fspath(text)
    match = _HUB_ID.match(text)
    if match is None or Path(text).exists() or text.lower().endswith(_CHECKPOINT_SUFFIXES):
        return None
    return match["repo"], match["rev"]


def resolve_hub_id(repo_id: str, revision: str | None = None, local_dir: Path | None = None) -> Path:
    """The local directory holding `repo_id`'s config and weights, downloaded into the Hub cache
    (or `local_dir`) when not there yet (nothing is downloaded under `HF_HUB_OFFLINE=1`)."""
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise UserError(f"{repo_id}: a Hugging Face Hub id needs huggingface_hub: pip install 'timesformer[hub]'") from None

    where = f"{repo_id}" + (f"@{revision}" if revision else "")

    def fetch(patterns: list[str]) -> Path:
        return Path(huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_dir=local_dir))

    try:
        directory = fetch(_FILES)
        if not (directory / "config.json").is_file():
            raise CheckpointError(f"{where}: the repository has no config.json (not a transformers model)")
        if not any(directory.glob("model*.safetensors")):  # older repositories: PyTorch pickles only
            directory = fetch(_TORCH_FALLBACK)
    except hub_errors.RepositoryNotFoundError:
        raise CheckpointError(f"{where}: no such repository on the Hub (or it is private: log in with `hf auth login`)") from None
    except hub_errors.RevisionNotFoundError:
        raise CheckpointError(f"{where}: no such revision on the Hub") from None
    except hub_errors.LocalEntryNotFoundError:
        raise CheckpointError(f"{where}: not in the Hugging Face cache and the Hub cannot be reached "
                              "(offline mode, or no network); download it once online") from None  # fmt: skip
    except hub_errors.HfHubHTTPError as err:
        raise CheckpointError(f"{where}: the Hub answered {first_line(err)}") from None
    return directory


def resolve_weights(path: str | os.PathLike) -> Path:
    """A local checkpoint path as it is; a Hub id as its downloaded (cached) directory."""
    hub = parse_hub_id(path)
    return resolve_hub_id(*hub) if hub else Path(path)


def checkpoint_class_names(path: str | os.PathLike | None) -> list[str] | None:
    """Class names from a transformers checkpoint's `config.json` `id2label` (a local directory
    or a Hub id), in id order; None for other checkpoints or when it has none."""
    if path is None:
        return None
    directory = resolve_weights(path)
    config_file = directory / "config.json"
    if not (directory.is_dir() and config_file.is_file()):
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_file}: not readable JSON ({first_line(err)})") from None
    id2label = config.get("id2label") if isinstance(config, dict) else None
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        by_id = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise CheckpointError(f"{config_file}: id2label keys must be class ids (0, 1, ...)") from None
    if sorted(by_id) != list(range(len(by_id))):
        raise CheckpointError(f"{config_file}: id2label must number its classes 0..{len(by_id) - 1} without gaps")
    return [by_id[i] for i in range(len(by_id))]
