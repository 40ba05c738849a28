"""The class names a predictor shows."""

from __future__ import annotations

import os

from ..data.labels import default_label_file, read_labels
from ..errors import UserError


def default_labels(num_classes: int, label_file: str | os.PathLike | None) -> list[str] | None:
    """The given label file, else the shipped Kinetics-400 names for a 400-class model, else none."""
    path = default_label_file(num_classes, label_file)
    if path is None:
        return None
    labels = read_labels(path)
    if len(labels) < num_classes:
        raise UserError(f"label file {label_file}: {len(labels)} names for a model with {num_classes} classes")
    return labels
