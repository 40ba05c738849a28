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
from ...utils import first_line
from ..files import parse_int, read_text_lines

MAX_LABEL = 2**31 - 1  # labels become int64 tensors; beyond this a value is a typo
MAX_FRAMES = 10**7  # a frame folder of 10^7 images is ~4 days at 30 fps


@dataclass
class ListEntry:
    name: str  # as written in the list
    path: str  # with data_prefix (and suffix, for videos)
    label: int | None
    num_frames: int | None = None  # frames format only


def read_list(list_path: str | os.PathLike, data_prefix: str = "", suffix: str = "") -> tuple[str, list[ListEntry]]:
    """Return ("videos" or "frames", entries). A line with one field is a video without a label."""
    list_path = Path(list_path)
    entries, widths = [], set()
    for number, line in enumerate(read_text_lines(list_path), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{list_path} line {number}"
        widths.add(3 if len(fields) == 3 else 2)
        if len(fields) == 3:
            num_frames = parse_int(fields[1], where, "num_frames", 1, MAX_FRAMES)
            label = parse_int(fields[2], where, "label", 0, MAX_LABEL)
            entries.append(ListEntry(fields[0], os.path.join(data_prefix, fields[0]), label, num_frames))
        elif len(fields) <= 2:
            label = parse_int(fields[1], where, "label", 0, MAX_LABEL) if len(fields) == 2 else None
            entries.append(ListEntry(fields[0], os.path.join(data_prefix, fields[0] + suffix), label))
        else:
            raise UserError(f"{where}: expected `path label` or `frame_dir num_frames label`, got {first_line(line.strip(), 120)!r}")
    if len(widths) > 1:
        raise UserError(f"{list_path}: mixes `path label` and `frame_dir num_frames label` lines")
    if not entries:
        raise UserError(f"{list_path}: the list is empty")
    return ("frames" if widths == {3} else "videos"), entries
