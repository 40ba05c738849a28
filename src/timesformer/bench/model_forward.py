"""Model forward (inference mode; bf16 = autocast): ours and transformers' on the same input
with the same weights, interleaved; logits compared; bf16 against fp32; optionally
torch.compile against eager."""

from __future__ import annotations

import torch

from .flops import timesformer_flops
from .session import BenchSession
from .timing import interleaved, paired_speedup, timed_call


def bench_model(session: BenchSession) -> None:
    options = session.options
    ours = session.model()
    for batch in options.batch:
        x = session.clip_batch(batch)
        x_theirs = x.transpose(1, 2).contiguous()  # transformers takes [B, T, C, H, W]
        cases = {}
        for precision in options.precision:
            cases[f"ours {precision}"] = session.forward(ours, x, precision)
            if session.theirs is not None:
                cases[f"transformers {precision}"] = session.forward(session.theirs, x_theirs, precision, transformers=True)
            if options.compile:
                compiled = compiled_forward(session, x, precision)
                if compiled is not None:
                    cases[f"ours+compile {precision}"] = compiled
        timings = interleaved(cases, session.device, options.repeat, options.warmup, f"model batch {batch}")
        flops = timesformer_flops(session.config, batch)
        for name, timing in timings.items():
            impl, precision = name.split()
            extra = {"compile_s": session.checks["compile_s"][f"{precision} batch {batch}"]} if impl == "ours+compile" else {}
            session.record("model", impl, timing, precision, batch, clips=batch, flops=flops, **extra)
        for precision in options.precision:
            ours_timing = timings[f"ours {precision}"]
            if f"transformers {precision}" in timings:
                theirs_timing = timings[f"transformers {precision}"]
                session.ratio("model", "ours_vs_transformers", paired_speedup(ours_timing, theirs_timing),
                              "speedup of ours over transformers (>1: ours faster)", precision=precision, batch=batch)  # fmt: skip
                if session.checks.get("same_weights_as_transformers"):
                    diff = (ours_timing.output - theirs_timing.output).abs().max().item()
                    session.checks.setdefault("logits_ours_vs_transformers_max_abs", {})[f"{precision} batch {batch}"] = diff
            if f"ours+compile {precision}" in timings:
                session.ratio("model", "compile_vs_eager", paired_speedup(timings[f"ours+compile {precision}"], ours_timing),
                              "speedup of torch.compile over eager (>1: compiled faster)", precision=precision, batch=batch)  # fmt: skip
        if "fp32" in options.precision:
            for precision in options.precision:
                if precision != "fp32":
                    session.ratio("model", f"{precision}_vs_fp32", paired_speedup(timings[f"ours {precision}"], timings["ours fp32"]),
                                  f"speedup of {precision} autocast over fp32 (>1: {precision} faster)", batch=batch)  # fmt: skip
    if "bf16" in options.precision and "fp32" in options.precision:
        session.checks["bf16_vs_fp32"] = bf16_accuracy(session)


def compiled_forward(session: BenchSession, x: torch.Tensor, precision: str):
    """torch.compile'd forward, compiled here (first call timed as compile_s); None if it fails."""
    call = session.forward(torch.compile(session.model()), x, precision)
    key = f"{precision} batch {x.shape[0]}"
    try:
        elapsed, _ = timed_call(call, session.device)
    except Exception as err:  # a missing compiler or an unsupported op: report it, keep benching eager
        session.checks.setdefault("compile_errors", {})[key] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        session.log(f"torch.compile failed ({key}): {session.checks['compile_errors'][key]}")
        return None
    session.checks.setdefault("compile_s", {})[key] = elapsed
    return call


def bf16_accuracy(session: BenchSession) -> dict:
    """bf16 logits against fp32 on real test views of the videos when there are any, else random clips."""
    count = session.options.accuracy_clips
    inputs = session.test_views(count) if session.videos else [session.clip_batch(1, seed=1 + i) for i in range(count)]
    if not inputs:
        return {}
    ours = session.model()
    fp32 = torch.cat([session.forward(ours, x, "fp32")() for x in inputs])
    bf16 = torch.cat([session.forward(ours, x, "bf16")() for x in inputs])
    error = (bf16 - fp32).abs()
    return dict(
        clips=len(fp32),
        inputs="videos" if session.videos else "random",
        max_abs_logit_error=error.max().item(),
        mean_abs_logit_error=error.mean().item(),
        max_abs_logit=fp32.abs().max().item(),
        top1_agreement=(bf16.argmax(-1) == fp32.argmax(-1)).float().mean().item(),
    )
