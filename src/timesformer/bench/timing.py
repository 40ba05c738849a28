"""Timing: interleaved rounds (one call of each case per round), medians, paired ratios."""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm

from .memory import PeakMemory


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    seconds: list[float]  # timed runs
    first_s: float  # the first call (cold caches; includes compiling for compiled models)
    peak_mem_mb: float | None  # measured on the last warm-up call
    output: object = None  # what the last call returned

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)


def timed_call(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    output = fn()
    synchronize(device)
    return time.perf_counter() - start, output


def interleaved(
    cases: dict[str, Callable[[], object]], device: torch.device, repeat: int, warmup: int, desc: str = ""
) -> dict[str, Timing]:
    """Time every case `repeat` times after `warmup` calls, one call of each per round."""
    memory = PeakMemory(device)
    first: dict[str, float] = {}
    peak: dict[str, float | None] = {name: None for name in cases}
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    outputs: dict[str, object] = {}
    for round_index in range(warmup):
        for name, fn in cases.items():
            probe = round_index == warmup - 1
            if probe:
                memory.start()
            elapsed, outputs[name] = timed_call(fn, device)
            if probe:
                peak[name] = memory.stop()
            first.setdefault(name, elapsed)
    for _ in tqdm(range(repeat), desc=desc, leave=False, disable=None, file=sys.stderr):
        for name, fn in cases.items():
            elapsed, outputs[name] = timed_call(fn, device)
            seconds[name].append(elapsed)
            first.setdefault(name, elapsed)
    return {name: Timing(seconds[name], first[name], peak[name], outputs.get(name)) for name in cases}


def paired_speedup(fast: Timing, slow: Timing) -> float:
    """How many times faster `fast` is than `slow`: median of the per-round ratios."""
    return statistics.median(s / f for f, s in zip(fast.seconds, slow.seconds))
