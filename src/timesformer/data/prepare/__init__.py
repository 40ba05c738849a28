"""Dataset preparation behind `timesformer data …`: lists in PaddleVideo's formats,
downloads, frame extraction and checks. One module per task."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from ...errors import UserError

Job = TypeVar("Job")
MAX_WORKERS = 256  # processes; more is a typo (and each one is a whole Python)
Result = TypeVar("Result")


def default_workers(limit: int = 8) -> int:
    return max(1, min(os.cpu_count() or 1, limit))


def check_workers(workers: int) -> int:
    """`workers` when it is a sane process count; `UserError` naming --workers otherwise."""
    if not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers {workers}: must be between 1 and {MAX_WORKERS}")
    return workers


def ordered_map(fn: Callable[[Job], Result], jobs: Iterable[Job], workers: int) -> Iterator[Result]:
    """`fn` over `jobs` in `workers` processes (in this one when `workers` <= 1), in order.

    Decoding and encoding are CPU-bound, so processes, not threads. `fn` must be a
    module-level function (it is pickled).
    """
    if check_workers(workers) == 1:
        yield from map(fn, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(fn, jobs, chunksize=4)
