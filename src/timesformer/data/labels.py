"""Class-name lists: `id name` lines (PaddleVideo's Kinetics-400 list, `data synth` labels.txt)
or one name per line. The Kinetics-400 list ships with the package."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import UserError
from .files import parse_int, read_text_lines


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names by id from `id name` lines or one name per line."""
    lines = [line.strip() for line in read_text_lines(path, "label file") if line.strip()]
    if not lines:
        raise UserError(f"{path}: the label file is empty")
    pairs = [line.split(maxsplit=1) for line in lines]
    if all(len(p) == 2 and p[0].isascii() and p[0].isdigit() for p in pairs):
        # ids index a list: bounded by the line count, so a stray `99999999 name` cannot
        # make a list of a hundred million names.
        names = {parse_int(i, f"{path}", "class id", 0, len(pairs)): name for i, name in pairs}
        return [names.get(i, str(i)) for i in range(max(names) + 1)]
    return lines


def kinetics400_label_file() -> Path:
    return Path(str(resources.files("timesformer") / "resources" / "Kinetics-400_label_list.txt"))


def default_label_file(num_classes: int, label_file: str | os.PathLike | None = None) -> Path | None:
    """The one default for class names: the given file, else the shipped Kinetics-400 list
    for a 400-class model, else None (classes are shown by id)."""
    if label_file is not None:
        return Path(label_file)
    return kinetics400_label_file() if num_classes == 400 else None
