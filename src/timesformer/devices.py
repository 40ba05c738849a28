"""Device choice and mixed-precision policy: the one place every command asks.

`resolve_device("auto")` is CUDA when there is a GPU, else the CPU. fp16 autocast on a CPU is
refused everywhere (training, test, predict, bench): it is slower than bf16 there and would need
loss scaling; bf16 needs neither, so the one-line error points to it.
"""

from __future__ import annotations

import os

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


def configure_math(device: torch.device, strict_fp32: bool = False, deterministic: bool = False) -> list[str]:
    """Set how this process computes; returns one line per choice, for the run's log.

    - TF32 for fp32 matrix products on CUDA (Ampere and later run them ~8x faster, with a 10-bit
      mantissa) unless `strict_fp32`;
    - `deterministic`: the same weights from the same run on the same device and software: torch's
      deterministic algorithms (an op without one raises), cuBLAS's fixed workspace, no cuDNN
      autotuning, and the math attention kernel (flash and memory-efficient attention backward
      accumulate in a run-dependent order). It costs speed: attention alone runs ~2-4x slower on
      GPUs. NCCL's reductions keep their order for a fixed world size and topology.
    """
    notes = []
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not strict_fp32
        torch.backends.cudnn.allow_tf32 = not strict_fp32
        notes.append("fp32 matmuls: strict fp32" if strict_fp32 else
                     "fp32 matmuls: TF32 on CUDA (--strict_fp32 for full fp32)")  # fmt: skip
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        if device.type == "cuda":
            torch.backends.cuda.enable_flash_sdp(False)
            torch.backends.cuda.enable_mem_efficient_sdp(False)
        notes.append("deterministic: torch deterministic algorithms, no cuDNN autotuning"
                     + (", math attention (slower than flash)" if device.type == "cuda" else ""))  # fmt: skip
    return notes
