"""A checked eval-mode model and its inference spec from weights (+ an optional config)."""

from __future__ import annotations

import os
from typing import Sequence

from torch import nn

from ..errors import CheckpointError, UserError
from .spec import InferenceSpec

CHECKED_FIELDS = ("embed_dim", "depth", "num_classes", "patch_size", "attention_type")


def load_checked_model(
    weights: str | os.PathLike, config=None, overrides: Sequence[str] = ()
) -> tuple[nn.Module, InferenceSpec]:
    """An eval-mode model from `weights` and its inference spec.

    `config` (a YAML path or a loaded `Config`) decides the architecture, which must match
    the checkpoint's, and the test pipeline; without one both come from the checkpoint.
    """
    from ..model.checkpoints import load_model

    if config is None:
        if overrides:
            raise UserError(f"-o {overrides[0]}: overrides need a config (-c)")
        model = load_model(weights)
        return model, InferenceSpec.from_model(model.config.to_dict())

    if isinstance(config, (str, os.PathLike)):
        from ..engine.config import load_config

        config = load_config(config, overrides)
    wanted = config.model_config()
    # Weights record neither the head count (heads only split the width) nor the LayerNorm eps.
    model = load_model(weights, num_heads=wanted["num_heads"], norm_eps=wanted["norm_eps"])
    found = model.config.to_dict()
    for name in CHECKED_FIELDS:
        if found[name] != wanted[name]:
            raise CheckpointError(f"{weights}: the checkpoint has {name}={found[name]} but the config says {wanted[name]}")
    return model, InferenceSpec.from_config(config, found)
