"""The training loop, in plain sight: accumulate, step, log, validate, save, resume.

One code path for one process and for torchrun (DDP, gloo on CPU, NCCL on CUDA). Exactness rules:
- the order of samples and each sample's augmentation depend only on (seed, epoch, index)
  (`sampler.TrainBatchSampler`, datasets keyed by `(epoch, index)`);
- a micro-batch's loss is its mean divided by the accumulation steps, and DDP averages over ranks,
  so every optimizer step follows the mean gradient of the same global batch for any layout;
- dropout / drop-path noise is re-seeded from (seed, epoch, step, rank, micro-batch) and the
  learning rate is a function of (epoch, step): a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..errors import UserError
from .config import Config, build_pipeline, require_file
from .distributed import DistContext, RankLostError, all_reduce_sum, barrier, is_comm_failure
from .evaluate import EvalResult, evaluate, topk_correct
from .logging import RunLogger, format_train_line
from .optim import LRSchedule, OptimizerSpec, build_optimizer, set_lr
from .sampler import DROPOUT_STREAM, BatchLayout, EvalBatchSampler, TrainBatchSampler, derive_seed
from .state import (
    ResumePoint,
    best_weights_path,
    capture_rng,
    epoch_weights_path,
    find_resume_point,
    interrupted_weights_path,
    restore_rng,
    save_state,
    state_path_for,
)


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; training stopped before the weights were touched."""


@dataclass
class TrainOptions:
    """The command line's choices (the config holds the rest)."""

    validate: bool = False
    amp: bool = False  # or `amp: True` in the config
    amp_level: str | None = None  # None: the config's amp_level
    weights: str | None = None  # -w: fine-tune from these weights
    resume: bool = False
    seed: int | None = None  # None: the config's seed
    log_dir: str | None = None  # train.log and TensorBoard (default: output_dir)
    device: str | None = None  # "cpu", "cuda", "cuda:1"; default: this rank's GPU if any


@dataclass
class TrainResult:
    output_dir: Path
    epochs_done: int
    best_top1: float | None  # None without validation
    last_checkpoint: Path | None
    interrupted_by: str | None = None  # "SIGTERM" / "SIGINT" when stopped by a signal


