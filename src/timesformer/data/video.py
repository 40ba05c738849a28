"""Decode the frames a clip needs, exactly as PaddleVideo's `VideoDecoder(backend="pyav")`
+ `Sampler(linspace_sample=True)` would pick them, without PaddleVideo's cost.

PaddleVideo decodes a window of `clip = sampling_rate * num_seg / target_fps * fps` frames
(plus one past it), converts *every* one to RGB, and keeps `num_seg` of them at positions
`linspace(0, clip - 1, num_seg)` clipped to the number of kept frames. Those positions
are known before decoding (only the clip waits for the count), so:

- where the container stores each packet's pts (MP4/MOV, Matroska) and the codec makes a
  frame of every packet (H.264, HEVC, MPEG-4/2/1), the kept frames and their order are
  read from the packets, the decoder skips every frame nobody refers to unless it is
  sampled (FFmpeg's skip_frame="NONREF"), and decoding stops at the last sampled frame;
  if the decoded frames do not match that plan, we fall back to:
- decoding the window and converting only the sampled frames to RGB (plus the last kept
  frame, which clipped positions repeat), dropping the rest as soon as they arrive. If
  the decoder's output is not in strictly increasing pts order (PaddleVideo sorts by pts,
  a duplicate pts overwriting), the window is decoded once more keeping every frame.

With two cores or more, a helper thread converts the sampled frames (RGB, then the
caller's scaling) while FFmpeg decodes the next ones (`split_decode_threads`). FFmpeg's own
log lines stay hidden: PyAV leaves them off unless the user calls `av.logging.set_level`.
"""

from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from timesformer.errors import UserError, VideoReadError
from timesformer.utils import first_line

MODES = ("train", "valid", "test")
# PaddleVideo seeks this many pts units before the window start (then drops earlier frames).
SEEK_MARGIN = 1024
# Where decoding can be planned from the packets: containers whose demuxer gives each packet
# a pts (AVI's are the frame index in decoding order, which the decoder reorders like any
# other; raw streams have none) and codecs that make one frame of each packet (VP8/VP9/AV1
# may hold frames that are never shown). Where the decoder's frames do not match the plan
# (a packed-B-frame AVI), `_decode_planned` says so and the plain pass decodes.
PTS_CONTAINERS = {"mov", "mp4", "matroska", "webm", "avi"}
ONE_FRAME_PER_PACKET_CODECS = {"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"}
# H.264 / HEVC reorder at most 16 frames: how far decoding order runs ahead of display order.
MAX_REORDER = 16
# Fewest packets worth jumping over: a jump drains the decoder's frame threads, which
# costs about as much as decoding a few frames (measured with 2 threads on 640x272 H.264).
MIN_JUMP = 16
# See `is_truncated`.
TRUNCATED_SHARE = 0.75
# What a file may ask us to allocate, checked against its header before decoding: a frame
# (8K UHD is 33 M pixels) and the RGB frames held at once (a clip, or a window kept whole
# to sort frames whose pts arrive out of order).
MAX_FRAME_PIXELS = 8192 * 8192
MAX_HELD_BYTES = 4 << 30


@dataclass
class _Window:
    """What to keep from one decoding pass: pts window and wanted positions in kept order."""

    start_pts: float
    end_pts: float
    positions: np.ndarray  # int64 [num_seg], possibly >= kept count (then: the last frame)
    threads: int = 0  # FFmpeg threads for the pass; 0: FFmpeg's choice


def linspace_positions(start: float, end: float, num_seg: int, num_frames: int) -> np.ndarray:
    """PaddleVideo's Sampler: `linspace(start, end, num_seg)` clipped to the frames, truncated."""
    return np.clip(np.linspace(start, end, num_seg), 0, num_frames - 1).astype(np.int64)


def _positions(start: float, end: float, num_seg: int) -> np.ndarray:
    """`linspace_positions` before the clip to the frame count, which decoding will tell.

    Positions at or past the count stand for the last frame (what the clip makes of them).
    """
    return np.clip(np.linspace(start, end, num_seg), 0, None).astype(np.int64)


