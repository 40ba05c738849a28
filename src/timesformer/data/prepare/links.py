"""Link lists in PaddleVideo's `train_link.list` style: one URL per line.

A line may carry the file's sha256 after the URL (`URL SHA256`); blank lines and lines
starting with `#` are skipped. Each file is saved under its URL's file name.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...download import DownloadItem, file_name_from_url
from ...errors import UserError
from ...utils import first_line
from ..files import read_text_lines


def read_link_list(path: str | Path, out_dir: str | Path) -> list[DownloadItem]:
    path, out_dir = Path(path), Path(out_dir)
    items = []
    for number, line in enumerate(read_text_lines(path, "link list"), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) > 2 or (len(fields) == 2 and not re.fullmatch(r"[0-9a-fA-F]{64}", fields[1])):
            raise UserError(f"{path} line {number}: expected `URL [SHA256]`, got {first_line(line.strip(), 120)!r}")
        name = file_name_from_url(fields[0], where=f"{path} line {number}")
        items.append(DownloadItem(fields[0], out_dir / name, fields[1] if len(fields) == 2 else None))
    if not items:
        raise UserError(f"{path}: no URLs in the link list")
    return items
