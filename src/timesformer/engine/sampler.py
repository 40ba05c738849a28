"""Which sample goes where: the layout-invariant order of an epoch, exact evaluation shards, and the
datasets and DataLoaders that deliver them.

Training order depends only on (seed, epoch): one global permutation per epoch. Its consecutive
runs of `global_batch_size` samples are the global batches, one per optimizer step. Every layout
(world size W, micro-batch b, accumulation A with W * b * A = global_batch_size) splits a global
batch into the same set of samples, so with the loss scaled to the mean over the global batch, the
gradient of an optimizer step does not depend on the layout. The dataset receives `(epoch, index)`
keys, so a sample's augmentation does not depend on it either.

Tail rule: the last partial global batch of an epoch is dropped (each epoch's permutation differs,
so a different tail is left out each time). Keeping it would give its step a different batch size
under different layouts, and ranks without a sample would have nothing to back-propagate.

Evaluation: rank r takes indices r, r + W, r + 2W, ... without padding, so every sample is counted
exactly once when the per-sample results are gathered.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..data.datasets import FrameListDataset, VideoListDataset, collate_samples
from ..errors import ConfigError, UserError
from .config import Config, build_pipeline, require_file

# Separate the random streams derived from one seed, so that e.g. the permutation of epoch 1 and the
# drop-path noise of epoch 1 are unrelated.
PERMUTATION_STREAM = 0
DROPOUT_STREAM = 1


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from non-negative integers (seed, stream, epoch, step, ...)."""
    words = np.random.SeedSequence(list(parts)).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the samples in `epoch` (0-based): a function of (seed, epoch) only."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, PERMUTATION_STREAM, epoch]))
    return rng.permutation(num_samples)


@dataclass(frozen=True)
class BatchLayout:
    """How one optimizer step's global batch is split: world_size ranks x accumulation micro-batches."""

    global_batch_size: int
    batch_size: int  # per rank and micro-batch
    world_size: int = 1
    rank: int = 0

    @property
    def accumulation(self) -> int:
        return self.global_batch_size // (self.batch_size * self.world_size)

    def micro_batch_offset(self, micro: int) -> int:
        """Start, inside the global batch, of this rank's `micro`-th micro-batch."""
        return (micro * self.world_size + self.rank) * self.batch_size


class TrainBatchSampler(Sampler):
    """Yields this rank's micro-batches of `(epoch, index)` keys, A per optimizer step.

    `set_epoch(epoch, start_step)` selects the epoch and, after a mid-epoch resume, the first step.
    """

    def __init__(self, num_samples: int, layout: BatchLayout, seed: int):
        if num_samples < layout.global_batch_size:
            raise ConfigError(
                f"GRADIENT_ACCUMULATION.global_batch_size={layout.global_batch_size} is larger than "
                f"the training set ({num_samples} samples): not one optimizer step per epoch"
            )
        self.num_samples = num_samples
        self.layout = layout
        self.seed = seed
        self.epoch = 0
        self.start_step = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.layout.global_batch_size

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch = epoch
        self.start_step = start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.layout.accumulation

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_permutation(self.num_samples, self.seed, self.epoch)
        size, b = self.layout.global_batch_size, self.layout.batch_size
        for step in range(self.start_step, self.steps_per_epoch):
            for micro in range(self.layout.accumulation):
                start = step * size + self.layout.micro_batch_offset(micro)
                yield [(self.epoch, int(i)) for i in order[start : start + b]]


class EvalBatchSampler(Sampler):
    """This rank's share of an evaluation set (indices rank::world_size), in batches, no padding."""

    def __init__(self, num_samples: int, batch_size: int, world_size: int = 1, rank: int = 0, epoch: int = 0):
        self.indices = list(range(rank, num_samples, world_size))
        self.batch_size = batch_size
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for start in range(0, len(self.indices), self.batch_size):
            yield [(self.epoch, i) for i in self.indices[start : start + self.batch_size]]


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


def ignore_sigint_in_worker(worker_id: int) -> None:
    """DataLoader workers get the terminal's Ctrl-C too; only the main process may act on it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
        worker_init_fn=ignore_sigint_in_worker if workers else None,
        # Augmentation depends on the (epoch, index) keys only, so keeping workers alive across
        # epochs changes nothing but the start-up time.
        persistent_workers=workers > 0,
    )