def _start_end(num_frames: float, clip_size: float, mode: str, rng: np.random.Generator | None):
    """PaddleVideo's `get_start_end_idx` with one clip: random start in train/valid, 0 in test."""
    delta = max(num_frames - clip_size, 0)
    if mode == "test":
        start = 0.0
    else:
        if rng is None:
            raise ValueError(f"read_clip(mode={mode!r}) draws a random window and needs rng")
        start = float(rng.uniform(0, delta))
    return start, start + clip_size - 1


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a scheduler's or `taskset`'s share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class DataThreads:
    """How one process decodes: workers (DataLoader processes, or predict's decode threads) and
    threads per decode (`split_decode_threads`), within its share of the machine's cores
    (`data_threads`)."""

    workers: int  # decoding workers (0: the main process decodes)
    decode_threads: int  # cores per decode (0: every core); 1: no frame threads, no helper
    cores: int  # cores this process may run on
    local_ranks: int  # processes of the job on this machine (torchrun's LOCAL_WORLD_SIZE)

    def describe(self) -> str:
        workers = f"{self.workers} worker{'s' * (self.workers != 1)}" if self.workers else "no workers (main process)"
        return (f"data: {workers} x {self.decode_threads} thread{'s' * (self.decode_threads != 1)} per decode, "
                f"{self.cores} cores / {self.local_ranks} local rank{'s' * (self.local_ranks != 1)}")  # fmt: skip


