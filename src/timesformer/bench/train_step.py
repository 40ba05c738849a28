"""Training step: forward + backward + SGD, as the trainer runs it (autocast; fp16 through the
same GradScaler), optionally with activation checkpointing, and transformers' model in the same
loop when it is compared. Drop path is off in both, so that both do the same work."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..model.timesformer import TimeSformer
from .flops import timesformer_flops
from .session import BenchSession, autocast
from .timing import interleaved, paired_speedup
from .transformers_model import transformers_model


def make_step(session: BenchSession, model: torch.nn.Module, precision: str, transformers: bool = False):
    """One step's callable per (x, labels, checkpointing); fp16 scales the loss as the trainer does."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(session.device.type) if precision == "fp16" else None

    def step(x: torch.Tensor, labels: torch.Tensor, checkpointing: bool = False):
        def call():
            if not transformers:
                model.config.grad_checkpointing = checkpointing
            optimizer.zero_grad(set_to_none=True)
            with autocast(session.device, precision):
                logits = model(pixel_values=x).logits if transformers else model(x)
            loss = F.cross_entropy(logits.float(), labels)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                scaler.step(optimizer)
                scaler.update()
            return loss.item()

        return call

    return step


def bench_train(session: BenchSession) -> None:
    options = session.options
    config = dataclasses.replace(session.config, grad_checkpointing=False, drop_path_rate=0.0)
    ours = TimeSformer(config).to(session.device).train()
    theirs = transformers_model(config).to(session.device).train() if options.compare_transformers else None
    for batch in options.batch:
        x = session.clip_batch(batch)
        labels = torch.arange(batch, device=session.device) % config.num_classes
        cases = {}
        for precision in options.precision:
            step = make_step(session, ours, precision)
            for checkpointing in (False, True) if options.checkpointing else (False,):
                cases[("ours+checkpointing" if checkpointing else "ours", precision)] = step(x, labels, checkpointing)
            if theirs is not None:
                their_step = make_step(session, theirs, precision, transformers=True)
                cases[("transformers", precision)] = their_step(x.transpose(1, 2).contiguous(), labels)
        timings = interleaved(cases, session.device, options.repeat, options.warmup, f"train batch {batch}")
        # Useful work: forward + backward = 3 forwards (checkpointing's recomputation not counted).
        flops = 3 * timesformer_flops(config, batch)
        for (impl, precision), timing in timings.items():
            note = "GradScaler" if precision == "fp16" else ""
            session.record("train", impl, timing, precision, batch, clips=batch, flops=flops, note=note)
        for precision in options.precision:
            plain = timings[("ours", precision)]
            if ("transformers", precision) in timings:
                session.ratio("train", "ours_vs_transformers", paired_speedup(plain, timings[("transformers", precision)]),
                              "train-step speedup of ours over transformers (>1: ours faster)", precision=precision, batch=batch)  # fmt: skip
            if options.checkpointing:
                ckpt = timings[("ours+checkpointing", precision)]
                session.ratio("train", "checkpointing_time", paired_speedup(plain, ckpt),
                              "step time with / without activation checkpointing", precision=precision, batch=batch)  # fmt: skip
                if plain.peak_mem_mb and ckpt.peak_mem_mb:
                    session.ratio("train", "checkpointing_memory", ckpt.peak_mem_mb / plain.peak_mem_mb,
                                  "peak memory with / without activation checkpointing", precision=precision, batch=batch)  # fmt: skip
