"""Reading PaddleVideo's list files: `path label` (videos) or `frame_dir num_frames label` (frames).

Paths are joined as PaddleVideo joins them: `os.path.join(data_prefix, path + suffix)`
for videos (an absolute path in the list stays absolute), `os.path.join(data_prefix,
frame_dir)` for frame folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError


@dataclass
class ListEntry:
    name: str  # as written in the list
    path: str  # with data_prefix (and suffix, for videos)
    label: int | None
    num_frames: int | None = None  # frames format only


def read_list(list_path: str | os.PathLike, data_prefix: str = "", suffix: str = "") -> tuple[str, list[ListEntry]]:
    """Return ("videos" or "frames", entries). A line with one field is a video without a label."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise UserError(f"{list_path}: list file not found")
    entries, widths = [], set()
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserError(f"{list_path}: not a text list (byte {err.start} is not UTF-8)") from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        widths.add(3 if len(fields) == 3 else 2)
        try:
            if len(fields) == 3:
                name, num_frames, label = fields[0], int(fields[1]), int(fields[2])
                entries.append(ListEntry(name, os.path.join(data_prefix, name), label, num_frames))
            elif len(fields) <= 2:
                label = int(fields[1]) if len(fields) == 2 else None
                entries.append(ListEntry(fields[0], os.path.join(data_prefix, fields[0] + suffix), label))
            else:
                raise ValueError
        except ValueError:
            raise UserError(f"{list_path} line {number}: expected `path label` or `frame_dir num_frames label`, got {line.strip()!r}") from None
    if len(widths) > 1:
        raise UserError(f"{list_path}: mixes `path label` and `frame_dir num_frames label` lines")
    if not entries:
        raise UserError(f"{list_path}: the list is empty")
    return ("frames" if widths == {3} else "videos"), entries
