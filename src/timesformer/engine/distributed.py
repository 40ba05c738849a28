"""Process-group helpers: one process, or many under torchrun (gloo on CPU, NCCL on CUDA).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything runs in one process and the
collective helpers below are identities, so the training loop has a single code path.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..devices import resolve_device
from ..errors import UserError
from ..utils import first_line


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class RankLostError(UserError):
    """Another rank of a distributed job died; the job cannot go on (torchrun has the details)."""


def setup(requested_device: str | None = None) -> DistContext:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return DistContext(rank, world_size, local_rank, device)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum over ranks, in place (identity in one process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj`, in rank order (small picklable objects: per-sample results)."""
    if not ctx.distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's `obj` on every rank (identity in one process)."""
    if not ctx.distributed:
        return obj
    holder = [obj if ctx.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def is_comm_failure(err: BaseException) -> bool:
    """True for the errors a collective raises when a peer process has gone away."""
    if isinstance(err, dist.DistError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        word in text for word in ("Connection closed by peer", "Connection reset", "NCCL", "Gloo", "gloo")
    )


def comm_failure_summary(err: BaseException) -> str:
    """The useful part of a backend error: its first sentence, without the source-file prefix."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", first_line(err))
    return text.split(". ")[0][:160]


def torchrun_command(num_processes: int, command_args: list[str]) -> list[str]:
    """The torchrun command line that re-runs `timesformer <command_args>` on `num_processes` ranks."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(num_processes), "-m", "timesformer", *command_args,
    ]  # fmt: skip
