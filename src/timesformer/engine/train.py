"""The training loop, in plain sight: accumulate, step, log, validate, save, resume.

One code path for one process and for torchrun (DDP, gloo on CPU, NCCL on CUDA). Exactness rules:
- the order of samples and each sample's augmentation depend only on (seed, epoch, index)
  (`order.TrainBatchSampler`, datasets keyed by `(epoch, index)`);
- a micro-batch's loss is its mean divided by the accumulation steps, and DDP averages over ranks,
  so every optimizer step follows the mean gradient of the same global batch for any layout;
- dropout / drop-path noise is re-seeded from (seed, epoch, step, rank, micro-batch) and the
  learning rate is a function of (epoch, step): a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..data.video import data_threads
from ..devices import configure_math, resolve_amp_dtype
from ..errors import UserError
from ..model.checkpoints import load_weights, save_model
from ..model.timesformer import build_model
from ..utils import check_distinct_paths, sha256_file
from .config import Config, ignored_settings, require_file
from .distributed import (
    DistContext,
    RankLostError,
    all_reduce_sum,
    barrier,
    broadcast_object,
    comm_failure_summary,
    is_comm_failure,
)
from .evaluate import EvalResult, evaluate, topk_correct
from .loaders import build_dataset, clips_to_device, make_loader
from .lock import OutputLock
from .logging import RunLogger, format_train_line
from .optim import build_optimizer, load_optimizer_state, lr_at, set_lr
from .order import DROPOUT_STREAM, BatchLayout, EvalBatchSampler, TrainBatchSampler, balanced_class_weights, derive_seed
from .signals import StopRequest
from .state import (
    ResumePoint,
    best_weights_path,
    capture_rng,
    epoch_weights_path,
    find_resume_point,
    interrupted_weights_path,
    is_run_output,
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
    strict_fp32: bool = False  # CUDA: no TF32 for fp32 matmuls
    deterministic: bool = False  # deterministic algorithms (slower on CUDA), see devices.configure_math
    console: bool = True  # False: log lines go to train.log only
    listener: Callable[[str, dict], None] | None = None  # sees every metrics record (the demo's progress bar)


@dataclass
class TrainResult:
    output_dir: Path
    epochs_done: int
    best_top1: float | None  # None without validation
    last_checkpoint: Path | None
    interrupted_by: str | None = None  # "SIGTERM" / "SIGINT" when stopped by a signal


def key_bias_grads(model: torch.nn.Module) -> list[torch.Tensor]:
    """The key thirds of every fused `qkv` bias (canonical names `...attn.qkv.bias`, layout q, k, v).

    A key bias adds `q . b_k` to all of a query's logits alike, which the softmax cancels: its true
    gradient is zero. Backward still leaves rounding noise there, and Adam divides it by its own
    tiny magnitude into a random walk that differs with thread count and process layout. We zero it.
    """
    biases = [p for name, p in model.named_parameters() if name.endswith("attn.qkv.bias") and p.grad is not None]
    return [bias.grad[bias.shape[0] // 3 : 2 * bias.shape[0] // 3] for bias in biases]


def amp_settings(cfg: Config, options: TrainOptions, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a gradient scaler): fp16 needs the scaler, bf16 does not."""
    if not (options.amp or cfg.amp):
        return None, False
    dtype = resolve_amp_dtype(device, cfg.amp_dtype)
    return dtype, dtype == torch.float16


def build_train_model(cfg: Config, options: TrainOptions, seed: int, resume: ResumePoint | None, log: RunLogger,
                      ctx: DistContext):  # fmt: skip
    """Same init on every rank (seeded), then the resumed weights, or -w, or MODEL.backbone.pretrained.

    -w replaces what `pretrained` would initialize, so `pretrained` is not needed then. Resumed
    weights are read by rank 0 only (the file may be on its disk alone): DDP copies rank 0's
    parameters to every rank when it wraps the model.
    """
    torch.manual_seed(seed)
    model = build_model(**cfg.model_config())
    if resume is not None:
        if ctx.is_main:
            load_weights(model, resume.weights)
    else:
        source = options.weights or cfg.MODEL.backbone.pretrained
        if source:
            from ..model.hub import parse_hub_id

            local = options.weights or parse_hub_id(source)  # a Hub id is fetched, not a file to check
            path = source if local else require_file(source, "MODEL.backbone.pretrained")
            left = load_weights(model, path, new_head=True)
            log.info(f"initialized from {source}" + (f" ({len(left)} tensors left at init: {', '.join(left[:4])}"
                                                      f"{', ...' if len(left) > 4 else ''})" if left else ""))
    return model


