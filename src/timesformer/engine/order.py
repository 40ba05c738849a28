"""Which sample goes where: the layout-invariant order of an epoch and exact evaluation shards.

Training order depends only on (seed, epoch): one global permutation per epoch. Its consecutive
runs of `global_batch_size` samples are the global batches, one per optimizer step. Every layout
(world size W, micro-batch b, accumulation A with W * b * A = global_batch_size) splits a global
batch into the same set of samples, so with the loss scaled to the mean over the global batch, the
gradient of an optimizer step does not depend on the layout. The dataset receives `(epoch, index)`
keys, so a sample's augmentation does not depend on it either.

Tail rule: the last partial global batch of an epoch is dropped (each epoch's permutation differs,
so a different tail is left out each time). Keeping it would give its step a different batch size
under different layouts, and ranks without a sample would have nothing to back-propagate.

Class-balanced order (`DATASET.sampler: balanced`): each epoch draws as many samples as the set
holds, with replacement, each with probability proportional to 1 / (its class's count), so every
class is drawn equally often on average. It is a function of (seed, epoch, labels) too: the same on
every rank, for every layout, and after a resume. A sample drawn twice in one epoch gets the same
augmentation both times (augmentation is keyed by (seed, epoch, index)).

Evaluation: rank r takes indices r, r + W, r + 2W, ... without padding, so every sample is counted
exactly once when the per-sample results are gathered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from ..errors import ConfigError

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


def class_balanced_order(labels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """`len(labels)` indices drawn with replacement, each with probability 1 / (count of its class)
    / (number of classes present): every class equally likely. A function of (seed, epoch, labels)."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    rng = np.random.default_rng(np.random.SeedSequence([seed, PERMUTATION_STREAM, epoch]))
    return rng.choice(len(labels), size=len(labels), replace=True, p=weights / weights.sum())


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Loss weight per class, `n / (k * count)` over the k classes present (mean weight per sample 1);
    0 for classes absent from the training set. A function of the list file only."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


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

    def __init__(self, num_samples: int, layout: BatchLayout, seed: int, balance_labels: np.ndarray | None = None):
        if num_samples < layout.global_batch_size:
            raise ConfigError(
                f"GRADIENT_ACCUMULATION.global_batch_size={layout.global_batch_size} is larger than "
                f"the training set ({num_samples} samples): not one optimizer step per epoch"
            )
        self.num_samples = num_samples
        self.layout = layout
        self.seed = seed
        self.balance_labels = balance_labels  # None: a permutation per epoch; labels: class-balanced draws
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

    def epoch_order(self, epoch: int) -> np.ndarray:
        if self.balance_labels is None:
            return epoch_permutation(self.num_samples, self.seed, epoch)
        return class_balanced_order(self.balance_labels, self.seed, epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.epoch_order(self.epoch)
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
