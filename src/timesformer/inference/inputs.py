"""What `-i/--input_file` names: a video, a folder of videos or a list file."""

from __future__ import annotations

import os
from pathlib import Path

from ..data.files import VIDEO_EXTENSIONS, find_videos, read_text_lines
from ..errors import UserError

LIST_EXTENSIONS = (".txt", ".list", ".csv")


def list_videos(input_path: str | os.PathLike) -> list[str]:
    """A video, a folder of videos (recursive, sorted) or a list file (`path [label]` lines).

    Paths in a list file that are relative and exist relative to the list's folder are
    taken from there; otherwise they are kept as written (and reported if unreadable).
    """
    text = str(input_path)
    path = Path(text)
    if path.is_dir():
        videos = [str(p) for p in find_videos(path)]
        if not videos:
            raise UserError(f"--input_file {text}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
        return videos
    if path.suffix.lower() in LIST_EXTENSIONS:
        if not path.is_file():
            raise UserError(f"--input_file {text}: list file not found")
        lines = read_text_lines(path, "--input_file list")  # UTF-8, a BOM dropped, no NUL
        videos = []
        for line in lines:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            entry = line.split()[0]
            beside = path.parent / entry
            videos.append(str(beside) if not Path(entry).is_absolute() and beside.exists() else entry)
        if not videos:
            raise UserError(f"--input_file {text}: the list file names no videos")
        return videos
    return [text]  # a single video; a missing or broken one is reported when it is decoded
