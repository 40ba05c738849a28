"""The files a dataset is made of: which are videos, finding them under a folder, counting
a frame folder's images, and reading the text files that list them (video lists, label
lists, link lists, annotations) with one set of checks: UTF-8 (a leading BOM dropped), no
control characters, numbers in ASCII digits and in range."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UserError

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


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_ASCII_INT = re.compile(r"[+-]?[0-9]+")


def read_text_lines(path: str | os.PathLike, what: str = "list file") -> list[str]:
    """The lines of a UTF-8 text file, a leading byte-order mark dropped (editors on Windows
    add one). Raises `UserError` naming the file and line for a missing or unreadable file,
    bytes that are not UTF-8, or a control character (NUL ...)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found" if not path.exists() else f"{path}: {what} is not a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read the {what} ({err.strerror or type(err).__name__})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(f"{path} line {line}: byte 0x{data[err.start]:02x} is not UTF-8; save the {what} as UTF-8 text") from None
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if bad := _CONTROL.search(line):
            raise UserError(f"{path} line {number}: control character {bad.group()!r} in the {what}")
    return lines


def parse_int(text: str, where: str, name: str, low: int, high: int) -> int:
    """`text` as an int in [low, high], ASCII digits only (Python's int() also takes `١٢`,
    `1_000` and 4000-digit numbers); `UserError` "`where`: `name` `text` ..." otherwise."""
    shown = text if len(text) <= 40 else text[:39] + "…"
    if not _ASCII_INT.fullmatch(text):
        raise UserError(f"{where}: {name} {shown!r} is not a whole number in ASCII digits")
    if len(text.lstrip("+-")) > 18:
        raise UserError(f"{where}: {name} {shown} is out of range [{low}, {high}]")
    value = int(text)
    if not low <= value <= high:
        raise UserError(f"{where}: {name} {value} is out of range [{low}, {high}]")
    return value
