"""Decoding for the model: a thread pool (PyAV and torch release the GIL) that keeps a few
videos decoded while the engine runs on the current batch, or inline, one video at a time,
where the engine's threads take every core."""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import av

from ..errors import VideoReadError
from ..utils import first_line

T = TypeVar("T")


def decode_ahead(
    paths: Iterable[str], load: Callable[[str], T], num_workers: int = 2
) -> Iterator[tuple[str, T | None, VideoReadError | None]]:
    """`(path, load(path), None)` or `(path, None, error)` in input order, loaded ahead by a
    pool of `num_workers` threads (0: inline, each when the consumer asks for it).

    A decoder failure (`VideoReadError`, FFmpeg's errors, an unreadable file) is that video's
    problem, not the run's; anything else is a bug and surfaces.
    """

    def attempt(path: str):
        try:
            return load(path), None
        except VideoReadError as err:
            return None, err
        except (av.FFmpegError, OSError, EOFError) as err:
            return None, VideoReadError(path, f"cannot be read ({type(err).__name__}: {first_line(err)})")

    paths = iter(paths)
    if num_workers < 1:  # inline: each video loaded when the consumer asks for it
        for path in paths:
            yield (path, *attempt(path))
        return
    ahead = 2 * num_workers + 2
    with ThreadPoolExecutor(num_workers, thread_name_prefix="decode") as pool:
        pending = deque((p, pool.submit(attempt, p)) for p in itertools.islice(paths, ahead))
        while pending:
            path, future = pending.popleft()
            for nxt in itertools.islice(paths, 1):
                pending.append((nxt, pool.submit(attempt, nxt)))
            value, error = future.result()
            yield path, value, error


_DONE = object()


def in_background(items: Iterable[T], maxsize: int = 2) -> Iterator[T]:
    """`items` produced by a thread, at most `maxsize` ahead of the consumer.

    The producer's exception (a `VideoReadError`, or a bug) is raised in the consumer after
    the items that came before it. Closing the generator early stops the producer.
    """
    import queue
    import threading

    box: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((_DONE, None))
        except BaseException as err:  # handed to the consumer, which raises it
            box.put((_DONE, err))

    thread = threading.Thread(target=produce, name="decode-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = box.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                box.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
