"""The matmul peak: a large square GEMM per precision, the yardstick GFLOP/s are compared to."""

from __future__ import annotations

import torch

from ..devices import resolve_amp_dtype
from .session import BenchSession
from .timing import interleaved


def bench_matmul(session: BenchSession) -> None:
    options, device = session.options, session.device
    sizes = options.matmul_size or ([1024] if options.preset == "tiny" else [2048, 4096])
    measured = []
    for size in sizes:
        cases = {}
        for precision in options.precision:
            dtype = resolve_amp_dtype(device, precision) or torch.float32
            a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
            out = torch.empty(size, size, device=device, dtype=dtype)
            cases[precision] = lambda a=a, b=b, out=out: torch.mm(a, b, out=out)
        timings = interleaved(cases, device, options.repeat, options.warmup, f"matmul {size}")
        for precision, timing in timings.items():
            gflops = 2 * size**3 / timing.median_s / 1e9
            session.peak_gflops[precision] = max(session.peak_gflops.get(precision, 0.0), gflops)
            measured.append((size, precision, timing))
    for size, precision, timing in measured:  # recorded once the peak over every size is known
        session.record("matmul", f"mm {size}x{size}", timing, precision, flops=2 * size**3)