class StopRequest:
    """SIGTERM / SIGINT ask the loop to stop after the current optimizer step (state saved).

    A second signal of the same kind stops at once (KeyboardInterrupt / default SIGTERM).
    """

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def key_bias_grads(model: torch.nn.Module) -> list[torch.Tensor]:
    """The key thirds of every fused `qkv` bias (canonical names `...attn.qkv.bias`, layout q, k, v).

    A key bias adds `q . b_k` to all of a query's logits alike, which the softmax cancels: its true
    gradient is zero. Backward still leaves rounding noise there, and Adam divides it by its own
    tiny magnitude into a random walk that differs with thread count and process layout. We zero it.
    """
    biases = [p for name, p in model.named_parameters() if name.endswith("attn.qkv.bias") and p.grad is not None]
    return [bias.grad[bias.shape[0] // 3 : 2 * bias.shape[0] // 3] for bias in biases]


def ignore_sigint_in_worker(worker_id: int) -> None:
    """DataLoader workers get the terminal's Ctrl-C too; only the main process may act on it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def optimizer_spec(cfg: Config) -> OptimizerSpec:
    o = cfg.OPTIMIZER
    return OptimizerSpec(
        name=o.name, momentum=o.momentum, nesterov=o.use_nesterov, weight_decay=o.weight_decay.value,
        betas=(o.beta1, o.beta2), eps=o.epsilon,
        no_weight_decay=tuple(o.no_weight_decay_name.split()),
    )  # fmt: skip


def lr_schedule(cfg: Config) -> LRSchedule:
    lr = cfg.OPTIMIZER.learning_rate
    return LRSchedule(
        base_lr=lr.learning_rate,
        kind="cosine" if lr.name == "CosineAnnealingDecay" else "multistep",
        milestones=tuple(lr.milestones),
        gamma=lr.gamma,
        total_epochs=cfg.epochs,
        min_lr=lr.eta_min,
        warmup_epochs=lr.warmup_epochs,
        warmup_start_lr=lr.warmup_start_lr,
        per_step=lr.iter_step,
    )


def amp_settings(cfg: Config, options: TrainOptions, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a gradient scaler). fp16 autocast gets a scaler on CUDA only."""
    if not (options.amp or cfg.amp):
        return None, False
    dtype = torch.float16 if cfg.amp_dtype == "float16" else torch.bfloat16
    if device.type != "cuda":
        dtype = torch.bfloat16  # fp16 on CPU is slow and needs no scaling to be wrong: use bf16
    return dtype, dtype == torch.float16


def build_dataset(cfg: Config, split: str, seed: int):
    """The dataset of `DATASET.<split>` with the `PIPELINE.<split>` transforms."""
    from ..data.datasets import VideoListDataset

    section = getattr(cfg.DATASET, split)
    if section is None or getattr(cfg.PIPELINE, split) is None:
        raise UserError(f"the config has no DATASET.{split} / PIPELINE.{split} section")
    require_file(section.file_path, f"DATASET.{split}.file_path")
    return VideoListDataset(
        section.file_path, data_prefix=section.data_prefix, suffix=section.suffix,
        pipeline=build_pipeline(cfg, split), mode=split, seed=seed,
    )  # fmt: skip


def make_loader(dataset, batch_sampler, cfg: Config, device: torch.device):
    from ..data.datasets import collate_samples

    # More workers than batches or than CPUs only costs start-up time.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(cfg.DATASET.num_workers, len(batch_sampler), cpus)
    return torch.utils.data.DataLoader(
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


def build_train_model(cfg: Config, options: TrainOptions, seed: int, resume: ResumePoint | None, log: RunLogger):
    """Same init on every rank (seeded); then pretrained ViT / -w weights, or the resumed weights."""
    from ..model.checkpoints import load_weights
    from ..model.timesformer import build_model

    torch.manual_seed(seed)
    model = build_model(**cfg.model_config())
    if resume is not None:
        load_weights(model, resume.weights)
        return model
    pretrained = cfg.MODEL.backbone.pretrained
    if pretrained:
        load_weights(model, require_file(pretrained, "MODEL.backbone.pretrained"))
        log.info(f"initialized the backbone from {pretrained}")
    if options.weights:
        load_weights(model, options.weights)
        log.info(f"loaded weights from {options.weights}")
    return model


def train_model(cfg: Config, options: TrainOptions, ctx: DistContext) -> TrainResult:
    """Train as `cfg` says; returns where the results are. Rank 0 writes every file."""
    output_dir = Path(cfg.output_dir or f"output/{cfg.model_name}")
    log = RunLogger(output_dir, options.log_dir, enabled=ctx.is_main)
    try:
        return _train(cfg, options, ctx, output_dir, log)
    finally:
        log.close()


def _train(cfg: Config, options: TrainOptions, ctx: DistContext, output_dir: Path, log: RunLogger) -> TrainResult:
    device, name = ctx.device, cfg.model_name
    resume = find_resume_point(output_dir, name) if options.resume else None
    if options.resume and resume is None:
        log.info(f"--resume: no saved training state in {output_dir}; starting from scratch")
    seed = options.seed if options.seed is not None else cfg.seed
    if resume is not None and resume.state["seed"] != seed:
        log.info(f"--resume: continuing with the run's seed {resume.state['seed']} (not {seed}) to stay exact")
        seed = resume.state["seed"]

    accumulation = cfg.accumulation_steps(ctx.world_size)
    layout = BatchLayout(cfg.DATASET.batch_size * ctx.world_size * accumulation, cfg.DATASET.batch_size,
                         ctx.world_size, ctx.rank)  # fmt: skip
    if resume is not None and resume.state["global_batch_size"] != layout.global_batch_size:
        raise UserError(
            f"--resume: {resume.state_file} was trained with global batch {resume.state['global_batch_size']}, "
            f"this run has {layout.global_batch_size} (GRADIENT_ACCUMULATION.global_batch_size)"
        )

    train_set = build_dataset(cfg, "train", seed)
    sampler = TrainBatchSampler(len(train_set), layout, seed)
    train_loader = make_loader(train_set, sampler, cfg, device)
    valid_loader = None
    if options.validate:
        valid_set = build_dataset(cfg, "valid", seed)
        valid_sampler = EvalBatchSampler(len(valid_set), cfg.DATASET.valid_batch_size, ctx.world_size, ctx.rank)
        valid_loader = make_loader(valid_set, valid_sampler, cfg, device)

    model = build_train_model(cfg, options, seed, resume, log).to(device)
    module = model  # the bare model: for saving and evaluation
    if ctx.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    schedule = lr_schedule(cfg)
    optimizer = build_optimizer(optimizer_spec(cfg), module, schedule.lr_at(0))
    amp_dtype, use_scaler = amp_settings(cfg, options, device)
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None

    epochs_done, steps_done, best_top1 = 0, 0, None
    last_checkpoint: Path | None = None
    if resume is not None:
        state = resume.state
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        epochs_done, steps_done, best_top1 = state["epochs_done"], state["steps_done"], state["best_top1"]
        last_checkpoint = resume.weights
        log.info(f"resumed from {resume.state_file} (epoch {epochs_done + 1}, step {steps_done})")

    steps_per_epoch = sampler.steps_per_epoch
    log.info(
        f"training {name}: {len(train_set)} samples, {cfg.epochs} epochs x {steps_per_epoch} steps, "
        f"global batch {layout.global_batch_size} = {layout.batch_size} x {ctx.world_size} processes x "
        f"{accumulation} accumulation, device {device}, amp {amp_dtype or 'off'}, seed {seed}, output {output_dir}"
    )
    if (options.amp_level or cfg.amp_level) == "O2" and amp_dtype is not None:
        log.info("amp_level O2: autocast keeps fp32 master weights and casts compute, as O1 does")

    def training_state(epochs: int, steps: int, weights: Path) -> dict:
        return {
            "epochs_done": epochs, "steps_done": steps, "seed": seed,
            "global_batch_size": layout.global_batch_size, "best_top1": best_top1, "weights": weights.name,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else {},
            "rng": capture_rng(),
        }  # fmt: skip

    def save_point(weights: Path, epochs: int, steps: int) -> None:
        from ..model.checkpoints import save_model

        if ctx.is_main:
            save_model(module, weights, metadata={"epoch": str(epochs), "step": str(steps)})
            save_state(state_path_for(weights), training_state(epochs, steps, weights))
        barrier(ctx)

    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    clock_start, steps_run = time.perf_counter(), 0
    model.train()
    with StopRequest() as stop:
        try:
            for epoch in range(epochs_done, cfg.epochs):
                first_step = steps_done if epoch == epochs_done else 0
                sampler.set_epoch(epoch, first_step)
                log.start_bar(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", initial=first_step)
                totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top1 hits, top5 hits, samples
                batches = iter(train_loader)
                tick = time.perf_counter()
                for step in range(first_step, steps_per_epoch):
                    lr = schedule.lr_at(epoch, step, steps_per_epoch)
                    set_lr(optimizer, lr)
                    # loss sum, top1 hits, top5 hits, samples, stop requested
                    stats = torch.zeros(5, dtype=torch.float64, device=device)
                    reader_cost = 0.0
                    for micro in range(accumulation):
                        wait = time.perf_counter()
                        batch = next(batches)
                        reader_cost += time.perf_counter() - wait
                        clip = batch["clip"].to(device, non_blocking=True)
                        labels = batch["label"].to(device, non_blocking=True)
                        num_views = clip.shape[1]
                        clip, labels = clip.flatten(0, 1), labels.repeat_interleave(num_views)
                        torch.manual_seed(derive_seed(seed, DROPOUT_STREAM, epoch, step, ctx.rank, micro))
                        last_micro = micro == accumulation - 1
                        sync = model.no_sync() if ctx.distributed and not last_micro else contextlib.nullcontext()
                        with sync:
                            with autocast():
                                logits = model(clip)
                            loss = F.cross_entropy(logits.float(), labels)
                            scaled = loss / accumulation
                            (scaler.scale(scaled) if scaler else scaled).backward()
                        hit1, hit5 = topk_correct(logits.detach().float(), labels)
                        n = labels.shape[0]
                        stats[:4] += torch.stack(
                            [loss.detach().double() * n, hit1.sum().double(), hit5.sum().double(),
                             torch.tensor(float(n), dtype=torch.float64, device=device)]
                        )  # fmt: skip
                    stats[4] = float(stop.signal_name is not None)
                    loss_sum, hits1, hits5, count, stop_votes = all_reduce_sum(stats, ctx).tolist()
                    step_loss = loss_sum / count

                    if not math.isfinite(step_loss):
                        where = f"epoch {epoch + 1} step {step + 1}/{steps_per_epoch}"
                        if cfg.nonfinite_loss == "skip":
                            optimizer.zero_grad(set_to_none=True)
                            log.info(f"WARNING: non-finite loss ({step_loss}) at {where}: step skipped")
                            log.record("skipped_step", {"epoch": epoch + 1, "step": step + 1, "loss": str(step_loss)})
                        else:
                            kept = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint saved yet"
                            raise NonFiniteLossError(
                                f"non-finite loss ({step_loss}) at {where}: training stopped before updating the "
                                f"weights; {kept}. Lower OPTIMIZER.learning_rate or set nonfinite_loss: skip, "
                                f"then continue with --resume"
                            )
                    else:
                        for noise in key_bias_grads(module):
                            noise.zero_()
                        if scaler:
                            scaler.unscale_(optimizer)
                        if cfg.OPTIMIZER.grad_clip:
                            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.OPTIMIZER.grad_clip)
                        if scaler:
                            scaler.step(optimizer)
                            scaler.update()
                        else:
                            optimizer.step()
                        optimizer.zero_grad(set_to_none=True)

                    totals += torch.tensor([loss_sum, hits1, hits5, count], dtype=torch.float64)
                    now = time.perf_counter()
                    batch_cost, tick = now - tick, now
                    steps_run += 1
                    global_step = epoch * steps_per_epoch + step + 1
                    log.advance_bar({"loss": f"{step_loss:.4f}", "lr": f"{lr:.2e}"})
                    if (step + 1) % cfg.log_interval == 0 or step + 1 == steps_per_epoch:
                        remaining = (cfg.epochs - epoch) * steps_per_epoch - step - 1
                        eta = remaining * (now - clock_start) / steps_run
                        values = dict(epoch=epoch + 1, step=step + 1, loss=step_loss, lr=lr, top1=hits1 / count,
                                      top5=hits5 / count, batch_cost=batch_cost, reader_cost=reader_cost,
                                      ips=count / batch_cost)  # fmt: skip
                        log.info(format_train_line(epochs=cfg.epochs, steps=steps_per_epoch, eta_seconds=eta, **values))
                        log.record("train", values, global_step)

                    if stop_votes:
                        weights = interrupted_weights_path(output_dir, name)
                        save_point(weights, epoch, step + 1)
                        log.close_bar()
                        log.info(
                            f"stopped by {stop.signal_name or 'a signal on another rank'} at epoch {epoch + 1} "
                            f"step {step + 1}/{steps_per_epoch}; saved {weights} and its state; "
                            f"continue with the same command plus --resume"
                        )
                        return TrainResult(output_dir, epoch, best_top1, weights, stop.signal_name or "SIGTERM")
                del batches
                log.close_bar()

                loss_avg, top1_avg, top5_avg = (totals[:3] / totals[3].clamp(min=1)).tolist()
                log.info(f"END epoch:{epoch + 1:<3d} train loss_avg: {loss_avg:.5f} top1_avg: {top1_avg:.5f} "
                         f"top5_avg: {top5_avg:.5f}")  # fmt: skip
                log.record("train_epoch", {"epoch": epoch + 1, "loss": loss_avg, "top1": top1_avg, "top5": top5_avg},
                           (epoch + 1) * steps_per_epoch)  # fmt: skip

                last_epoch = epoch + 1 == cfg.epochs
                if valid_loader is not None and ((epoch + 1) % cfg.val_interval == 0 or last_epoch):
                    result = validate(module, valid_loader, cfg, ctx, amp_dtype, log, epoch)
                    if result.count and (best_top1 is None or result.top1 > best_top1):
                        best_top1 = result.top1
                        if ctx.is_main:
                            from ..model.checkpoints import save_model

                            save_model(module, best_weights_path(output_dir, name),
                                       metadata={"epoch": str(epoch + 1), "top1": f"{best_top1:.6f}"})  # fmt: skip
                        # PaddleVideo's line, value truncated to 4 decimals as it does.
                        log.info(f"Already save the best model (top1 acc){math.floor(best_top1 * 10000) / 10000:.4f}")
                if (epoch + 1) % cfg.save_interval == 0 or last_epoch:
                    last_checkpoint = epoch_weights_path(output_dir, name, epoch + 1)
                    save_point(last_checkpoint, epoch + 1, 0)
                    log.info(f"saved {last_checkpoint}")
        except Exception as err:
            if ctx.distributed and is_comm_failure(err):
                kept = f"last complete checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint saved yet"
                raise RankLostError(
                    f"rank {ctx.rank}: another process of this distributed job stopped "
                    f"({str(err).splitlines()[0][:200]}); {kept}; restart the same command with --resume"
                ) from err
            raise
    return TrainResult(output_dir, cfg.epochs, best_top1, last_checkpoint)


def validate(module, loader, cfg: Config, ctx: DistContext, amp_dtype, log: RunLogger, epoch: int) -> EvalResult:
    log.start_bar(len(loader), f"valid {epoch + 1}")
    result = evaluate(module, loader, ctx, cfg.MODEL.runtime_cfg.test.avg_type, amp_dtype, log.advance_bar)
    log.close_bar()
    for index, path, reason in result.failed:
        log.info(f"[EVAL] skipped {path}: {reason}")
    log.info(f"[EVAL] epoch:{epoch + 1} top1: {result.top1:.4f} top5: {result.top5:.4f} "
             f"({result.count} videos, {result.skipped} skipped)")  # fmt: skip
    log.record("valid", {"epoch": epoch + 1, "top1": result.top1, "top5": result.top5, "count": result.count,
                         "skipped": result.skipped}, epoch + 1)  # fmt: skip
    return result
