"""Data loading for training: DataLoader over `VideoListDataset` (PaddleVideo's train pipeline)
feeding a forward pass (reader_cost = waiting for the batch, batch_cost = reader_cost +
forward), and the loader alone in clips/s against the training step's rate.

Two feeds, as `timesformer train` had them and has them: "float" (the CPU normalizes, float32
crosses to the device) and "pixels" (the engine's: pixel values cross, uint8 where no frame
was scaled, and the device normalizes). Workers and threads per decode come from
`data_threads`, as in training: run under `LOCAL_WORLD_SIZE=8` to see one rank's share of an
8-GPU machine.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from tqdm import tqdm

from .session import BenchSession
from .timing import Timing, synchronize

FEEDS = ("float", "pixels")


def train_dataset(session: BenchSession, samples: int, normalize: bool = True):
    from ..data.datasets import VideoListDataset
    from ..data.pipeline import VideoPipeline

    c = session.config
    list_file = session.workdir / "loader_list.txt"
    list_file.write_text("".join(f"{session.videos[i % len(session.videos)]} 0\n" for i in range(samples)))
    # PaddleVideo's training pipeline (short side in [256, 320] for 224 crops, random crop, flip).
    pipeline = VideoPipeline.for_mode(
        "train", c.num_frames, short_side_min=round(c.img_size * 256 / 224),
        short_side_max=round(c.img_size * 320 / 224), crop_size=c.img_size,
    )  # fmt: skip
    return VideoListDataset(list_file, pipeline=pipeline, mode="train", normalize=normalize)


def bench_loader(session: BenchSession) -> None:
    from ..data.datasets import collate_samples
    from ..data.video import data_threads
    from ..engine.loaders import clips_to_device

    options, device = session.options, session.device
    batch = max(options.batch)
    samples = max(len(session.videos), 4 * batch)
    precision = options.precision[0]
    model = session.model()
    step_rate = session.train_rate(precision, batch)
    for workers in options.workers:
        threads = data_threads(workers)
        for feed in FEEDS:
            dataset = train_dataset(session, samples, normalize=feed == "float")
            dataset.pipeline.decode_threads = threads.decode_threads

            def make_loader():
                return torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=threads.workers,
                                                   collate_fn=collate_samples, pin_memory=device.type == "cuda")  # fmt: skip

            reader, batch_costs, clip_bytes, dtypes = [], [], [], set()
            start = previous = time.perf_counter()
            for item in tqdm(make_loader(), desc=f"loader {feed} workers={threads.workers}", leave=False, disable=None,
                             file=sys.stderr):  # fmt: skip
                loaded = time.perf_counter()
                pixels = item["clip"]
                clip_bytes.append(pixels.nbytes / (pixels.shape[0] * pixels.shape[1]))
                dtypes.add(str(pixels.dtype).removeprefix("torch."))
                clips = clips_to_device(pixels, dataset, device)
                session.forward(model, clips, precision)()
                synchronize(device)
                done = time.perf_counter()
                reader.append(loaded - previous)
                batch_costs.append(done - previous)
                previous = done
            total = time.perf_counter() - start
            # The first batch waits for worker start-up and a full first read: reported apart.
            steady = slice(1, None) if len(reader) > 1 else slice(None)
            timing = Timing(batch_costs[steady], batch_costs[0], None)
            loader_rate = data_only_rate(make_loader())
            session.record("loader", f"{feed} feed, workers={threads.workers}", timing, precision, batch, clips=batch,
                           reader_cost_s=statistics.mean(reader[steady]), batch_cost_s=statistics.mean(batch_costs[steady]),
                           first_batch_s=batch_costs[0], samples=samples, samples_per_s_overall=samples / total,
                           loader_clips_per_s=loader_rate, train_step_clips_per_s=step_rate,
                           bytes_per_clip=statistics.mean(clip_bytes), feed_dtype=",".join(sorted(dtypes)),
                           decode_threads=threads.decode_threads, data_threads=threads.describe(),
                           note="train pipeline; batch_cost = reader_cost + forward")  # fmt: skip
            if step_rate and loader_rate:
                session.ratio("loader", "loader_vs_step", loader_rate / step_rate,
                              "loader clips/s alone / train-step clips/s (>= 1: data keeps up)", workers=threads.workers,
                              batch=batch, feed=feed)  # fmt: skip


def data_only_rate(loader) -> float | None:
    """Clips per second the loader delivers with nothing else running (after its first batch)."""
    iterator = iter(loader)
    next(iterator)
    start, clips = time.perf_counter(), 0
    for item in iterator:
        clips += item["clip"].shape[0] * item["clip"].shape[1]
    elapsed = time.perf_counter() - start
    return clips / elapsed if clips else None
