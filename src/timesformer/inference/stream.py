"""Live predictions on a stream: a camera device, an RTSP/HTTP/UDP URL, `-` (stdin) or a pipe.

A reader thread decodes the stream as it comes and keeps, for each window still open (the
window ending every `every` seconds, `window` seconds long), only the frames it samples (as
the test pipeline samples a clip: `num_seg` frames spread over the window): a ring of the
last window's frames, without holding every frame of it. A finished window waits in a slot
of one: when the model is slower than real time, a newer window replaces a waiting one (a
dropped window, counted), so predictions never fall further and further behind the stream.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Iterator

import av
import numpy as np

from ..data.video import FrameFormatter
from ..errors import UserError
from ..utils import first_line
from .windows import Window, sampled_frames

DEFAULT_FPS = 25.0  # a live source that states no frame rate (rare: raw pipes)
PROBE_SECONDS = 0.5  # of stream read to find its format before decoding starts
OPEN_TIMEOUT_SECONDS = 10.0  # a URL that sends nothing for this long is an error


@dataclass
class StreamPrediction:
    start_s: float  # the window, in seconds of stream time from the first frame
    end_s: float
    topk_class: list[int]
    topk_scores: list[float]
    topk_label: list[str] | None
    latency_s: float  # from the arrival of the window's last frame to this prediction
    dropped: int  # windows dropped (model busy) since the previous prediction
    time: float  # wall clock (Unix seconds) when the prediction was made

    def to_dict(self) -> dict:
        return asdict(self)


def open_source(source) -> av.container.InputContainer:
    """A PyAV container on `source`: "-" (stdin), a camera device (/dev/videoN), a URL, a path or a file object.

    FFmpeg's open returns only when the source answers or at its timeout, and Python acts on
    Ctrl-C only between the main thread's bytecodes: the open runs in a helper thread while
    this one waits in short steps, so Ctrl-C ends a wait on a silent source at once.
    """
    opening = _Opening(source)
    threading.Thread(target=opening.run, name="stream-open", daemon=True).start()
    try:
        while not opening.done.wait(0.1):
            pass
    except KeyboardInterrupt:
        opening.abandon()
        raise
    if opening.error is not None:
        raise opening.error
    return opening.container


class _Opening:
    """One open of a source in a helper thread; a container that arrives after Ctrl-C is closed."""

    def __init__(self, source):
        self.source = source
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.abandoned = False
        self.container: av.container.InputContainer | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            container = _open(self.source)
        except BaseException as err:  # a UserError, or a bug: raised in the waiting thread
            self.error = err
            self.done.set()
            return
        with self.lock:
            if self.abandoned:
                container.close()
                return
            self.container = container
        self.done.set()

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            if self.container is not None:
                self.container.close()


def _open(source) -> av.container.InputContainer:
    try:
        if isinstance(source, str) and source.startswith("/dev/video"):
            return av.open(source, format="v4l2")
        if source == "-":
            source = sys.stdin.buffer
        if hasattr(source, "read1"):
            source = _PartialReads(source)
        # FFmpeg reads 5 s of a stream before the first frame by default; a live source cannot wait.
        options = {"analyzeduration": str(int(PROBE_SECONDS * 1e6)), "probesize": "1000000"}
        if isinstance(source, str) and "://" in source:
            return av.open(source, mode="r", options=options, timeout=(OPEN_TIMEOUT_SECONDS, 30.0))
        return av.open(source, mode="r", options=options)
    except av.ExitError:  # PyAV's interrupt callback: the open timed out
        raise UserError(f"--stream {source}: nothing arrived for {OPEN_TIMEOUT_SECONDS:g} s") from None
    except (av.FFmpegError, OSError, EOFError) as err:
        raise UserError(f"--stream {source}: cannot open ({first_line(err)})") from None


class _PartialReads:
    """A buffered reader whose `read(n)` returns what has arrived (PyAV asks for 32 KB at a
    time; a buffered `read` would wait for all of it, holding back a live stream's frames)."""

    def __init__(self, raw):
        self.raw = raw

    def read(self, size: int = -1) -> bytes:
        return self.raw.read1(size)


class _Slot:
    """The newest finished window; putting one over an untaken one counts a drop."""

    def __init__(self):
        self.cond = threading.Condition()
        self.item = None
        self.dropped = 0
        self.finished = False
        self.error: BaseException | None = None

    def put(self, item) -> None:
        with self.cond:
            if self.item is not None:
                self.dropped += 1
            self.item = item
            self.cond.notify()

    def finish(self, error: BaseException | None = None) -> None:
        with self.cond:
            self.finished, self.error = True, error
            self.cond.notify()

    def take(self):
        """(item, dropped since the last take), or None at the end of the stream."""
        with self.cond:
            while self.item is None and not self.finished:
                self.cond.wait(timeout=0.1)  # wakes now and then so that Ctrl-C gets through
            if self.item is None:
                if self.error is not None:
                    raise self.error
                return None
            item, dropped = self.item, self.dropped
            self.item, self.dropped = None, 0
            return item, dropped


def _read(container, source, window_s: float, every_s: float, num_seg: int, slot: _Slot, stop: threading.Event) -> None:
    """Decode the stream; hand each window to `slot` when its last sampled frame arrives."""
    try:
        with container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate or DEFAULT_FPS)
            open_windows: list[tuple[Window, dict[int, np.ndarray]]] = []
            to_rgb = FrameFormatter()
            k = 0
            for index, frame in enumerate(container.decode(stream)):
                if stop.is_set():
                    break
                while math.ceil(k * every_s * fps - 1e-6) <= index:
                    first = math.ceil(k * every_s * fps - 1e-6)
                    span = Window(k * every_s, k * every_s + window_s, sampled_frames(first, window_s, fps, num_seg))
                    open_windows.append((span, {}))
                    k += 1
                rgb = None
                for span, held in open_windows:
                    if index in span.frames:
                        rgb = rgb if rgb is not None else to_rgb(frame)
                        held[index] = rgb
                while open_windows and open_windows[0][0].frames[-1] <= index:
                    span, held = open_windows.pop(0)
                    slot.put((span, [held[i] for i in span.frames], time.monotonic()))
        slot.finish()
    except (av.FFmpegError, OSError, EOFError) as err:
        slot.finish(UserError(f"--stream {source}: the stream broke off ({first_line(err)})"))
    except BaseException as err:  # a UserError, or a bug: raised in the consumer, not lost in this thread
        slot.finish(err)


