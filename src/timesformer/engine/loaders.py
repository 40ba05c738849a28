"""The datasets of a config's splits and the DataLoaders that deliver their batches.

Clips leave the workers as pixel values (uint8 unless the frames were scaled), pinned for
CUDA, and are normalized on the device (`clips_to_device`): the float32 tensor the model sees
is the one the CPU pipeline would have made, for a quarter of the host memory and copy.
"""

from __future__ import annotations

import signal

import torch
from torch.utils.data import DataLoader, Sampler

from ..data.datasets import FrameListDataset, VideoListDataset, collate_samples
from ..data.video import DataThreads
from ..errors import UserError
from .config import Config, build_pipeline, require_file


def build_dataset(cfg: Config, split: str, seed: int):
    """The dataset of `DATASET.<split>` with the `PIPELINE.<split>` transforms; its clips are
    pixel values, for `clips_to_device` to normalize."""
    section = getattr(cfg.DATASET, split)
    if section is None or getattr(cfg.PIPELINE, split) is None:
        raise UserError(f"the config has no DATASET.{split} / PIPELINE.{split} section")
    require_file(section.file_path, f"DATASET.{split}.file_path")
    pipeline = build_pipeline(cfg, split)
    if cfg.DATASET.cache and (pipeline.crop == "random" or pipeline.flip or pipeline.short_side_min != pipeline.short_side_max):
        raise UserError(f"DATASET.cache: true needs PIPELINE.{split} without RandomCrop, RandomFlip or a JitterScale range "
                        "(a cached clip would repeat one draw every epoch)")
    dataset_class = FrameListDataset if section.format == "FrameDataset" else VideoListDataset
    dataset = dataset_class(
        section.file_path, data_prefix=section.data_prefix, suffix=section.suffix,
        pipeline=pipeline, mode=split, seed=seed, cache=cfg.DATASET.cache, normalize=False,
    )  # fmt: skip
    num_classes = cfg.MODEL.head.num_classes
    for entry in dataset.entries:
        if not 0 <= entry.label < num_classes:
            raise UserError(
                f"{section.file_path}: {entry.path} has label {entry.label}, outside 0..{num_classes - 1} "
                f"(MODEL.head.num_classes={num_classes})"
            )
    return dataset


def ignore_stop_signals_in_worker(worker_id: int) -> None:
    """DataLoader workers get the terminal's Ctrl-C and the scheduler's SIGTERM too (they share the
    process group); only the main process may act on them (workers end with it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset, batch_sampler: Sampler, threads: DataThreads, device: torch.device) -> DataLoader:
    """Batches of `collate_samples`, pinned for CUDA, decoded as `threads` says (no more workers
    than batches: more would only cost start-up time)."""
    workers = min(threads.workers, len(batch_sampler))
    dataset.pipeline.decode_threads = threads.decode_threads
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=device.type == "cuda",
        worker_init_fn=ignore_stop_signals_in_worker if workers else None,
        # Augmentation depends on the (epoch, index) keys only, so keeping workers alive across
        # epochs changes nothing but the start-up time.
        persistent_workers=workers > 0,
    )


def clips_to_device(clips: torch.Tensor, dataset, device: torch.device) -> torch.Tensor:
    """A batch's clips `[B, V, 3, T, H, W]` from `dataset` -> the model's float32 `[B*V, 3, T, H, W]`
    on `device`: copied as they are (asynchronously from pinned memory), then normalized there
    with the dataset's pipeline when the dataset delivers pixel values (`normalize=False`)."""
    clips = clips.to(device, non_blocking=True).flatten(0, 1)
    return clips if dataset.normalize else dataset.pipeline.normalize(clips)
