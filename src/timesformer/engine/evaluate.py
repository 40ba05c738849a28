"""Multi-view evaluation with exact top-1 / top-5 over the whole set, on one process or many.

Each rank evaluates its own indices (rank::world_size, see `EvalBatchSampler`); the per-sample
results are gathered by dataset index, so every readable video counts exactly once whatever the
number of processes. Unreadable videos are never replaced: they are listed with their reason.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.video import data_threads
from ..inference.views import average_views
from ..model.checkpoints import load_weights
from ..model.timesformer import build_model
from .config import Config, build_pipeline
from .distributed import DistContext, all_gather_objects
from .logging import RunLogger
from .loaders import build_dataset, clips_to_device, make_loader
from .order import EvalBatchSampler
from .signals import StopRequest


@dataclass
class EvalResult:
    """Set-level metrics and the per-video results they come from, sorted by dataset index.

    `scores[i]` is video `indices[i]`'s view-averaged score vector (the one top-k ranks); every
    readable video appears once whatever the number of processes.
    """

    top1: float
    top5: float
    count: int  # videos evaluated
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (index, path, reason), by index
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N]
    paths: list[str] = field(default_factory=list)  # [N]
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N]
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [N, C]

    @property
    def skipped(self) -> int:
        return len(self.failed)


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample booleans: label is the top-1 class, label is among the top-k (k capped at C)."""
    top = scores.topk(min(k, scores.shape[-1]), dim=-1).indices
    hits = top == labels.unsqueeze(1)
    return hits[:, 0], hits.any(dim=1)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader,
    ctx: DistContext,
    avg_type: str = "score",
    amp_dtype: torch.dtype | None = None,
    progress=None,
) -> EvalResult:
    """Run `model` over this rank's batches of `loader`; results merged over all ranks.

    Pixel clips (`loaders.build_dataset`) are normalized here on the device with the dataset's
    pipeline. `progress`: optional callable run after each batch (e.g. a tqdm bar's update).
    """
    was_training = model.training
    model.eval()
    device = ctx.device
    videos: dict[int, tuple[str, int, np.ndarray]] = {}  # index -> (path, label, scores)
    failed: dict[int, tuple[str, str]] = {}
    for batch in loader:
        for index, path, reason in batch["failed"]:
            failed[int(index)] = (str(path), str(reason))
        clip = batch["clip"]
        if clip is not None and clip.shape[0] > 0:
            num_views = clip.shape[1]
            clip = clips_to_device(clip, loader.dataset, device)  # [B*V, 3, T, H, W]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(clip)
            scores = average_views(logits, num_views, avg_type).cpu().numpy()
            for row, (index, label, path) in enumerate(zip(batch["index"].tolist(), batch["label"].tolist(), batch["path"])):
                videos[int(index)] = (str(path), int(label), scores[row])
        if progress is not None:
            progress()
    model.train(was_training)
    return merge_results(all_gather_objects((videos, failed), ctx))


def merge_results(shares: list[tuple[dict, dict]]) -> EvalResult:
    """One `EvalResult` from every rank's (videos, failed) share; top-k from the merged scores."""
    videos: dict[int, tuple[str, int, np.ndarray]] = {}
    failed: dict[int, tuple[str, str]] = {}
    for rank_videos, rank_failed in shares:
        videos.update(rank_videos)
        failed.update(rank_failed)
    order = sorted(videos)
    count = len(order)
    indices = np.asarray(order, dtype=np.int64)
    labels = np.asarray([videos[i][1] for i in order], dtype=np.int64)
    scores = np.stack([videos[i][2] for i in order]).astype(np.float32) if count else np.zeros((0, 0), np.float32)
    top1 = top5 = 0.0
    if count:
        hit1, hit5 = topk_correct(torch.from_numpy(scores), torch.from_numpy(labels))
        top1, top5 = hit1.double().mean().item(), hit5.double().mean().item()
    return EvalResult(
        top1, top5, count, [(i, *failed[i]) for i in sorted(failed)],
        indices=indices, paths=[videos[i][0] for i in order], labels=labels, scores=scores,
    )  # fmt: skip


def run_test(cfg: Config, weights: str, ctx: DistContext, log: RunLogger, amp_dtype: torch.dtype | None = None) -> EvalResult:
    """`timesformer test`: the config's model with `weights` on `DATASET.test` (never the pretrained init)."""
    model = build_model(**cfg.model_config())
    load_weights(model, weights)
    model.to(ctx.device)
    dataset = build_dataset(cfg, "test", cfg.seed)
    sampler = EvalBatchSampler(len(dataset), cfg.DATASET.test_batch_size, ctx.world_size, ctx.rank)
    threads = data_threads(cfg.DATASET.num_workers)
    loader = make_loader(dataset, sampler, threads, ctx.device)
    views = build_pipeline(cfg, "test").num_views
    log.info(f"[TEST] {len(dataset)} videos x {views} views, batch {cfg.DATASET.test_batch_size} x "
             f"{ctx.world_size} processes, device {ctx.device}, amp {amp_dtype or 'off'}")  # fmt: skip
    log.info(threads.describe())
    log.start_bar(len(loader), "test")

    def progress() -> None:  # Ctrl-C acts between batches, never inside a worker's start-up
        log.advance_bar()
        stop.raise_if_interrupted()

    with StopRequest((signal.SIGINT,), repeated_is_one=ctx.distributed) as stop:
        result = evaluate(model, loader, ctx, cfg.MODEL.runtime_cfg.test.avg_type, amp_dtype, progress)
    log.close_bar()
    for _, path, reason in result.failed:
        log.info(f"[TEST] skipped {path}: {reason}")
    log.info(f"[TEST] top1: {result.top1:.4f} top5: {result.top5:.4f} ({result.count} videos, {result.skipped} skipped)")
    return result
