"""Load test of `timesformer serve` on 127.0.0.1: concurrent clients against sequential ones
and against `timesformer predict`'s loop in one process, on the same videos.

    python benchmarks/serve_load.py --model tiny --requests 200 --clients 8
    python benchmarks/serve_load.py --model vit_b --precision bf16 --requests 24 --clients 4 --sequential 6

Prints a Markdown table (throughput, p50/p99 latency, batch sizes seen, errors) with the CPU
model name and the machine's load average. The weights are random (throughput does not
depend on them); the videos are synthetic H.264 MP4s of a moving square over noise.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import httpx
import numpy as np
import torch

from timesformer.cpu import cpu_info
from timesformer.inference import Predictor
from timesformer.model.checkpoints import save_model
from timesformer.model.timesformer import build_model

MODELS = {
    # A small model (the demo's scale): decoding and HTTP dominate, batching amortizes the rest.
    "tiny": dict(img_size=64, patch_size=16, num_classes=400, embed_dim=96, depth=2, num_heads=3, num_frames=8),
    "vit_b": dict(img_size=224, patch_size=16, num_classes=400, embed_dim=768, depth=12, num_heads=12, num_frames=8),
}


def write_video(path: Path, frames: int, width: int, height: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
            x = (5 * t) % (width - 24)
            image[height // 2 - 12 : height // 2 + 12, x : x + 24] = 230
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def batch_histogram(metrics: str) -> dict[int, int]:
    """Model calls by batch size bound, from the cumulative Prometheus buckets."""
    cumulative = {int(float(le)): int(n) for le, n in re.findall(r'timesformer_batch_size_bucket\{le="([0-9.]+)"\} (\d+)', metrics)}
    out, previous = {}, 0
    for bound in sorted(cumulative):
        out[bound] = cumulative[bound] - previous
        previous = cumulative[bound]
    return out


def start_server(weights: Path, args) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "timesformer", "serve", "-w", str(weights), "--port", "0",
               "--max_batch", str(args.max_batch), "--max_wait_ms", str(args.max_wait_ms),
               "--workers", str(args.workers), "--precision", args.precision]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    if not match:
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return process, match.group(1)


def load(url: str, videos: list[Path], requests: int, clients: int) -> dict:
    """`requests` uploads, round-robin over the videos, from `clients` threads; latencies and errors."""
    payloads = [v.read_bytes() for v in videos]
    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(requests))

    def client():
        with httpx.Client(timeout=600) as session:
            for i in counter:  # next() on a shared iterator is atomic under the GIL
                started = time.perf_counter()
                response = session.post(f"{url}/predict", files={"file": (f"v{i}.mp4", payloads[i % len(payloads)], "video/mp4")})
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        errors.append(response.status_code)

    before = batch_histogram(httpx.get(f"{url}/metrics").text)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    seconds = time.perf_counter() - started
    after = batch_histogram(httpx.get(f"{url}/metrics").text)
    batches = {b: after[b] - before.get(b, 0) for b in after if after[b] - before.get(b, 0)}
    return dict(seconds=seconds, requests=requests, latencies=latencies, errors=len(errors), batches=batches)


def predict_loop(weights: Path, videos: list[Path], requests: int, precision: str) -> dict:
    """What `timesformer predict -w W -i LIST` runs, in this process: decode ahead, batch 1."""
    predictor = Predictor.from_weights(weights, precision=precision)
    paths = [str(videos[i % len(videos)]) for i in range(requests)]
    started = time.perf_counter()
    results = list(predictor.iter_predict(paths, top_k=5, batch_size=1))
    seconds = time.perf_counter() - started
    return dict(seconds=seconds, requests=requests, latencies=[], errors=sum(1 for r in results if isinstance(r, Exception)), batches={1: requests})


def row(name: str, result: dict, baseline: float) -> str:
    throughput = result["requests"] / result["seconds"]
    lat = result["latencies"]
    p50 = f"{1000 * percentile(lat, 50):.0f}" if lat else "–"
    p99 = f"{1000 * percentile(lat, 99):.0f}" if lat else "–"
    batches = ", ".join(f"≤{b}: {n}" for b, n in sorted(result["batches"].items()))
    return f"| {name} | {result['requests']} | {throughput:.2f} | {throughput / baseline:.2f}x | {p50} | {p99} | {batches} | {result['errors']} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=None, help="requests of the sequential runs (default: --requests)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--videos", type=int, default=8, help="distinct videos, sent round-robin")
    parser.add_argument("--max_batch", type=int, default=8)
    parser.add_argument("--max_wait_ms", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve_load_") as work:
        run(Path(work), args)


def run(work: Path, args) -> None:
    sequential = args.sequential or args.requests
    torch.manual_seed(0)
    weights = work / f"{args.model}.safetensors"
    save_model(build_model(**MODELS[args.model]), weights)
    videos = [write_video(work / f"v{i}.mp4", frames=75, width=320, height=240, seed=i) for i in range(args.videos)]

    loop = predict_loop(weights, videos, sequential, args.precision)
    process, url = start_server(weights, args)
    try:
        load(url, videos[:1], 2, 1)  # warm-up
        one = load(url, videos, sequential, 1)
        many = load(url, videos, args.requests, args.clients)
    finally:
        process.terminate()
        process.wait(30)

    baseline = one["requests"] / one["seconds"]
    info = cpu_info()
    print(f"{args.model} ({MODELS[args.model]['embed_dim']}-d, depth {MODELS[args.model]['depth']}, "
          f"{MODELS[args.model]['num_frames']}x{MODELS[args.model]['img_size']}px, 3 views), {args.precision}; "
          f"videos 320x240, 3 s, H.264; --max_batch {args.max_batch} --max_wait_ms {args.max_wait_ms:g} "
          f"--workers {args.workers}")  # fmt: skip
    print(f"CPU: {info.model_name}, {os.cpu_count()} cores; load average before: {LOAD_BEFORE}, after: {os.getloadavg()[0]:.2f}")
    print()
    print("| run | requests | videos/s | vs sequential requests | p50 ms | p99 ms | model calls by batch size | errors |")
    print("|---|---|---|---|---|---|---|---|")
    print(row("`timesformer predict` loop, one process", loop, baseline))
    print(row("server, 1 client (sequential requests)", one, baseline))
    print(row(f"server, {args.clients} concurrent clients", many, baseline))


LOAD_BEFORE = f"{os.getloadavg()[0]:.2f}"

if __name__ == "__main__":
    main()
