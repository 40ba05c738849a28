"""PaddleVideo's list datasets, honest about broken videos.

Video lists hold `path label` per line (`data_prefix` joined before, `suffix` appended),
frame lists `frame_dir num_frames label` (images `img_00001.jpg` ...); both are read by
`prepare.lists.read_list`, which `timesformer data check` uses too. An item is asked
for by `(epoch, index)`; all its randomness comes from `sample_rng(seed, epoch, index)`, so
it does not depend on workers, processes or batch layout.

A video that cannot be read: in training, a warning names it (once per file) and a
substitute index is drawn deterministically, up to `max_tries` attempts; in validation
and test nothing is substituted: the item carries `clip=None` and the reason, and
`collate_samples` drops it from the batch and reports it, so metrics count it as skipped
instead of silently scoring another video (as PaddleVideo does).

With `normalize=False` the clips are the pipeline's pixel values (uint8 when no frame was
scaled): the training engine copies them to its device and normalizes there
(`VideoPipeline.normalize`), moving a quarter of the bytes.
"""

from __future__ import annotations

import os
import warnings

import torch

from timesformer.data.pipeline import VideoPipeline, sample_rng
from timesformer.data.prepare.lists import ListEntry, read_list
from timesformer.errors import UserError, VideoReadError

SPLIT_MODES = ("train", "valid", "test")


def read_entries(file_path: str | os.PathLike, kind: str, data_prefix: str = "", suffix: str = "") -> list[ListEntry]:
    """The entries of a list of `kind` "videos" (`path label`) or "frames"
    (`frame_dir num_frames label`); every entry needs a label. Raises `UserError`."""
    found, entries = read_list(file_path, data_prefix, suffix)
    if found != kind:
        raise UserError(f"{file_path}: a list of {found} where a list of {kind} is expected")
    for entry in entries:
        if entry.label is None:
            raise UserError(f"{file_path}: {entry.name!r} has no label (expected `path label`)")
    return entries


class _ListDataset(torch.utils.data.Dataset):
    kind = "videos"

    def __init__(
        self,
        file_path: str | os.PathLike,
        data_prefix: str = "",
        suffix: str = "",
        pipeline: VideoPipeline | None = None,
        mode: str = "test",
        seed: int = 0,
        max_tries: int = 10,
        cache: bool = False,
        normalize: bool = True,
    ):
        if mode not in SPLIT_MODES:
            raise ValueError(f"mode must be one of {SPLIT_MODES}, got {mode!r}")
        self.file_path = str(file_path)
        self.suffix = suffix
        # (A frame list's suffix names the images in each folder; read_list leaves it out.)
        self.entries = read_entries(file_path, self.kind, data_prefix or "", suffix)
        self.pipeline = pipeline if pipeline is not None else VideoPipeline.for_mode(mode)
        self.mode = mode
        self.seed = seed
        self.max_tries = max_tries
        self.normalize = normalize
        self._warned: set[str] = set()
        # Clips by index after their first read, for pipelines without random crop / flip / scale;
        # the window of a video longer than the sampling window is then epoch 0's in every epoch.
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, entry: ListEntry, rng) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """`key` = `(epoch, index)` or `index` (epoch 0). Returns
        `dict(clip, label, index, path, error, replaced)`; `index` is always the one asked for;
        `replaced` lists the `(path, reason)` of unreadable videos a training item skipped."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        index = int(index)
        entry = self.entries[index]
        if self._cache is not None and index in self._cache:
            return dict(clip=self._cache[index], label=entry.label, index=index, path=entry.path, error=None)
        try:
            # A cached clip serves every epoch, so it is drawn from epoch 0's generator whichever
            # epoch, worker, process or resumed run reads it first: a function of the index alone.
            clip = self._load(entry, sample_rng(self.seed, 0 if self._cache is not None else epoch, index))
            if self._cache is not None:
                self._cache[index] = clip
            return dict(clip=clip, label=entry.label, index=index, path=entry.path, error=None, replaced=[])
        except VideoReadError as exc:
            if self.mode != "train":
                return dict(clip=None, label=entry.label, index=index, path=entry.path, error=exc.reason, replaced=[])
            self.warn_unreadable(exc.path, exc.reason)
            replaced = [(exc.path, exc.reason)]
            last = exc
        # Training: a substitute drawn from the sample's own generators, never the same index.
        for attempt in range(1, self.max_tries + 1):
            rng = sample_rng(self.seed, epoch, index, attempt)
            other = (index + 1 + int(rng.integers(len(self) - 1))) % len(self) if len(self) > 1 else index
            substitute = self.entries[other]
            try:
                clip = self._load(substitute, rng)
                return dict(clip=clip, label=substitute.label, index=index, path=substitute.path, error=None,
                            replaced=replaced)  # fmt: skip
            except VideoReadError as exc:
                self.warn_unreadable(exc.path, exc.reason)
                replaced.append((exc.path, exc.reason))
                last = exc
        raise UserError(
            f"{self.file_path}: {self.max_tries + 1} videos in a row could not be read, last {last}"
        )

    def warn_unreadable(self, path: str, reason: str) -> None:
        """Warn once per file. DataLoader workers stay silent: each has its own copy of the set, so
        the main process warns instead, from the batches' `replaced` lists (see `collate_samples`)."""
        if torch.utils.data.get_worker_info() is None and path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"skipping unreadable video {path}: {reason}", stacklevel=3)


class VideoListDataset(_ListDataset):
    """PaddleVideo's VideoDataset list: `path label` per line."""

    def _load(self, entry: ListEntry, rng) -> torch.Tensor:
        return self.pipeline(entry.path, rng, self.normalize)


class FrameListDataset(_ListDataset):
    """PaddleVideo's FrameDataset list: `frame_dir num_frames label` per line; `suffix` is
    the image name template (PaddleVideo's default `img_{:05}.jpg`)."""

    kind = "frames"

    def __init__(self, file_path, data_prefix="", suffix="img_{:05}.jpg", pipeline=None, mode="test", seed=0, max_tries=10,
                 cache=False, normalize=True):  # fmt: skip
        super().__init__(file_path, data_prefix, suffix or "img_{:05}.jpg", pipeline, mode, seed, max_tries, cache, normalize)

    def _load(self, entry: ListEntry, rng) -> torch.Tensor:
        return self.pipeline.frames(entry.path, entry.num_frames, rng, self.suffix, self.normalize)


def collate_samples(samples: list[dict]) -> dict:
    """Batch dataset items: `clip [B, V, 3, T, H, W]` (None if every item failed),
    `label [B]`, `index [B]`, `path` list, `failed = [(index, path, reason)]` (dropped items) and
    `replaced = [(path, reason)]` (unreadable videos that training items were drawn in place of).
    Pixel clips of mixed dtypes (uint8 from unscaled videos, float from scaled ones) stack as float."""
    good = [s for s in samples if s["clip"] is not None]
    clips = [s["clip"] for s in good]
    if len({clip.dtype for clip in clips}) > 1:
        clips = [clip.float() for clip in clips]
    return dict(
        clip=torch.stack(clips) if good else None,
        label=torch.tensor([s["label"] for s in good], dtype=torch.long),
        index=torch.tensor([s["index"] for s in good], dtype=torch.long),
        path=[s["path"] for s in good],
        failed=[(s["index"], s["path"], s["error"]) for s in samples if s["clip"] is None],
        replaced=[pair for s in samples for pair in s.get("replaced", ())],
    )
