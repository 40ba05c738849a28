"""Tuning experiments for `timesformer demo`: what makes frame order easy to learn?

Standalone: renders motion clips in memory (or decodes a `data synth` dataset once), keeps
them as tensors, and trains a TimeSformer with a plain loop, printing val top-1 per epoch
as JSON lines. Used to pick the values of configs/demo_motion.yaml; not part of the package.

    python benchmarks/demo_tuning/tune.py --attention divided_space_time --seeds 0 1 2 \
        --train 1000 --val 200 --epochs 20 --lr 1e-3 --out results.jsonl
    python benchmarks/demo_tuning/tune.py --table results.jsonl     # the table of results.md

Each run of results.md is one command line: its `args` in results.jsonl are the flags.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DIRECTIONS = ((1, 0), (-1, 0), (0, -1), (0, 1))  # → ← ↑ ↓ as (dx, dy)


def render_clips(n: int, frames: int, size: int, obj: int, speed: float, noise: float,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips [n,3,T,S,S] (normalized like the pipeline) of a square moving in one of 4 directions.

    The start is uniform over the positions that keep the whole path inside the frame, so the
    set of visited positions has the same distribution for → and ← (only order differs).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    travel = speed * (frames - 1)
    clips = np.empty((n, frames, size, size, 3), np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    for i, label in enumerate(labels):
        dx, dy = DIRECTIONS[label]
        bg = rng.uniform(0.0, 0.4, 3).astype(np.float32)
        fg = rng.uniform(0.6, 1.0, 3).astype(np.float32)
        # Along the motion axis the path must fit; across it, anywhere.
        lo_along = 0.0
        hi_along = size - obj - travel
        start_along = rng.uniform(lo_along, hi_along)
        start_across = rng.uniform(0, size - obj)
        for t in range(frames):
            along = start_along + travel * t / (frames - 1) if frames > 1 else start_along
            if dx < 0 or dy < 0:  # moving toward 0: mirror the path
                along = hi_along - (along - lo_along) + lo_along
            x0, y0 = (along, start_across) if dx != 0 else (start_across, along)
            # Anti-aliased square: coverage of each pixel, so sub-pixel motion is visible.
            cx = np.clip(np.minimum(xs + 1, x0 + obj) - np.maximum(xs, x0), 0, 1)
            cy = np.clip(np.minimum(ys + 1, y0 + obj) - np.maximum(ys, y0), 0, 1)
            cover = (cx * cy)[..., None]
            clips[i, t] = bg * (1 - cover) + fg * cover
    clips += rng.normal(0, noise, clips.shape).astype(np.float32)
    clips = (np.clip(clips, 0, 1) - 0.45) / 0.225
    return torch.from_numpy(clips).permute(0, 4, 1, 2, 3).contiguous(), torch.from_numpy(labels)


def render_synth_clip(label: int, rng: np.random.Generator, args) -> np.ndarray:
    """timesformer.data.synth.render_motion_clip, with the colour scheme as an experiment knob."""
    t, s, k = args.frames, args.size, int(args.obj)
    room = s - k
    speed = rng.uniform(args.speed, args.speed_max or args.speed)
    travel = min(speed * (t - 1), room)
    start = rng.uniform(0, room - travel)
    forward = np.round(start + np.linspace(0.0, travel, t)).astype(int)
    along = forward if label in (0, 3) else forward[::-1]
    across = np.full(t, rng.integers(0, room + 1))
    xs, ys = (along, across) if label in (0, 1) else (across, along)
    if args.colors == "random":  # the package's scheme: any background, a far-away object colour
        background = rng.integers(0, 256, size=3)
        color = (background + 128 + rng.integers(-40, 41, size=3)) % 256
    else:  # "dark": dark background, bright object, grey levels jittered
        background = np.full(3, rng.integers(0, 80))
        color = np.full(3, rng.integers(176, 256))
    frames = np.empty((t, s, s, 3))
    frames[:] = background
    for i in range(t):
        frames[i, ys[i]: ys[i] + k, xs[i]: xs[i] + k] = color
    frames += rng.normal(0.0, args.noise * 255, size=frames.shape)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def synth_clips(n: int, args, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips as `data synth` draws them (before encoding), labels i % 4 as it writes them."""
    labels = np.arange(n) % 4
    clips = np.stack([render_synth_clip(int(l), np.random.default_rng([seed, i]), args)
                      for i, l in enumerate(labels)]).astype(np.float32) / 255
    clips = (clips - 0.45) / (0.225 / args.input_scale)  # Normalization std = 0.225 / input_scale
    return torch.from_numpy(clips).permute(0, 4, 1, 2, 3).contiguous(), torch.from_numpy(labels)


