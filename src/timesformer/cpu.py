"""What this CPU is (model name, AVX-512 / AVX512-BF16 / AMX) and the precision that is
fastest on it.

bf16 only pays on CPUs that compute it natively: AVX512-BF16 (AMD Zen 4+, Intel Cooper
Lake+) or AMX (Intel Sapphire Rapids+). Elsewhere oneDNN emulates bf16 GEMMs through fp32
and the casts make it slower than plain fp32, so `auto_precision` picks fp32 there.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CPUInfo:
    model_name: str
    flags: frozenset[str]

    @property
    def has_avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def has_avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.flags

    @property
    def has_amx(self) -> bool:
        return "amx_bf16" in self.flags and "amx_tile" in self.flags

    @property
    def has_native_bf16(self) -> bool:
        return self.has_avx512_bf16 or self.has_amx

    def isa(self) -> str:
        """One line, e.g. `AVX-512 yes, AVX512-BF16 yes, AMX no`."""
        yes_no = lambda flag: "yes" if flag else "no"  # noqa: E731
        return f"AVX-512 {yes_no(self.has_avx512)}, AVX512-BF16 {yes_no(self.has_avx512_bf16)}, AMX {yes_no(self.has_amx)}"

    def to_dict(self) -> dict:
        return {
            "model_name": self.model_name,
            "avx512": self.has_avx512,
            "avx512_bf16": self.has_avx512_bf16,
            "amx": self.has_amx,
        }


def parse_cpuinfo(text: str) -> CPUInfo:
    """The first processor's `model name` and `flags` from /proc/cpuinfo's text (what
    `lscpu` shows as Model name and Flags)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough: all cores of one machine agree
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or fields.get("Processor") or fields.get("cpu model") or ""
    return CPUInfo(model_name=name or platform.processor() or "unknown CPU", flags=frozenset(fields.get("flags", "").split()))


@functools.lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    """This machine's CPU. Without /proc/cpuinfo (macOS, Windows) the flags are unknown and
    taken as absent, so `auto_precision` stays on fp32 there."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CPUInfo(model_name=platform.processor() or platform.machine() or "unknown CPU", flags=frozenset())
    return parse_cpuinfo(text)


def auto_precision(device: torch.device | str) -> str:
    """`"bf16"` where this device computes bf16 natively (CUDA with bf16 support; a CPU with
    AVX512-BF16 or AMX), else `"fp32"`."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_info().has_native_bf16 else "fp32"
    return "fp32"
