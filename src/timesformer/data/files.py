"""Which files are videos, and finding them under a folder: the one place for both."""

from __future__ import annotations

import os
from pathlib import Path

# Preference order: when one clip exists in several containers (`x.mp4`, `x.webm`), the
# first listed is taken (Kinetics downloaders save whichever YouTube served).
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")


def is_video_file(path: str | os.PathLike) -> bool:
    """True when the name ends in a video extension (any case); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def find_videos(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Every regular file with a video extension under `root` (or directly in it), sorted.

    Hidden files (a leading dot: partial downloads, atomic-write temporaries) are left out.
    """
    root = Path(root)
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in candidates if is_video_file(p) and not p.name.startswith(".") and p.is_file())


def count_frames(frame_dir: str | os.PathLike) -> int:
    """Images in a PaddleVideo frame folder (`img_00001.jpg` ...); 0 when it cannot be listed."""
    try:
        return sum(1 for name in os.listdir(frame_dir) if name.startswith("img_"))
    except OSError:
        return 0
