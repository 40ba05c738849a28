"""Windows along a long video, decoded in one pass.

A window `[start, start + S)` is sampled as the test pipeline samples a whole clip: `num_seg`
frames at `linspace(0, S * fps - 1, num_seg)` (truncated) from the window's first frame, then
the config's scale and crops. The video is decoded once, front to back; only the frames some
window samples are converted to RGB, and a window's frames are handed on (and forgotten) as
soon as its last one is decoded, so memory is bounded by the windows in flight, not by the
video's length.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import av
import numpy as np

from ..data.video import FrameFormatter, _count_packets, _frame_rate, is_truncated, open_video, require_video_file
from ..errors import UserError, VideoReadError
from ..utils import first_line

EPS = 1e-6  # float slack when a time lands on a frame boundary


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    frames: tuple[int, ...]  # the sampled frame indices (display order, from 0), num_seg of them


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    num_frames: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def check_window_args(window_s: float | None, stride_s: float | None) -> None:
    """One-line errors for `--window` / `--stride` values (before anything is opened)."""
    for flag, value in (("--window", window_s), ("--stride", stride_s)):
        if value is not None and not (math.isfinite(value) and 0 < value <= 1e6):
            raise UserError(f"{flag} {value}: must be a number of seconds > 0 (and at most 1e6)")
    if stride_s is not None and window_s is None:
        raise UserError("--stride needs --window")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame rate and frame count (header, else counted packets); `VideoReadError` naming the file."""
    path = require_video_file(path)
    try:
        with open_video(path) as container:
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            stream = container.streams.video[0]
            fps, frames = _frame_rate(stream), stream.frames
        if fps is None:
            raise VideoReadError(path, "the video stream has no frame rate")
        frames = frames or _count_packets(path)
    except (av.FFmpegError, OSError, EOFError) as err:
        raise VideoReadError(path, f"cannot decode: {first_line(err)}") from err
    if frames < 1:
        raise VideoReadError(path, "the video stream has no frames")
    return VideoInfo(fps, frames)


def sampled_frames(first: int, window_s: float, fps: float, num_seg: int, last: int | None = None) -> tuple[int, ...]:
    """The test pipeline's `num_seg` positions over a window of `window_s * fps` frames from `first`."""
    positions = first + np.clip(np.linspace(0, window_s * fps - 1, num_seg), 0, None).astype(np.int64)
    if last is not None:
        positions = np.minimum(positions, last)
    return tuple(int(p) for p in positions)


def fitting_windows(duration_s: float, window_s: float, stride_s: float) -> int:
    """How many windows at 0, stride, 2*stride, ... fit in `duration_s` (<= 0 when none does)."""
    return int(math.floor((duration_s - window_s) / stride_s + EPS)) + 1


def plan_windows(info: VideoInfo, window_s: float, stride_s: float | None, num_seg: int) -> list[Window]:
    """Windows at 0, stride, 2*stride, ... that fit in the video (one, clipped, if none fits)."""
    stride_s = window_s if stride_s is None else stride_s
    count = fitting_windows(info.duration_s, window_s, stride_s) if info.duration_s + EPS >= window_s else 0
    if count == 0:
        return [Window(0.0, info.duration_s, sampled_frames(0, info.duration_s, info.fps, num_seg, info.num_frames - 1))]
    windows = []
    for k in range(count):
        start = k * stride_s
        first = math.ceil(start * info.fps - EPS)
        frames = sampled_frames(first, window_s, info.fps, num_seg, info.num_frames - 1)
        windows.append(Window(start, start + window_s, frames))
    return windows


def iter_window_frames(path: str | os.PathLike, windows: list[Window]) -> Iterator[tuple[Window, list[np.ndarray]]]:
    """Each window with its sampled uint8 `[H, W, 3]` RGB frames, in order, from one decoding pass.

    A video that ends before its header says (truncated) gives the windows it reaches, their
    missing frames replaced by the last decoded one, as the test pipeline does; one that ends
    far earlier raises `VideoReadError` after those windows.
    """
    path = str(path)
    wanted: dict[int, list[int]] = defaultdict(list)  # frame index -> windows sampling it
    for w, window in enumerate(windows):
        for index in set(window.frames):
            wanted[index].append(w)
    held: list[dict[int, np.ndarray]] = [{} for _ in windows]
    needs = [len(set(window.frames)) for window in windows]
    last_wanted = max(wanted)
    next_window = 0
    decoded, last_frame = 0, None
    rgb = FrameFormatter()
    try:
        with open_video(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: whole frames in parallel
            for index, frame in enumerate(container.decode(stream)):
                decoded, last_frame = index + 1, frame
                for w in wanted.pop(index, ()):
                    held[w][index] = rgb(frame)
                while next_window < len(windows) and len(held[next_window]) == needs[next_window]:
                    window = windows[next_window]
                    yield window, [held[next_window][i] for i in window.frames]
                    held[next_window] = {}
                    next_window += 1
                if index >= last_wanted:
                    break
            last_rgb = rgb(last_frame) if last_frame is not None and next_window < len(windows) else None
    except (av.FFmpegError, OSError, EOFError) as err:
        raise VideoReadError(path, f"cannot decode: {first_line(err)}") from err
    if decoded == 0:
        raise VideoReadError(path, "the video stream has no decodable frames")
    for w in range(next_window, len(windows)):
        window = windows[w]
        if window.frames[0] >= decoded:
            promised = windows[-1].frames[-1] + 1
            if is_truncated(decoded, promised):
                raise VideoReadError(path, f"truncated or corrupt: decoded {decoded} of the {promised} frames its header promises")
            return
        yield window, [held[w].get(i, last_rgb) for i in window.frames]