def check_inputs_outside_outputs(cfg: Config, options: TrainOptions) -> None:
    """Refuse a run whose output folder (or log folder) would overwrite one of its inputs: `-w`
    weights, the pretrained init or a list file that is named as the run names its outputs."""
    inputs = {"-w": options.weights, "MODEL.backbone.pretrained": cfg.MODEL.backbone.pretrained or None}
    for split in ("train", "valid", "test"):
        inputs[f"DATASET.{split}.file_path"] = getattr(cfg.DATASET, split).file_path or None
    folders = {cfg.output_path.resolve(), Path(options.log_dir or cfg.output_path).resolve()}
    outputs = {"output_dir": [Path(path) for path in inputs.values() if path is not None
                              and Path(path).resolve().parent in folders and is_run_output(Path(path), cfg.model_name)]}  # fmt: skip
    check_distinct_paths(inputs, outputs)


def train_model(cfg: Config, options: TrainOptions, ctx: DistContext) -> TrainResult:
    """Train as `cfg` says; returns where the results are. Rank 0 writes every file (and holds the
    output folder's lock, taken before anything is written there)."""
    output_dir = cfg.output_path
    check_inputs_outside_outputs(cfg, options)
    with OutputLock(output_dir) if ctx.is_main else contextlib.nullcontext() as lock:
        log = RunLogger(output_dir, options.log_dir, enabled=ctx.is_main, console=options.console,
                        listener=options.listener)  # fmt: skip
        try:
            if lock is not None and lock.note:
                log.info(lock.note)
            trainer = Trainer(cfg, options, ctx, output_dir, log)
            with StopRequest(repeated_is_one=ctx.distributed) as stop:
                try:
                    return trainer.run(stop)
                except Exception as err:
                    if ctx.distributed and is_comm_failure(err):
                        raise RankLostError(
                            f"rank {ctx.rank}: lost contact with another process of this distributed job "
                            f"({comm_failure_summary(err)}); {trainer.checkpoint_note()}; "
                            f"restart the same command with --resume"
                        ) from err
                    raise
        finally:
            log.close()


