"""Timeline of a long video against its floor: one bare sequential decode + the model's time for its windows.

    .venv/bin/python benchmarks/timeline_long_video.py [--minutes 10] [--window 8] [--model small]

Makes (once, cached in --workdir) a 720p H.264 video of `--minutes` with the bench's clip
writer, then, interleaved over `--rounds`:
  decode   - PyAV decoding every frame with frame threads, nothing converted (the floor)
  model    - the engine on the windows' clips alone, already in memory, same batches
  timeline - `Predictor.timeline`: one decoding pass, only the sampled frames converted,
             decoding and transforms in a thread ahead of the model
and prints the three figures and timeline / (decode + model), which must stay <= 1.3.
`bench_timeline` is the function the bench package can call.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

MODELS = {  # 8 frames at 224: ViT-B, and a small one so that decoding weighs as much as the model
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "small": dict(embed_dim=192, depth=4, num_heads=3),
}


def bench_timeline(video: str | Path, weights: str | Path, window: float, stride: float | None, precision: str,
                   batch_size: int = 4, rounds: int = 1) -> dict:  # fmt: skip
    from timesformer.bench.clips import decode_all_frames
    from timesformer.inference import Predictor
    from timesformer.inference.windows import plan_windows, probe

    predictor = Predictor.from_weights(weights, precision=precision)
    windows = plan_windows(probe(video), window, stride, predictor.spec.num_seg)
    shape = (3, predictor.spec.views * predictor.spec.num_seg, predictor.spec.target_size, predictor.spec.target_size)
    clips = torch.randn(len(windows), *shape)

    def model_only():
        for i in range(0, len(windows), batch_size):
            predictor.scores(clips[i : i + batch_size])

    cases = {
        "decode": lambda: decode_all_frames(video),
        "model": model_only,
        "timeline": lambda: predictor.timeline(video, window, stride, batch_size=batch_size),
    }
    predictor.scores(clips[:batch_size])  # warm-up: oneDNN primitives
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            seconds[name].append(time.perf_counter() - started)
    best = {name: min(times) for name, times in seconds.items()}
    return {
        "windows": len(windows),
        "precision": predictor.engine.precision,
        "seconds": best,
        "all_seconds": seconds,
        "ratio_timeline_vs_decode_plus_model": best["timeline"] / (best["decode"] + best["model"]),
    }


def main() -> None:
    from timesformer.bench.clips import make_test_video, video_description
    from timesformer.cpu import cpu_info
    from timesformer.model.checkpoints import save_model
    from timesformer.model.timesformer import build_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--stride", type=float, default=None)
    parser.add_argument("--model", choices=tuple(MODELS), default="small")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workdir", default="/tmp/timesformer_timeline_bench")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    video = workdir / f"long_{args.minutes:g}min_720p.mp4"
    if not video.exists():
        started = time.perf_counter()
        make_test_video(workdir / ".partial.mp4", seconds=args.minutes * 60, width=1280, height=720).rename(video)
        print(f"made {video} in {time.perf_counter() - started:.0f} s")
    torch.manual_seed(0)
    weights = save_model(build_model(num_frames=8, img_size=224, num_classes=400, **MODELS[args.model]), workdir / f"{args.model}.safetensors")
    result = bench_timeline(video, weights, args.window, args.stride, args.precision, args.batch_size, args.rounds)
    result.update(video=video_description(video), model=args.model, cpu=cpu_info().model_name, torch_threads=torch.get_num_threads(),
                  python=platform.python_version(), window=args.window, stride=args.stride or args.window)  # fmt: skip
    s = result["seconds"]
    print(json.dumps(result, indent=2))
    print(f"| decode {s['decode']:.1f} s | model {s['model']:.1f} s | timeline {s['timeline']:.1f} s | "
          f"timeline / (decode + model) = {result['ratio_timeline_vs_decode_plus_model']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