def build(attention: str, args) -> torch.nn.Module:
    if args.model == "hf":  # the prototype's model (transformers' TimeSformer)
        from transformers import TimesformerConfig, TimesformerForVideoClassification

        hf = TimesformerForVideoClassification(TimesformerConfig(
            image_size=args.size, patch_size=args.patch, num_channels=3, num_frames=args.frames,
            hidden_size=args.width, num_hidden_layers=args.depth, num_attention_heads=args.heads,
            intermediate_size=4 * args.width, attention_type=attention, num_labels=4))

        class HF(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.hf = hf

            def forward(self, x):  # ours [B,3,T,H,W] -> HF [B,T,3,H,W]
                return self.hf(pixel_values=x.transpose(1, 2)).logits

        return HF()
    from timesformer.model.timesformer import build_model

    model = build_model(img_size=args.size, patch_size=args.patch, in_chans=3, num_classes=4,
                        embed_dim=args.width, depth=args.depth, num_heads=args.heads,
                        num_frames=args.frames, attention_type=attention,
                        drop_path_rate=args.drop_path)
    if args.time_embed_std and hasattr(model, "time_embed"):
        with torch.no_grad():
            torch.nn.init.trunc_normal_(model.time_embed, std=args.time_embed_std)
    if args.time_embed_sincos and hasattr(model, "time_embed"):
        with torch.no_grad():
            table = sincos_1d(args.frames, args.width)
            if args.time_embed_center:  # drop the part common to all frames (a constant offset)
                table = table - table.mean(dim=1, keepdim=True)
            model.time_embed.copy_(args.time_embed_sincos * table)
    return model


def sincos_1d(length: int, dim: int) -> torch.Tensor:
    """[1, length, dim] sin/cos of the position at dim/2 frequencies (as in MAE's pos embed)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = torch.arange(length, dtype=torch.float64)[:, None] * omega[None]
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()[None]


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "cosine":
        p = (step - warmup) / max(1, total - warmup)
        return base * 0.5 * (1 + math.cos(math.pi * p))
    return base


def run_one(attention: str, seed: int, data, args) -> dict:
    xtr, ytr, xva, yva = data
    torch.manual_seed(seed)
    model = build(attention, args)
    if args.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd,
                                betas=(0.9, args.beta2))
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                              weight_decay=args.wd)
    steps_per_epoch = math.ceil(len(xtr) / args.batch)
    total = steps_per_epoch * args.epochs
    warmup = int(args.warmup_epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    curve, losses = [], []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    step = 0
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        tot = 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, args.lr, args.schedule)
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            tot += loss.item() * len(idx)
            step += 1
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xva[i:i + 256]).argmax(1) for i in range(0, len(xva), 256)])
        acc = (pred == yva).float().mean().item()
        curve.append(round(acc, 4))
        losses.append(round(tot / len(xtr), 4))
        if args.verbose:
            print(f"  {attention} seed {seed} epoch {epoch + 1}: loss {losses[-1]:.3f} val {acc:.3f}"
                  f" ({time.perf_counter() - wall0:.0f}s)", flush=True)
        if args.stop_at and acc >= args.stop_at and epoch + 1 >= args.min_epochs:
            break
    return dict(attention=attention, seed=seed, curve=curve, loss=losses,
                cpu_s=round(time.process_time() - cpu0, 1),
                wall_s=round(time.perf_counter() - wall0, 1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--attention", nargs="+", default=["divided_space_time"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--obj", type=float, default=6)
    p.add_argument("--speed", type=float, default=2.0)
    p.add_argument("--speed_max", type=float, default=0.0)
    p.add_argument("--noise", type=float, default=0.05, help="std, 0..1 units")
    p.add_argument("--input_scale", type=float, default=1.0)
    p.add_argument("--colors", default="random", choices=["random", "dark"])
    p.add_argument("--renderer", default="synth", choices=["synth", "antialiased"])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--drop_path", type=float, default=0.0)
    p.add_argument("--time_embed_std", type=float, default=0.0)
    p.add_argument("--time_embed_sincos", type=float, default=0.0, help="amplitude of a sin/cos init")
    p.add_argument("--time_embed_center", action="store_true")
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--warmup_epochs", type=float, default=0.0)
    p.add_argument("--schedule", default="constant")
    p.add_argument("--clip", type=float, default=0.0)
    p.add_argument("--stop_at", type=float, default=0.0)
    p.add_argument("--min_epochs", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data_seed", type=int, default=-1, help="-1: same as the run seed")
    p.add_argument("--model", default="package", choices=["package", "hf"])
    p.add_argument("--out", default="")
    p.add_argument("--tag", default="")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--table", metavar="JSONL", help="only print the curves of a results file as a Markdown table")
    args = p.parse_args()
    if args.table:
        print_table(args.table)
        return
    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        ds = seed if args.data_seed < 0 else args.data_seed
        if args.renderer == "synth":
            xtr, ytr = synth_clips(args.train, args, 1000 + ds)
            xva, yva = synth_clips(args.val, args, 2000 + ds)
        else:
            xtr, ytr = render_clips(args.train, args.frames, args.size, args.obj, args.speed,
                                    args.noise, 1000 + ds)
            xva, yva = render_clips(args.val, args.frames, args.size, args.obj, args.speed,
                                    args.noise, 2000 + ds)
        for attention in args.attention:
            result = run_one(attention, seed, (xtr, ytr, xva, yva), args)
            result.update(tag=args.tag, args={k: v for k, v in vars(args).items()
                                              if k not in ("out", "verbose", "seeds", "attention")})
            line = json.dumps(result)
            print(f"{args.tag} {attention} seed {seed}: best {max(result['curve']):.3f} "
                  f"last {result['curve'][-1]:.3f} cpu {result['cpu_s']}s wall {result['wall_s']}s "
                  f"curve {result['curve']}", flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")


TABLE_KEYS = ("colors", "input_scale", "time_embed_std", "patch", "obj", "train", "batch", "lr", "wd",
              "warmup_epochs", "schedule", "clip")


def print_table(path: str) -> None:
    """The per-epoch validation curves of a results file as a Markdown table (as in results.md)."""
    print("| tag | attention | seed | settings | epochs to ≥0.95 | best | cpu s | curve (val top-1 per epoch) |")
    print("|---|---|---|---|---|---|---|---|")
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        settings = " ".join(f"{k}={r['args'][k]}" for k in TABLE_KEYS if k in r["args"])
        hit = next((i + 1 for i, v in enumerate(r["curve"]) if v >= 0.95), "-")
        curve = " ".join(f"{v:.2f}" for v in r["curve"])
        print(f"| {r['tag']} | {r['attention']} | {r['seed']} | {settings} | {hit} | {max(r['curve']):.3f} | "
              f"{r['cpu_s']} | {curve} |")


if __name__ == "__main__":
    main()
