"""Which class names a report shows: the one lookup order for `test --report`."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError


def report_class_names(
    num_classes: int,
    label_file: str | os.PathLike | None = None,
    list_file: str | os.PathLike | None = None,
    checkpoint_names: list[str] | None = None,
) -> list[str]:
    """Class names by id: `label_file` if given, else the checkpoint's own (a transformers
    `config.json`'s `id2label`), else `labels.txt` beside the list (what `data folder` and
    `data synth` write), else the shipped Kinetics-400 names for 400 classes, else the ids."""
    from ..data.labels import default_label_file, read_labels

    if label_file is None and checkpoint_names is not None:
        names, source = list(checkpoint_names), "the checkpoint's id2label"
    else:
        beside_list = Path(list_file).parent / "labels.txt" if list_file else None
        if label_file is None and beside_list is not None and beside_list.is_file():
            label_file = beside_list
        path = default_label_file(num_classes, label_file)
        if path is None:
            return [str(i) for i in range(num_classes)]
        names, source = read_labels(path), f"label file {path}"
    if len(names) != num_classes:
        raise UserError(f"{source}: {len(names)} class names for a model with {num_classes} classes")
    return names
