"""Multi-view evaluation with exact top-1 / top-5 over the whole set, on one process or many.

Each rank evaluates its own indices (rank::world_size, see `EvalBatchSampler`); the per-sample
results are gathered by dataset index, so every readable video counts exactly once whatever the
number of processes. Unreadable videos are never replaced: they are listed with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..model.checkpoints import load_weights
from ..model.timesformer import build_model
from .config import Config
from .distributed import DistContext, all_gather_objects
from .logging import RunLogger
from .sampler import EvalBatchSampler, build_dataset, make_loader


@dataclass
class EvalResult:
    top1: float
    top5: float
    count: int  # videos evaluated
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (index, path, reason), by index

    @property
    def skipped(self) -> int:
        return len(self.failed)


def average_views(logits: torch.Tensor, num_views: int, avg_type: str = "score") -> torch.Tensor:
    """`[B*V, C]` view logits -> `[B, C]`: mean of the logits ("score") or of their softmaxes ("prob")."""
    views = logits.float().view(-1, num_views, logits.shape[-1])
    if avg_type == "prob":
        return views.softmax(dim=-1).mean(dim=1)
    return views.mean(dim=1)


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

    `progress`: optional callable run after each batch (e.g. a tqdm bar's update).
    """
    was_training = model.training
    model.eval()
    device = ctx.device
    results: dict[int, tuple[bool, bool]] = {}
    failed: dict[int, tuple[str, str]] = {}
    for batch in loader:
        for index, path, reason in batch["failed"]:
            failed[int(index)] = (str(path), str(reason))
        clip = batch["clip"]
        if clip is not None and clip.shape[0] > 0:
            num_views = clip.shape[1]
            clip = clip.to(device, non_blocking=True).flatten(0, 1)  # [B*V, 3, T, H, W]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(clip)
            scores = average_views(logits, num_views, avg_type)
            top1, top5 = topk_correct(scores, batch["label"].to(device))
            for index, hit1, hit5 in zip(batch["index"].tolist(), top1.tolist(), top5.tolist()):
                results[int(index)] = (hit1, hit5)
        if progress is not None:
            progress()
    model.train(was_training)

    merged: dict[int, tuple[bool, bool]] = {}
    merged_failed: dict[int, tuple[str, str]] = {}
    for rank_results, rank_failed in all_gather_objects((results, failed), ctx):
        merged.update(rank_results)
        merged_failed.update(rank_failed)
    count = len(merged)
    top1 = sum(hit1 for hit1, _ in merged.values()) / count if count else 0.0
    top5 = sum(hit5 for _, hit5 in merged.values()) / count if count else 0.0
    return EvalResult(top1, top5, count, [(i, *merged_failed[i]) for i in sorted(merged_failed)])


def run_test(cfg: Config, weights: str, ctx: DistContext, log: RunLogger, amp_dtype: torch.dtype | None = None) -> EvalResult:
    """`timesformer test`: the config's model with `weights` on `DATASET.test` (never the pretrained init)."""
    model = build_model(**cfg.model_config())
    load_weights(model, weights)
    model.to(ctx.device)
    dataset = build_dataset(cfg, "test", cfg.seed)
    sampler = EvalBatchSampler(len(dataset), cfg.DATASET.test_batch_size, ctx.world_size, ctx.rank)
    loader = make_loader(dataset, sampler, cfg, ctx.device)
    log.start_bar(len(loader), "test")
    result = evaluate(model, loader, ctx, cfg.MODEL.runtime_cfg.test.avg_type, amp_dtype, log.advance_bar)
    log.close_bar()
    for _, path, reason in result.failed:
        log.info(f"[TEST] skipped {path}: {reason}")
    log.info(f"[TEST] top1: {result.top1:.4f} top5: {result.top5:.4f} ({result.count} videos, {result.skipped} skipped)")
    return result