def stream_predictions(
    predictor, source, window: float, every: float, top_k: int = 5
) -> Iterator[StreamPrediction]:
    """Predictions on the last `window` seconds of `source`, every `every` seconds of stream time.

    Ends at the end of the stream; closing the generator (or Ctrl-C) stops the reader.
    """
    for flag, value in (("--window", window), ("--every", every)):
        if not (math.isfinite(value) and 0 < value <= 1e5):
            raise UserError(f"{flag} {value}: must be a number of seconds > 0")
    k = min(max(1, int(top_k)), predictor.spec.num_classes)
    container = open_source(source)
    if not container.streams.video:
        container.close()
        raise UserError(f"--stream {source}: no video stream")
    slot, stop = _Slot(), threading.Event()
    reader = threading.Thread(
        target=_read, args=(container, source, window, every, predictor.spec.num_seg, slot, stop), name="stream-reader",
        daemon=True,
    )  # fmt: skip
    reader.start()
    try:
        while (taken := slot.take()) is not None:
            (span, frames, arrived), dropped = taken
            probs = predictor.scores(predictor.clip_from_frames(frames)[None])[0]
            classes, scores, labels = predictor.top_classes(probs, k)
            yield StreamPrediction(
                span.start_s, span.end_s, classes, scores, labels, time.monotonic() - arrived, dropped, time.time()
            )
    finally:
        stop.set()  # the reader stops at its next frame; one blocked on a silent source is a daemon thread
