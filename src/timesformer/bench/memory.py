"""Peak memory one call adds: CUDA's allocator peak, or the process's peak RSS on Linux."""

from __future__ import annotations

import ctypes

import torch


class PeakMemory:
    """Memory one call adds at its peak, in MiB.

    CUDA: the caching allocator's peak above what was allocated before. CPU (Linux): the
    process's peak RSS (VmHWM, reset through /proc/self/clear_refs) above its RSS before;
    freed heap goes back to the OS first (malloc_trim), so reusing it does not hide growth.
    tracemalloc would not see torch's allocations. None where this cannot be measured.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except OSError:
            self._trim = None

    @staticmethod
    def _status_kib(key: str) -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise OSError(f"no {key} in /proc/self/status")

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:
            if self._trim is not None:
                self._trim(0)
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # resets VmHWM to the current RSS
            self.base = self._status_kib("VmRSS") * 1024
        except OSError:
            self.base = None

    def stop(self) -> float | None:
        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        if self.base is None:
            return None
        try:
            return max(self._status_kib("VmHWM") * 1024 - self.base, 0) / 2**20
        except OSError:
            return None