@dataclass
class StepStats:
    """One optimizer step's numbers; after `summed_over_ranks`, over the whole global batch."""

    loss_sum: float | torch.Tensor = 0.0  # per-sample losses (class-weighted when configured), summed
    top1_hits: float | torch.Tensor = 0.0
    top5_hits: float | torch.Tensor = 0.0
    samples: float | torch.Tensor = 0.0  # clips (views count as clips)
    stop_votes: float | torch.Tensor = 0.0  # ranks that received SIGTERM / SIGINT

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one micro-batch (`loss` its mean); tensors stay on the device until the step ends."""
        hit1, hit5 = topk_correct(logits.detach().float(), labels)
        self.loss_sum = self.loss_sum + loss.detach().double() * labels.shape[0]
        self.top1_hits = self.top1_hits + hit1.sum()
        self.top5_hits = self.top5_hits + hit5.sum()
        self.samples = self.samples + labels.shape[0]

    def summed_over_ranks(self, ctx: DistContext) -> StepStats:
        """Plain floats summed over every rank: one collective for all fields."""
        fields = [torch.as_tensor(value, dtype=torch.float64, device=ctx.device) for value in dataclasses.astuple(self)]
        return StepStats(*all_reduce_sum(torch.stack(fields), ctx).tolist())

    @property
    def loss(self) -> float:
        return self.loss_sum / self.samples


class Trainer:
    """Everything one run needs, built once; `run` is the epoch loop, `train_step` one optimizer step."""

    def __init__(self, cfg: Config, options: TrainOptions, ctx: DistContext, output_dir: Path, log: RunLogger):
        self.cfg, self.options, self.ctx, self.output_dir, self.log = cfg, options, ctx, output_dir, log
        device = ctx.device
        resume = self.find_resume_point() if options.resume else None
        self.seed = options.seed if options.seed is not None else cfg.seed
        if not 0 <= self.seed < 2**63:
            raise UserError(f"seed {self.seed}: must be between 0 and 2**63 - 1 (--seed or the config's seed)")
        self.amp_dtype, use_scaler = amp_settings(cfg, options, device)  # refused before anything is built
        if resume is not None and resume.state["seed"] != self.seed:
            log.info(f"--resume: continuing with the run's seed {resume.state['seed']} (not {self.seed}) to stay exact")
            self.seed = resume.state["seed"]
        for note in configure_math(device, options.strict_fp32, options.deterministic):
            log.info(note)
        ignored = ignored_settings(cfg)
        if ignored:
            log.info(f"config: PaddleVideo settings with no effect here: {', '.join(ignored)}")

        self.accumulation = cfg.accumulation_steps(ctx.world_size)
        self.layout = BatchLayout(cfg.DATASET.batch_size * ctx.world_size * self.accumulation,
                                  cfg.DATASET.batch_size, ctx.world_size, ctx.rank)  # fmt: skip
        if resume is not None and resume.state["global_batch_size"] != self.layout.global_batch_size:
            raise UserError(
                f"--resume: {resume.state_file} was trained with global batch {resume.state['global_batch_size']}, "
                f"this run has {self.layout.global_batch_size} (GRADIENT_ACCUMULATION.global_batch_size)"
            )

        self.train_set = build_dataset(cfg, "train", self.seed)
        labels = np.array([entry.label for entry in self.train_set.entries], dtype=np.int64)
        balance = labels if cfg.DATASET.sampler == "balanced" else None
        self.sampler = TrainBatchSampler(len(self.train_set), self.layout, self.seed, balance_labels=balance)
        threads = data_threads(cfg.DATASET.num_workers)
        log.info(threads.describe())
        self.train_loader = make_loader(self.train_set, self.sampler, threads, device)
        self.valid_loader = None
        if options.validate:
            valid_set = build_dataset(cfg, "valid", self.seed)
            valid_sampler = EvalBatchSampler(len(valid_set), cfg.DATASET.valid_batch, ctx.world_size, ctx.rank)
            self.valid_loader = make_loader(valid_set, valid_sampler, threads, device)
        self.class_weights = None  # MODEL.head.loss_weight: balanced -> n / (k * count) per class
        if cfg.MODEL.head.loss_weight == "balanced":
            weights = balanced_class_weights(labels, cfg.MODEL.head.num_classes)
            self.class_weights = torch.tensor(weights, dtype=torch.float32, device=device)

        self.module = build_train_model(cfg, options, self.seed, resume, log, ctx).to(device)  # saved, evaluated
        self.model = self.module  # what runs forward/backward: the DDP wrapper when distributed
        if ctx.distributed:
            # Gradients as views of DDP's all-reduce buckets: no copy in or out of them, one gradient-sized
            # buffer less.
            self.model = DistributedDataParallel(self.module, device_ids=[device.index] if device.type == "cuda" else None,
                                                 gradient_as_bucket_view=True)  # fmt: skip
        self.optimizer = build_optimizer(cfg.OPTIMIZER, self.module, self.lr(0, 0), device)
        self.scaler = torch.amp.GradScaler(device.type) if use_scaler else None

        self.epochs_done, self.steps_done, self.best_top1 = 0, 0, None
        self.last_checkpoint: Path | None = None
        if resume is not None:
            state = resume.state
            load_optimizer_state(self.optimizer, state["optimizer"])
            if self.scaler is not None and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
            restore_rng(state["rng"])
            self.epochs_done, self.steps_done = state["epochs_done"], state["steps_done"]
            self.best_top1 = state["best_top1"]
            self.last_checkpoint = resume.weights
            log.info(f"resumed from {resume.state_file} (epoch {self.epochs_done + 1}, step {self.steps_done})")

        log.info(
            f"training {cfg.model_name}: {len(self.train_set)} samples, {cfg.epochs} epochs x "
            f"{self.sampler.steps_per_epoch} steps, global batch {self.layout.global_batch_size} = "
            f"{self.layout.batch_size} x {ctx.world_size} processes x {self.accumulation} accumulation, "
            f"device {device}, amp {self.amp_dtype or 'off'}, seed {self.seed}, output {output_dir}"
            + (", class-balanced sampling" if balance is not None else "")
            + (", class-weighted loss" if self.class_weights is not None else "")
        )
        if (options.amp_level or cfg.amp_level) == "O2" and self.amp_dtype is not None:
            log.info("amp_level O2: autocast keeps fp32 master weights and casts compute, as O1 does")

    def find_resume_point(self) -> ResumePoint | None:
        """Rank 0 (which writes every checkpoint) chooses; every rank gets its choice and state, so
        ranks on machines without a shared filesystem resume from the same point."""
        resume = None
        if self.ctx.is_main:
            notes: list[str] = []
            resume = find_resume_point(self.output_dir, self.cfg.model_name, notes)
            for note in notes:
                self.log.info(f"--resume: {note}")
            if resume is None:
                self.log.info(f"--resume: no saved training state in {self.output_dir}; starting from scratch")
            elif notes:
                self.log.info(f"--resume: using the newest consistent pair, {resume.state_file.name}")
        return broadcast_object(resume, self.ctx)

    def lr(self, epoch: int, step: int) -> float:
        return lr_at(self.cfg.OPTIMIZER.learning_rate, self.cfg.epochs, epoch, step, self.steps_per_epoch)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def checkpoint_note(self) -> str:
        return f"last complete checkpoint: {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint saved yet"

    def run(self, stop: StopRequest) -> TrainResult:
        cfg, log = self.cfg, self.log
        clock_start, steps_run = time.perf_counter(), 0
        if self.epochs_done >= cfg.epochs:
            log.info(f"nothing to do: the run in {self.output_dir} already finished its {cfg.epochs} epochs")
        self.model.train()
        for epoch in range(self.epochs_done, cfg.epochs):
            first_step = self.steps_done if epoch == self.epochs_done else 0
            self.sampler.set_epoch(epoch, first_step)
            log.start_bar(self.steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", initial=first_step)
            epoch_stats = StepStats()
            batches = iter(self.train_loader)
            tick = time.perf_counter()
            for step in range(first_step, self.steps_per_epoch):
                lr = self.lr(epoch, step)
                set_lr(self.optimizer, lr)
                stats, reader_cost = self.train_step(batches, epoch, step, stop)
                for name in ("loss_sum", "top1_hits", "top5_hits", "samples"):
                    setattr(epoch_stats, name, getattr(epoch_stats, name) + getattr(stats, name))

                now = time.perf_counter()
                batch_cost, tick = now - tick, now
                steps_run += 1
                log.advance_bar({"loss": f"{stats.loss:.4f}", "lr": f"{lr:.2e}"})
                if (step + 1) % cfg.log_interval == 0 or step + 1 == self.steps_per_epoch:
                    remaining = (cfg.epochs - epoch) * self.steps_per_epoch - step - 1
                    values = dict(epoch=epoch + 1, step=step + 1, loss=stats.loss, lr=lr,
                                  top1=stats.top1_hits / stats.samples, top5=stats.top5_hits / stats.samples,
                                  batch_cost=batch_cost, reader_cost=reader_cost, ips=stats.samples / batch_cost)  # fmt: skip
                    eta = remaining * (now - clock_start) / steps_run
                    log.info(format_train_line(epochs=cfg.epochs, steps=self.steps_per_epoch, eta_seconds=eta, **values))
                    log.record("train", values, epoch * self.steps_per_epoch + step + 1)

                if stats.stop_votes:
                    return self.stop_after(epoch, step, stop)
            del batches
            log.close_bar()
            self.end_epoch(epoch, epoch_stats)
        return TrainResult(self.output_dir, cfg.epochs, self.best_top1, self.last_checkpoint)

    def train_step(self, batches, epoch: int, step: int, stop: StopRequest) -> tuple[StepStats, float]:
        """One optimizer step over one global batch: accumulate, sync, clip, step. Returns the step's
        statistics (summed over ranks) and the seconds spent waiting for batches."""
        device, accumulation, optimizer, scaler = self.ctx.device, self.accumulation, self.optimizer, self.scaler
        stats, reader_cost = StepStats(), 0.0
        for micro in range(accumulation):
            wait = time.perf_counter()
            batch = next(batches)
            reader_cost += time.perf_counter() - wait
            for path, reason in batch["replaced"]:  # warned here: workers cannot tell each other
                self.train_set.warn_unreadable(path, reason)
            views = batch["clip"].shape[1]
            clip = clips_to_device(batch["clip"], self.train_set, device)
            labels = batch["label"].to(device, non_blocking=True).repeat_interleave(views)  # views are clips
            # Dropout / drop-path noise from (seed, epoch, step, rank, micro-batch): exact on resume.
            torch.manual_seed(derive_seed(self.seed, DROPOUT_STREAM, epoch, step, self.ctx.rank, micro))
            # DDP averages gradients over ranks on the last micro-batch only.
            last_micro = micro == accumulation - 1
            with self.model.no_sync() if self.ctx.distributed and not last_micro else contextlib.nullcontext():
                with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    logits = self.model(clip)
                loss = self.loss(logits, labels)
                scaled = loss / accumulation  # the mean over the rank's share of the global batch
                (scaler.scale(scaled) if scaler else scaled).backward()
            stats.add(loss, logits, labels)
        stats.stop_votes = float(stop.signal_name is not None)
        stats = stats.summed_over_ranks(self.ctx)

        if not math.isfinite(stats.loss):
            optimizer.zero_grad(set_to_none=True)
            self.on_nonfinite_loss(stats.loss, epoch, step)
            return stats, reader_cost
        for noise in key_bias_grads(self.module):
            noise.zero_()
        if scaler:
            scaler.unscale_(optimizer)
        if self.cfg.OPTIMIZER.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.OPTIMIZER.grad_clip)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return stats, reader_cost

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of a micro-batch; with class weights, the mean of the weighted per-sample
        losses (not torch's weight-normalized mean, which would depend on the micro-batch's classes)."""
        per_sample = F.cross_entropy(logits.float(), labels, weight=self.class_weights, reduction="none")
        return per_sample.mean()

    def on_nonfinite_loss(self, loss: float, epoch: int, step: int) -> None:
        """Stop before the weights are touched, or skip the step (`nonfinite_loss: skip`)."""
        where = f"epoch {epoch + 1} step {step + 1}/{self.steps_per_epoch}"
        if self.cfg.nonfinite_loss != "skip":
            raise NonFiniteLossError(
                f"non-finite loss ({loss}) at {where}: training stopped before updating the weights; "
                f"{self.checkpoint_note()}. Lower OPTIMIZER.learning_rate or set nonfinite_loss: skip, "
                f"then continue with --resume"
            )
        self.log.info(f"WARNING: non-finite loss ({loss}) at {where}: step skipped")
        self.log.record("skipped_step", {"epoch": epoch + 1, "step": step + 1, "loss": str(loss)})

    def stop_after(self, epoch: int, step: int, stop: StopRequest) -> TrainResult:
        """A signal reached some rank: save a resumable mid-epoch point and return."""
        weights = interrupted_weights_path(self.output_dir, self.cfg.model_name)
        self.save_point(weights, epoch, step + 1)
        self.log.close_bar()
        signal_name = stop.signal_name or "SIGTERM"  # another rank's signal: torchrun forwards SIGTERM
        self.log.info(f"stopped by {signal_name} at epoch {epoch + 1} step {step + 1}/{self.steps_per_epoch}; "
                      f"saved {weights} and its state; continue with the same command plus --resume")  # fmt: skip
        return TrainResult(self.output_dir, epoch, self.best_top1, weights, signal_name)

    def end_epoch(self, epoch: int, totals: StepStats) -> None:
        """Epoch summary, validation and best model, epoch checkpoint."""
        cfg, log, name = self.cfg, self.log, self.cfg.model_name
        if totals.samples > 0:  # not when resumed right at the end of the epoch
            loss_avg, top1_avg, top5_avg = totals.loss, totals.top1_hits / totals.samples, totals.top5_hits / totals.samples
            log.info(f"END epoch:{epoch + 1:<3d} train loss_avg: {loss_avg:.5f} top1_avg: {top1_avg:.5f} "
                     f"top5_avg: {top5_avg:.5f}")  # fmt: skip
            log.record("train_epoch", {"epoch": epoch + 1, "loss": loss_avg, "top1": top1_avg, "top5": top5_avg},
                       (epoch + 1) * self.sampler.steps_per_epoch)  # fmt: skip

        last_epoch = epoch + 1 == cfg.epochs
        if self.valid_loader is not None and ((epoch + 1) % cfg.val_interval == 0 or last_epoch):
            result = validate(self.module, self.valid_loader, cfg, self.ctx, self.amp_dtype, log, epoch)
            if result.count and (self.best_top1 is None or result.top1 > self.best_top1):
                self.best_top1 = result.top1
                if self.ctx.is_main:
                    save_model(self.module, best_weights_path(self.output_dir, name),
                               metadata={"epoch": str(epoch + 1), "top1": f"{result.top1:.6f}"})  # fmt: skip
                # PaddleVideo's line, the value truncated to 4 decimals as it does.
                log.info(f"Already save the best model (top1 acc){math.floor(result.top1 * 10000) / 10000:.4f}")
        if (epoch + 1) % cfg.save_interval == 0 or last_epoch:
            self.last_checkpoint = epoch_weights_path(self.output_dir, name, epoch + 1)
            self.save_point(self.last_checkpoint, epoch + 1, 0)
            log.info(f"saved {self.last_checkpoint}")

    def save_point(self, weights: Path, epochs_done: int, steps_done: int) -> None:
        """Weights, then the training state that names them and records their hash (both atomic)."""
        if self.ctx.is_main:
            save_model(self.module, weights, metadata={"epoch": str(epochs_done), "step": str(steps_done)})
            state = {
                "epochs_done": epochs_done, "steps_done": steps_done, "seed": self.seed,
                "global_batch_size": self.layout.global_batch_size, "best_top1": self.best_top1,
                "weights": weights.name, "weights_sha256": sha256_file(weights),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else {}, "rng": capture_rng(),
            }  # fmt: skip
            save_state(state_path_for(weights), state)
        barrier(self.ctx)


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
