"""The datasets of a config's splits and the DataLoaders that deliver their batches."""

from __future__ import annotations

import os
import signal

import torch
from torch.utils.data import DataLoader, Sampler

from ..data.datasets import FrameListDataset, VideoListDataset, collate_samples
from ..errors import UserError
from .config import Config, build_pipeline, require_file


def build_dataset(cfg: Config, split: str, seed: int):
    """The dataset of `DATASET.<split>` with the `PIPELINE.<split>` transforms."""
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
        pipeline=pipeline, mode=split, seed=seed, cache=cfg.DATASET.cache,
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


def make_loader(dataset, batch_sampler: Sampler, cfg: Config, device: torch.device) -> DataLoader:
    """Batches of `collate_samples`, pinned for CUDA; workers as `DATASET.num_workers` says."""
    # More workers than batches or than CPUs only costs start-up time.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(cfg.DATASET.num_workers, len(batch_sampler), cpus)
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