def data_threads(num_workers: int, cores: int | None = None, env: Mapping[str, str] = os.environ) -> DataThreads:
    """Size a rank's decoding to its share of the cores, `cores // LOCAL_WORLD_SIZE` (at least 1), so
    that 8 ranks x workers x decode threads never oversubscribe the machine: at most `share` workers
    (`DATASET.num_workers` asks for more only to be capped), and each decode gets the cores the
    workers leave, `share // workers` threads (1 once the workers fill the share: more would only
    compete with the other workers). `cores` defaults to this process's
    affinity; a launcher that already binds each rank to its own cores needs no division, so
    such a launch runs with LOCAL_WORLD_SIZE unset or 1."""
    cores = usable_cores() if cores is None else cores
    text = env.get("LOCAL_WORLD_SIZE", "1")
    try:
        local_ranks = int(text)
    except ValueError:
        local_ranks = 0
    if local_ranks < 1:
        raise UserError(f"LOCAL_WORLD_SIZE={text!r}: expected the number of this job's processes on this machine (>= 1)")
    share = max(1, cores // local_ranks)
    workers = min(num_workers, share)
    return DataThreads(workers, max(1, share // max(workers, 1)), cores, local_ranks)


def decode_cores(threads: int) -> int:
    """The cores a decode allowed `threads` of them keeps busy (0: every core this process may run on)."""
    return threads if threads > 0 else usable_cores()


def split_decode_threads(threads: int) -> tuple[int, bool]:
    """(FFmpeg threads, convert frames on a helper thread?) for a decode that may keep
    `threads` cores busy (0: every core this process may run on).

    With one core, FFmpeg decodes and each sampled frame is converted in between. With more,
    a helper thread converts (swscale and torch ops, which leave the GIL) while FFmpeg
    decodes with the other cores' worth of threads. On 2 cores this beat FFmpeg's
    frame threads with conversion in between on every video measured, 320x240 MPEG-4 to
    720p H.264: frame threads stall while the caller converts, and on small frames their
    hand-offs cost more than they save.
    """
    cores = decode_cores(threads)
    return (1, False) if cores <= 1 else (cores - 1, True)


# PyAV before 17 has no `threads` argument: its swscale ran on the calling thread anyway.
_ONE_SWSCALE_THREAD = {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}


class FrameFormatter:
    """Decoded frames in another pixel format (RGB by default) through one swscale context
    that runs on the calling thread, reused for every frame of a decoding pass.

    PyAV's `frame.to_ndarray(format="rgb24")` gives each frame a context of its own, and
    since PyAV 17 each new context starts swscale's own threads: on a 320x240 MPEG-4 clip
    that cost 0.52 ms per converted frame instead of 0.21, and the thread start-ups slowed
    the decoder running beside them by 40% (12.9 -> 17.9 ms for the clip). Not
    thread-safe: one per decoding thread.
    """

    def __init__(self, format: str = "rgb24"):
        self.format = format
        self._reformatter = VideoReformatter()

    def frame(self, frame: av.VideoFrame) -> av.VideoFrame:
        return self._reformatter.reformat(frame, format=self.format, **_ONE_SWSCALE_THREAD)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        """uint8 `[H, W, C]` (`[H, W, 3]` for RGB)."""
        return self.frame(frame).to_ndarray()


def open_video(path: str | os.PathLike):
    """`av.open` for reading a user's file: metadata that is not UTF-8 (a Latin-1 title) is
    decoded with replacement characters instead of failing the whole video."""
    return av.open(str(path), metadata_errors="replace")


def _frame_rate(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return None


def _seek(container, path: str, offset: int, threads: int = 0):
    """PaddleVideo's seek (backward, to a keyframe, on the video stream) to pts `offset` in
    `container`, freshly opened on `path`; returns the container to decode from, decoding
    with `threads` FFmpeg threads (0: FFmpeg's choice; frame threads unless 1). The caller
    closes it (closing twice is harmless)."""
    try:
        container.seek(offset, backward=True, any_frame=False, stream=container.streams.video[0])
    except av.FFmpegError:
        container.close()
        if offset > 0:
            raise
        # A stream without an index (raw H.264, empty AVI) refuses even a seek to 0, and the
        # failed seek leaves the demuxer astray: start again from the top.
        container = open_video(path)
    stream = container.streams.video[0]
    if threads == 1:  # the rank's cores are busy with other workers' decodes already
        stream.thread_count = 1
    else:
        stream.thread_type = "AUTO"  # frame threads: whole frames in parallel
        stream.thread_count = threads
    return container


def _decoded_frames(container) -> Iterator[av.VideoFrame]:
    """`container.decode` of the video stream, except at a file cut short: a last packet that
    the decoder rejects as invalid data ends decoding (the frame count check, `is_truncated`,
    then names the file truncated), as a decoder with frame threads does silently. Rejected
    data with more packets after it is damage inside the file: that raises."""
    stream = container.streams.video[0]
    rejected = None
    for packet in container.demux(stream):
        if rejected is not None and packet.size > 0:
            raise rejected
        try:
            yield from stream.decode(packet)
        except av.InvalidDataError as err:
            rejected = err


def _decode(container, path: str, window: _Window, keep_all: bool, convert: Callable[[av.VideoFrame], Any]):
    """One pass over the window: (kept count, {position: converted}, last converted, in order?).

    Frames at wanted positions are handed to `convert` as they arrive, while the decoder goes
    on with the next ones; the last kept frame is converted at the end
    only if a position past the kept count needs it. With `keep_all`, every kept frame is
    held and indexed in PaddleVideo's pts-sorted order instead (the slow path for files
    whose frames do not arrive in increasing pts order).
    """
    wanted = set(int(p) for p in window.positions)
    context = container.streams.video[0].codec_context
    frame_bytes = max(context.width * context.height * 3, 1)
    picked: dict[int, Any] = {}
    by_pts: dict[int, av.VideoFrame] = {}
    last = None
    kept = 0
    previous_pts = None
    in_order = True
    container = _seek(container, path, max(int(window.start_pts) - SEEK_MARGIN, 0), window.threads)
    try:
        for frame in _decoded_frames(container):
            pts = frame.pts if frame.pts is not None else (previous_pts + 1 if previous_pts is not None else 0)
            if pts < window.start_pts:
                continue
            if previous_pts is not None and pts <= previous_pts:
                in_order = False
                if not keep_all:
                    break
            previous_pts = pts
            if keep_all:
                by_pts[pts] = frame
                if len(by_pts) * frame_bytes > MAX_HELD_BYTES:
                    raise VideoReadError(
                        path, f"frames arrive out of pts order over more than {len(by_pts) - 1} frames: "
                        f"too many to hold for sorting (over {MAX_HELD_BYTES >> 30} GiB)"
                    )
            else:
                if kept in wanted:
                    picked[kept] = convert(frame)
                last = frame
                kept += 1
            if pts > window.end_pts:  # PaddleVideo keeps exactly one frame past the window
                break
    finally:
        container.close()
    if keep_all:
        frames = [by_pts[p] for p in sorted(by_pts)]
        picked = {i: convert(frames[i]) for i in sorted(wanted) if i < len(frames)}
        kept = len(frames)
        last = frames[-1] if frames else None
    last_converted = None
    if last is not None and any(p >= kept for p in wanted):
        last_converted = picked.get(kept - 1)
        if last_converted is None:
            last_converted = convert(last)
    return kept, picked, last_converted, in_order


def _count_packets(path: str) -> int:
    """Frames a video holds, estimated by demuxing (no decoding): one packet per frame."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _kept_pts(all_pts: list[int], window: _Window) -> list[int] | None:
    """The pts of the frames PaddleVideo keeps, in its order: the window's pts sorted, then
    the first pts past it. None for a duplicate pts (PaddleVideo would overwrite)."""
    if len(set(all_pts)) != len(all_pts):
        return None
    kept = sorted(p for p in all_pts if window.start_pts <= p <= window.end_pts)
    after = [p for p in all_pts if p > window.end_pts]
    return kept + [min(after)] if after else kept


def _decode_planned(container, path: str, window: _Window, convert) -> tuple[int, list] | None:
    """Decode only what the sampled frames need, planned from the packets' pts.

    The packets of the window are read first (no decoding) to learn which frames PaddleVideo
    keeps; then a packet whose frame is not sampled is decoded only if other frames refer
    to it (FFmpeg's skip_frame="NONREF" drops the rest), the rest of a GOP after its last
    sampled frame is jumped over when the next GOP starts clean (`_decoding_plan`), and
    decoding stops at the last sampled frame. Returns None when this does not apply (a container that makes pts up)
    or the decoder's frames do not match the plan; the caller then decodes the plain way.
    """
    container = _seek(container, path, max(int(window.start_pts) - SEEK_MARGIN, 0), window.threads)
    try:
        stream = container.streams.video[0]
        packets = []
        past_window = 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None or packet.is_corrupt:
                return None
            packets.append(packet)
            # Packets come in decoding order: once decoding passes the window, the smallest
            # pts past it lies within the codec's reordering depth.
            if packet.dts is not None and packet.dts > window.end_pts:
                past_window += 1
                if past_window > MAX_REORDER:
                    break
        # Frames of packets marked "discard" (before an edit list's start) never come out.
        kept_pts = _kept_pts([packet.pts for packet in packets if not packet.is_discard], window)
        if not kept_pts:
            return None
        sampled = [kept_pts[min(int(p), len(kept_pts) - 1)] for p in window.positions]
        wanted, demuxed = set(sampled), {packet.pts for packet in packets}
        plan = _decoding_plan(packets, wanted, _clean_start_test(stream.codec_context))
        got: dict[int, Any] = {}
        previous = None
        skip = None
        for i, packet in enumerate([*plan, None]):  # None drains the decoder
            if i > 0 and plan[i - 1] is None:
                stream.codec_context.flush_buffers()  # drained at a jump: ready for the next GOP
            # Set only on a change: each assignment costs the decoder ~20 us (2.6 ms per
            # 131-frame clip, a sixth of decoding it).
            wanted_skip = "DEFAULT" if packet is None or packet.pts in wanted else "NONREF"
            if wanted_skip != skip:
                stream.codec_context.skip_frame = skip = wanted_skip
            try:
                frames = stream.decode(packet)
            except av.InvalidDataError:
                return None  # damaged, or cut short: the plain pass tells which
            for frame in frames:
                if frame.pts is None or (previous is not None and frame.pts <= previous):
                    return None
                previous = frame.pts
                if frame.pts not in demuxed:  # frame pts are not packet pts here
                    return None
                if frame.pts in wanted:
                    got[frame.pts] = convert(frame)
            if len(got) == len(wanted):
                return len(kept_pts), [got[pts] for pts in sampled]
        return None
    finally:
        container.close()


def _decoding_plan(packets: list, wanted: set, clean_start: Callable[[Any], bool]) -> list:
    """The packets to send the decoder, in decoding order, with None where it is drained and
    reset to jump to the next GOP: each GOP that starts clean is decoded from its keyframe
    up to its last wanted frame, and skipped whole when it holds none (unless fewer than
    `MIN_JUMP` packets would be skipped: then decoding runs on). A GOP starts clean
    at a keyframe that `clean_start` accepts and no frame of the GOP shows before it (no
    leading pictures, which refer to the GOP before)."""
    keys = [i for i, packet in enumerate(packets) if packet.is_keyframe] + [len(packets)]
    starts = [0] + [
        k for k, end in zip(keys, keys[1:])
        if k > 0 and clean_start(packets[k]) and all(p.pts >= packets[k].pts for p in packets[k:end])
    ]  # fmt: skip
    spans: list[list[int]] = []  # [first, last] packet indices to decode, in order
    for start, end in zip(starts, starts[1:] + [len(packets)]):
        last = max((i for i in range(start, end) if packets[i].pts in wanted), default=None)
        if last is None:
            continue
        if spans and start - spans[-1][1] <= MIN_JUMP:  # too close: draining would cost more
            spans[-1][1] = last
        else:
            spans.append([start, last])
    plan: list = []
    for first, last in spans:
        plan += ([None] if plan else []) + packets[first : last + 1]
    return plan


def _clean_start_test(context) -> Callable[[Any], bool]:
    """Whether a keyframe packet starts a GOP that decodes without the frames before it.

    H.264 in MP4/Matroska (length-prefixed NAL units): only an IDR picture (NAL type 5)
    does; a keyframe that is a recovery point may be followed by frames referring back.
    HEVC: IDR, BLA and CRA pictures (types 16-21; a CRA's leading pictures are ruled out
    by the caller). MPEG-1/2/4 part 2: an I-frame, which nothing after it refers across.
    """
    name, extradata = context.name, bytes(context.extradata or b"")
    if name == "h264":
        if len(extradata) < 5 or extradata[0] != 1:
            return lambda packet: False  # not length-prefixed: do not jump
        return _nal_type_test(extradata[4] & 3, lambda header: header[0] & 0x1F == 5)
    if name == "hevc":
        if len(extradata) < 23 or extradata[0] != 1:
            return lambda packet: False
        return _nal_type_test(extradata[21] & 3, lambda header: 16 <= (header[0] >> 1) & 0x3F <= 21)
    return lambda packet: True


def _nal_type_test(length_size_minus_one: int, is_clean: Callable[[bytes], bool]) -> Callable[[Any], bool]:
    size = length_size_minus_one + 1

    def test(packet) -> bool:
        data, at = bytes(packet), 0
        while at + size < len(data):
            length = int.from_bytes(data[at : at + size], "big")
            if length == 0 or at + size + length > len(data):
                return False
            if is_clean(data[at + size : at + size + 1]):
                return True
            at += size + length
        return False

    return test


def _gather(path: str, container, window: _Window, convert) -> tuple[int, list]:
    """Decode `window`: (kept count, converted frames at its positions clipped to the count).

    `container` is fresh on `path` and serves the first pass (and is closed by it).
    """
    codec = container.streams.video[0].codec_context.name
    if PTS_CONTAINERS.intersection(container.format.name.split(",")) and codec in ONE_FRAME_PER_PACKET_CODECS:
        planned = _decode_planned(container, path, window, convert)
        if planned is not None:
            return planned
        container = open_video(path)  # the plan did not hold: decode again, the plain way
    kept, picked, last, in_order = _decode(container, path, window, False, convert)
    if not in_order:
        kept, picked, last, _ = _decode(open_video(path), path, window, True, convert)
    return kept, [picked[p] if p < kept else last for p in window.positions]


def read_clip(
    path: str | os.PathLike,
    num_seg: int,
    mode: str,
    rng: np.random.Generator | None = None,
    sampling_rate: int = 32,
    target_fps: float = 30,
) -> np.ndarray:
    """Return the `num_seg` frames PaddleVideo samples from `path`, uint8 `[T, H, W, 3]` RGB.

    `mode` "test" takes the window at the start; "train" and "valid" draw its start from
    `rng` (a `numpy.random.Generator`). Raises `VideoReadError` naming the file and reason.
    """
    return np.stack(sample_frames(path, num_seg, mode, rng, sampling_rate, target_fps))


def sample_frames(
    path: str | os.PathLike,
    num_seg: int,
    mode: str,
    rng: np.random.Generator | None = None,
    sampling_rate: int = 32,
    target_fps: float = 30,
    convert: Callable[[np.ndarray], Any] | None = None,
    threads: int = 0,
    first_frame: Callable[[], object] | None = None,
) -> list:
    """`read_clip` as a list of `convert(frame)` for each sampled uint8 `[H, W, 3]` frame.

    Each sampled frame is converted (RGB, then `convert`) as soon as it is decoded; a frame
    sampled twice is converted once and listed twice. `threads`: the cores this decode may
    keep busy (0: every core this process may run on), see `split_decode_threads`; with a
    helper thread, conversion runs there, one frame at a time. `first_frame`, if given, is
    called on the decoding thread when the first sampled frame arrives, before any
    conversion: where a draw that must follow the window's goes (JitterScale's size).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    path = require_video_file(path)
    ffmpeg_threads, helper = split_decode_threads(threads)
    to_rgb = FrameFormatter()  # used by one thread only: the helper, or this one
    convert_rgb = (lambda frame: convert(to_rgb(frame))) if convert else to_rgb
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="convert") if helper else contextlib.nullcontext() as converter:

            def hand_over(frame: av.VideoFrame):
                nonlocal first_frame
                if first_frame is not None:
                    first_frame, call = None, first_frame
                    call()
                return converter.submit(convert_rgb, frame) if converter else convert_rgb(frame)

            frames = _sample(path, num_seg, mode, rng, sampling_rate, target_fps, hand_over, ffmpeg_threads)
            return [frame.result() for frame in frames] if converter else frames
    except VideoReadError:
        raise
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise VideoReadError(path, f"cannot decode: {_one_line(exc)}") from exc


def require_video_file(path: str | os.PathLike) -> str:
    """`path` as a string when it names a non-empty file, else `VideoReadError` saying why not."""
    path = str(path)
    if not Path(path).is_file():
        raise VideoReadError(path, "file not found" if not Path(path).exists() else "not a file")
    if Path(path).stat().st_size == 0:
        raise VideoReadError(path, "empty file (0 bytes)")
    return path


def _one_line(exc: BaseException) -> str:
    """FFmpeg's reason without the path (VideoReadError names the path once)."""
    return first_line(getattr(exc, "strerror", None) or exc)


def _sample(path, num_seg, mode, rng, sampling_rate, target_fps, convert, threads) -> list:
    # One container serves the metadata and the first decoding pass: opening probes the
    # stream, which for a large video costs as much as decoding a few frames.
    with open_video(path) as container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoReadError(path, f"no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise VideoReadError(path, "FFmpeg has no decoder for the video stream's codec")
        check_frame_size(path, stream.codec_context.width, stream.codec_context.height, num_seg)
        fps = _frame_rate(stream)
        if fps is None:
            raise VideoReadError(path, "the video stream has no frame rate")
        clip_size = sampling_rate * num_seg / target_fps * fps
        if stream.duration is not None and stream.frames > 0:
            # The window is chosen on the container's frame count; frames are then indexed
            # from 0 within what the window decodes.
            start, end = _start_end(stream.frames, clip_size, mode, rng)
            timebase = stream.duration / stream.frames
            window = _Window(int(start * timebase), int(end * timebase), _positions(0, clip_size - 1, num_seg), threads)
            promised = _frames_promised(stream.frames, start, end)  # before _gather closes the container
            kept, frames = _gather(path, container, window, convert)
            if kept and is_truncated(kept, promised):
                raise VideoReadError(
                    path, f"truncated or corrupt: decoded {kept} of the {promised} frames its header promises"
                )
        else:
            # No duration or frame count: PaddleVideo decodes everything and draws the window
            # over the decoded frames (it divides by zero on a zero frame count; we do not).
            # The demuxed packet count predicts the decoded count; if it was wrong, draw again.
            guess = _count_packets(path) if mode != "test" else 0
            start, end = _start_end(guess, clip_size, mode, rng)
            window = _Window(0, math.inf, _positions(start, end, num_seg), threads)
            kept, frames = _gather(path, container, window, convert)
            if kept and mode != "test" and kept != guess:
                start, end = _start_end(kept, clip_size, mode, rng)
                window.positions = _positions(start, end, num_seg)
                kept, frames = _gather(path, open_video(path), window, convert)
    if not kept:
        raise VideoReadError(path, "the video stream has no decodable frames")
    return frames


def check_frame_size(path: str, width: int, height: int, count: int = 1) -> None:
    """Refuse, before decoding, a header whose frames (`count` of them held at once as RGB)
    would need more memory than any real video: a hostile or corrupt file."""
    if width * height > MAX_FRAME_PIXELS:
        raise VideoReadError(path, f"{width}x{height} frames: more than {MAX_FRAME_PIXELS} pixels, refusing to decode")
    if count * width * height * 3 > MAX_HELD_BYTES:
        raise VideoReadError(
            path, f"{count} frames of {width}x{height} need more than {MAX_HELD_BYTES >> 30} GiB, refusing to decode"
        )


def is_truncated(decoded: int, promised: int) -> bool:
    """The one truncation rule, for a whole file (`data check`) or a window (`read_clip`):
    clearly fewer frames decode than the header promises. Headers are off by a frame or two
    (B-frame delay, a dropped last frame) and, in an MP4 whose edit list trims its start,
    by the trimmed frames, which the header counts and the decoder never shows; a quarter
    short is a broken file (a half download, a cut stream)."""
    return decoded < TRUNCATED_SHARE * promised - 2


def _frames_promised(num_frames: int, start: float, end: float) -> int:
    """Frames PaddleVideo keeps from window [start, end] of a video whose header says
    `num_frames`: those inside it plus the one after it."""
    first, last = math.ceil(start), min(math.floor(end), num_frames - 1)
    return max(last - first + 1, 0) + (1 if math.floor(end) + 1 <= num_frames - 1 else 0)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file (JPEG, PNG, ...) with FFmpeg: uint8 `[H, W, 3]` RGB."""
    path = str(path)
    if not Path(path).is_file():
        raise VideoReadError(path, "file not found")
    try:
        with open_video(path) as container:
            if container.streams.video and container.streams.video[0].codec_context is not None:
                context = container.streams.video[0].codec_context
                check_frame_size(path, context.width, context.height)
            for frame in container.decode(video=0):
                return FrameFormatter()(frame)
    except (av.FFmpegError, OSError, EOFError, IndexError) as exc:
        raise VideoReadError(path, f"cannot decode image: {_one_line(exc)}") from exc
    raise VideoReadError(path, "the image holds no picture")


def read_frames(
    frame_dir: str | os.PathLike, num_frames: int, num_seg: int, suffix: str = "img_{:05}.jpg"
) -> np.ndarray:
    """PaddleVideo's frames format: `num_seg` images of `frame_dir` at
    `linspace(0, num_frames - 1, num_seg)`, files named `suffix.format(position + 1)`.
    Returns uint8 `[T, H, W, 3]`; raises `VideoReadError` naming the folder."""
    frame_dir = str(frame_dir)
    if not Path(frame_dir).is_dir():
        raise VideoReadError(frame_dir, "frame folder not found")
    if num_frames < 1:
        raise VideoReadError(frame_dir, f"the list gives {num_frames} frames")
    positions = linspace_positions(0, num_frames - 1, num_seg, num_frames)
    images = {}
    for position in sorted(set(positions.tolist())):
        name = suffix.format(position + 1)
        try:
            images[position] = read_image(Path(frame_dir) / name)
        except VideoReadError as exc:
            raise VideoReadError(frame_dir, f"{name}: {exc.reason}") from exc
    frames = [images[p] for p in positions.tolist()]
    if len({f.shape for f in frames}) > 1:
        raise VideoReadError(frame_dir, "frames differ in size")
    return np.stack(frames)
