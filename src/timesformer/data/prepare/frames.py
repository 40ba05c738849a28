"""`data extract-frames`: videos -> `img_00001.jpg …` folders + a PaddleVideo frames list.

Input is a video list (`path label`, joined with `data_prefix` and `suffix` as PaddleVideo
joins them) or a folder of videos. Each video `A/b.avi` becomes the folder `OUT/A/b/`
(the list's name without its extension; `frame_dir` in PaddleVideo's frames list). The
list `OUT/frames.list` holds `frame_dir num_frames label`. For a folder input, labels are
the 0-based index of each video's top-level sub-folder in sorted order (ImageFolder's
convention), written to `OUT/labels.txt`.

Frames are every decoded frame, JPEG-encoded by FFmpeg's mjpeg encoder at quality 2
(as `ffmpeg -q:v 2`). A video's folder is filled under a hidden temporary name and
renamed when complete, so an interrupted run never leaves a short folder, and a rerun
skips the folders already there.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from ...errors import UserError
from ...utils import atomic_write_text, first_line
from ..files import VIDEO_EXTENSIONS, count_frames, find_videos
from . import check_workers, default_workers, ordered_map
from .lists import read_list

JPEG_QUALITY = 2  # FFmpeg qscale: 2 is near-lossless, 31 is worst


@dataclass
class FramesSummary:
    list_path: Path
    written: int = 0
    frames: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)


def extract_video_frames(video: str, frame_dir: Path) -> int:
    """Write every frame of `video` as `frame_dir/img_%05d.jpg` (1-based); return the count."""
    import av

    from ...errors import VideoReadError
    from ..video import FrameFormatter, open_video

    if frame_dir.is_dir():
        return count_frames(frame_dir)
    if not Path(video).is_file():
        raise VideoReadError(video, "file not found")
    scratch = frame_dir.with_name(f".{frame_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    count = 0
    try:
        with open_video(video) as container:
            if not container.streams.video:
                raise VideoReadError(video, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            encoder = None
            to_jpeg_format = FrameFormatter("yuvj420p")
            for frame in container.decode(stream):
                if encoder is None:
                    encoder = av.CodecContext.create("mjpeg", "w")
                    encoder.width, encoder.height = frame.width, frame.height
                    encoder.pix_fmt = "yuvj420p"
                    encoder.time_base = Fraction(1, 25)
                    encoder.options = {"flags": "+qscale", "global_quality": str(JPEG_QUALITY * 118)}
                count = _save_jpegs(encoder.encode(to_jpeg_format.frame(frame)), scratch, count)
            if encoder is not None:
                count = _save_jpegs(encoder.encode(None), scratch, count)
        if count == 0:
            raise VideoReadError(video, "no decodable frames")
        os.replace(scratch, frame_dir)
    except (av.FFmpegError, OSError, EOFError) as err:
        raise VideoReadError(video, f"cannot decode after frame {count}: {first_line(err)}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return count


def _save_jpegs(packets, folder: Path, count: int) -> int:
    for packet in packets:
        count += 1
        (folder / f"img_{count:05d}.jpg").write_bytes(bytes(packet))
    return count


def _frame_dir_name(name: str, list_dir: Path) -> str:
    """Where a listed video's frames go under OUT: its list name without extension
    (absolute names relative to the list's folder when inside it)."""
    path = Path(name).with_suffix("")
    if path.is_absolute():
        try:
            path = path.relative_to(list_dir.resolve())
        except ValueError:
            path = path.relative_to(path.anchor)
    return path.as_posix()


def _extract(job: tuple[str, Path]) -> tuple[int, str | None]:
    from ...errors import VideoReadError

    try:
        return extract_video_frames(*job), None
    except VideoReadError as err:
        return 0, err.reason


def _videos_in_folder(folder: Path) -> tuple[list[tuple[str, str, int]], list[str]]:
    """[(video path, frame_dir name, label)] and the class names, for a folder of videos."""
    videos = find_videos(folder)
    classes = sorted({p.relative_to(folder).parts[0] for p in videos if len(p.relative_to(folder).parts) > 1})
    index = {name: i for i, name in enumerate(classes)}
    entries = []
    for p in videos:
        rel = p.relative_to(folder)
        entries.append((str(p), rel.with_suffix("").as_posix(), index.get(rel.parts[0], 0) if len(rel.parts) > 1 else 0))
    return entries, classes


def extract_frames(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    data_prefix: str = "",
    suffix: str = "",
    workers: int | None = None,
    progress: bool = True,
) -> FramesSummary:
    from tqdm import tqdm

    source, out = Path(source), Path(out_dir)
    workers = default_workers() if workers is None else check_workers(workers)
    if source.is_dir():
        entries, classes = _videos_in_folder(source)
        if not entries:
            raise UserError(f"{source}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
        if classes:
            atomic_write_text(out / "labels.txt", "".join(f"{i} {name}\n" for i, name in enumerate(classes)))
    elif source.is_file():
        kind, listed = read_list(source, data_prefix, suffix)
        if kind != "videos":
            raise UserError(f"{source}: is already a frames list (`frame_dir num_frames label`)")
        entries = [(e.path, _frame_dir_name(e.name, source.parent), -1 if e.label is None else e.label) for e in listed]
    else:
        raise UserError(f"{source}: no such video list or folder")

    summary = FramesSummary(out / "frames.list")
    jobs = [(video, out / frame_dir) for video, frame_dir, _ in entries]
    lines = []
    results = ordered_map(_extract, jobs, workers)
    with tqdm(total=len(jobs), desc="extract frames", unit="video", disable=not progress) as bar:
        for (video, frame_dir, label), (count, error) in zip(entries, results):
            if error is None:
                lines.append(f"{frame_dir} {count} {label}\n")
                summary.frames += count
            else:
                summary.failed.append((video, error))
                bar.write(f"{video}: {error}")
            bar.update()
    atomic_write_text(summary.list_path, "".join(lines))
    summary.written = len(lines)
    return summary
