"""`data check LIST`: read every entry of a list, in parallel, and say what is wrong.

A video is read twice: with `read_clip(mode="test")`, exactly as `timesformer test` and
`predict` read it, and (unless `full=False`) decoded to its end, because training's
random windows reach the whole file and a truncated download often reads fine at its
start: a video that decodes clearly fewer frames than its header promises is reported
as truncated. A frame folder is read with `read_frames` and must hold its `num_frames`
images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError, VideoReadError
from ...utils import first_line
from . import check_workers, default_workers, ordered_map
from .lists import ListEntry, read_list


MAX_NUM_SEG = 1024  # frames per clip: TimeSformer-L reads 96


@dataclass
class CheckReport:
    total: int
    broken: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) in list order


def check_entry(entry: ListEntry, kind: str, num_seg: int = 8, full: bool = True) -> str | None:
    """The reason `entry` cannot be read, or None when it reads."""
    from ..video import read_clip, read_frames

    try:
        if kind == "frames":
            read_frames(entry.path, entry.num_frames, num_seg)
            last = Path(entry.path) / f"img_{entry.num_frames:05d}.jpg"
            if not last.is_file():
                return f"the list gives {entry.num_frames} frames but {last.name} is missing"
        else:
            read_clip(entry.path, num_seg, "test")
            if full:
                _decode_to_end(entry.path)
    except VideoReadError as err:
        return err.reason
    return None


def _decode_to_end(path: str) -> None:
    import av

    from ..video import is_truncated, open_video

    decoded = 0
    try:
        with open_video(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            promised = stream.frames  # 0 when the container does not say
            for _ in container.decode(stream):
                decoded += 1
    except (av.FFmpegError, OSError, EOFError) as err:
        raise VideoReadError(path, f"decoding fails after frame {decoded}: {first_line(err)}") from None
    if is_truncated(decoded, promised):
        raise VideoReadError(path, f"truncated: the header promises {promised} frames, {decoded} decode")


def _check(job: tuple[ListEntry, str, int, bool]) -> str | None:
    return check_entry(*job)


def check_list(
    list_path: str | os.PathLike,
    data_prefix: str = "",
    suffix: str = "",
    workers: int | None = None,
    num_seg: int = 8,
    full: bool = True,
    progress: bool = True,
) -> CheckReport:
    from tqdm import tqdm

    if not 1 <= num_seg <= MAX_NUM_SEG:
        raise UserError(f"--num_seg {num_seg}: must be between 1 and {MAX_NUM_SEG}")
    kind, entries = read_list(list_path, data_prefix, suffix)
    workers = default_workers() if workers is None else check_workers(workers)
    jobs = [(entry, kind, num_seg, full) for entry in entries]
    report = CheckReport(len(entries))
    with tqdm(total=len(jobs), desc=f"check {Path(list_path).name}", unit=kind[:-1], disable=not progress) as bar:
        for entry, reason in zip(entries, ordered_map(_check, jobs, workers)):
            if reason is not None:
                report.broken.append((entry.path, reason))
                bar.write(f"{entry.path}: {reason}")
            bar.update()
    return report
