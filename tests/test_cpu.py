"""`timesformer.cpu`: CPU model and ISA from /proc/cpuinfo text, checked against lscpu and
against hand-written cpuinfo excerpts of the three kinds of CPU users have."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from timesformer import cpu

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse avx2 avx512f avx512dq avx512_bf16 avx512_vnni

processor\t: 1
model name\t: something else
flags\t\t: fpu
"""
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
SKYLAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
flags\t\t: fpu avx2 avx512f avx512dq
"""
NO_AVX512 = """processor\t: 0
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
flags\t\t: fpu avx avx2 fma
"""


@pytest.mark.parametrize(
    "text, name, avx512, bf16, amx",
    [
        (ZEN4, "AMD EPYC 9654 96-Core Processor", True, True, False),
        (SAPPHIRE_RAPIDS, "Intel(R) Xeon(R) Platinum 8480+", True, True, True),
        (SKYLAKE, "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", True, False, False),
        (NO_AVX512, "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", False, False, False),
    ],
)
def test_parse_cpuinfo(text, name, avx512, bf16, amx):
    info = cpu.parse_cpuinfo(text)
    assert (info.model_name, info.has_avx512, info.has_avx512_bf16, info.has_amx) == (name, avx512, bf16, amx)
    assert info.has_native_bf16 == (bf16 or amx)
    assert info.isa() == f"AVX-512 {'yes' if avx512 else 'no'}, AVX512-BF16 {'yes' if bf16 else 'no'}, AMX {'yes' if amx else 'no'}"


@pytest.mark.parametrize("text, expected", [(ZEN4, "bf16"), (SAPPHIRE_RAPIDS, "bf16"), (SKYLAKE, "fp32"), (NO_AVX512, "fp32")])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, text, expected):
    monkeypatch.setattr(cpu, "cpu_info", lambda: cpu.parse_cpuinfo(text))
    assert cpu.auto_precision("cpu") == expected
    assert cpu.auto_precision(torch.device("cpu")) == expected


def test_auto_precision_on_cuda_asks_torch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert cpu.auto_precision("cuda:0") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert cpu.auto_precision("cuda") == "bf16"


def test_this_machine_agrees_with_lscpu():
    if not cpu.CPUINFO.exists() or shutil.which("lscpu") is None:
        pytest.skip("needs Linux /proc/cpuinfo and lscpu")
    fields = dict(
        line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines() if ":" in line
    )
    info = cpu.cpu_info()
    assert info.model_name == fields["Model name"].strip()
    flags = set(fields.get("Flags", "").split())
    if flags:
        assert info.has_avx512 == ("avx512f" in flags) and info.has_avx512_bf16 == ("avx512_bf16" in flags)
