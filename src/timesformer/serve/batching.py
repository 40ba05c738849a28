"""Dynamic batching: clips from concurrent requests share one model call.

A request's clip waits in the queue until `max_batch` clips are there or the oldest has
waited `max_wait_s`; while the model runs one batch, the next one fills up. The model runs
in one dedicated thread, so the event loop keeps accepting and decoding meanwhile, and
model calls never compete with each other for the cores.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class _Pending:
    clip: torch.Tensor
    result: asyncio.Future


class BatchQueue:
    """`await submit(clip)` -> the model's output row for that clip, computed in a batch."""

    def __init__(
        self,
        run: Callable[[torch.Tensor], np.ndarray],
        model_thread: ThreadPoolExecutor,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] = lambda size: None,
    ):
        self.run = run
        self.model_thread = model_thread
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._waiting = 0  # in the queue or in the batch being gathered

    @property
    def depth(self) -> int:
        """Clips waiting for a model call."""
        return self._waiting

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._serve(), name="batch-queue")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def submit(self, clip: torch.Tensor) -> np.ndarray:
        pending = _Pending(clip, asyncio.get_running_loop().create_future())
        self._waiting += 1
        await self._queue.put(pending)
        return await pending.result

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():  # already waiting: take it without a timer
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            gathered = await self._collect()
            self._waiting -= len(gathered)
            batch = [p for p in gathered if not p.result.cancelled()]  # clients gone
            if not batch:
                continue
            self.on_batch(len(batch))
            stacked = torch.stack([p.clip for p in batch])
            try:
                outputs = await loop.run_in_executor(self.model_thread, self.run, stacked)
            except Exception as err:  # the model's failure belongs to every request in the batch
                for p in batch:
                    if not p.result.done():
                        p.result.set_exception(err)
                continue
            for p, row in zip(batch, outputs):
                if not p.result.done():
                    p.result.set_result(row)
