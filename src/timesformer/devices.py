"""Device choice and mixed-precision policy: the one place every command asks.

`resolve_device("auto")` is CUDA when there is a GPU, else the CPU. fp16 autocast on a CPU is
refused everywhere (training, test, predict, bench): it is slower than bf16 there and would need
loss scaling; bf16 needs neither, so the one-line error points to it.
"""

from __future__ import annotations

import torch

from .errors import UserError

# Every spelling a flag or a config may use, to the autocast dtype (None: plain fp32).
_PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None, "float32": None,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}  # fmt: skip


def resolve_device(name: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """`name` ("auto"/None, "cpu", "cuda", "cuda:N") as a `torch.device`, checked to exist.

    A bare "cuda" means this process's GPU: `cuda:local_rank` when there are that many visible GPUs,
    else `cuda:0` when exactly one is visible (one GPU per process, as `srun --gpus-per-task=1`
    gives); anything else is a one-line error.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"device {name!r}: not a device (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise UserError(f"device {name!r}: only cpu and cuda are supported")
    if not torch.cuda.is_available():
        raise UserError(f"device {name!r}: CUDA is not available on this machine (use cpu)")
    count = torch.cuda.device_count()
    if device.index is None:
        if local_rank < count:
            return torch.device("cuda", local_rank)
        if count == 1:
            return torch.device("cuda", 0)
        raise UserError(
            f"device cuda for local rank {local_rank}: only {count} GPUs are visible to this process; "
            f"start at most {count} processes per node or give each process its own GPU"
        )
    if device.index >= count:
        raise UserError(f"device {name!r}: only {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
    return device


def resolve_amp_dtype(device: torch.device | str, precision: str | None) -> torch.dtype | None:
    """The autocast dtype for `precision` ("fp32"/"bf16"/"fp16", or float32/bfloat16/float16) on `device`.

    None means fp32 (no autocast). fp16 on a CPU raises `UserError`: the one policy of the package.
    """
    key = "fp32" if precision is None else str(precision).lower()
    if key not in _PRECISIONS:
        raise UserError(f"precision {precision!r}: use fp32, bf16 or fp16")
    dtype = _PRECISIONS[key]
    if dtype == torch.float16 and torch.device(device).type != "cuda":
        raise UserError(f"precision {precision}: fp16 needs a CUDA device; on CPU use bf16")
    return dtype
