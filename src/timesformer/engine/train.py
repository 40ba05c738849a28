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
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..devices import resolve_amp_dtype
from ..errors import UserError
from ..model.checkpoints import load_weights, save_model
from ..model.timesformer import build_model
from .config import Config, require_file
from .distributed import (
    DistContext,
    RankLostError,
    all_reduce_sum,
    barrier,
    comm_failure_summary,
    is_comm_failure,
)
from .evaluate import EvalResult, evaluate, topk_correct
from .logging import RunLogger, format_train_line
from .optim import LRSchedule, OptimizerSpec, build_optimizer, set_lr
from .sampler import (
    DROPOUT_STREAM,
    BatchLayout,
    EvalBatchSampler,
    TrainBatchSampler,
    build_dataset,
    derive_seed,
    make_loader,
)
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
    console: bool = True  # False: log lines go to train.log only
    listener: Callable[[str, dict], None] | None = None  # sees every metrics record (a progress display)


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
    """(autocast dtype or None, use a gradient scaler): fp16 needs the scaler, bf16 does not."""
    if not (options.amp or cfg.amp):
        return None, False
    dtype = resolve_amp_dtype(device, cfg.amp_dtype)
    return dtype, dtype == torch.float16


def build_train_model(cfg: Config, options: TrainOptions, seed: int, resume: ResumePoint | None, log: RunLogger):
    """Same init on every rank (seeded), then the resumed weights, or -w, or MODEL.backbone.pretrained.

    -w replaces what `pretrained` would initialize, so `pretrained` is not needed then.
    """
    torch.manual_seed(seed)
    model = build_model(**cfg.model_config())
    if resume is not None:
        load_weights(model, resume.weights)
    else:
        source = options.weights or cfg.MODEL.backbone.pretrained
        if source:
            path = source if options.weights else require_file(source, "MODEL.backbone.pretrained")
            left = load_weights(model, path, new_head=True)
            log.info(f"initialized from {source}" + (f" ({len(left)} tensors left at init: {', '.join(left[:4])}"
                                                      f"{', ...' if len(left) > 4 else ''})" if left else ""))
    return model


def train_model(cfg: Config, options: TrainOptions, ctx: DistContext) -> TrainResult:
    """Train as `cfg` says; returns where the results are. Rank 0 writes every file."""
    output_dir = cfg.output_path
    log = RunLogger(output_dir, options.log_dir, enabled=ctx.is_main, console=options.console, listener=options.listener)
    try:
        trainer = Trainer(cfg, options, ctx, output_dir, log)
        with StopRequest() as stop:
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
    """One optimizer step's numbers over the whole global batch (summed over ranks)."""

    loss_sum: float
    hits1: float
    hits5: float
    count: float
    stop_votes: float  # ranks that received SIGTERM / SIGINT

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count


class Trainer:
    """Everything one run needs, built once; `run` is the epoch loop."""

    def __init__(self, cfg: Config, options: TrainOptions, ctx: DistContext, output_dir: Path, log: RunLogger):
        self.cfg, self.options, self.ctx, self.output_dir, self.log = cfg, options, ctx, output_dir, log
        device = ctx.device
        resume = find_resume_point(output_dir, cfg.model_name) if options.resume else None
        if options.resume and resume is None:
            log.info(f"--resume: no saved training state in {output_dir}; starting from scratch")
        self.seed = options.seed if options.seed is not None else cfg.seed
        if self.seed < 0:
            raise UserError(f"seed {self.seed}: must be >= 0 (--seed or the config's seed)")
        if resume is not None and resume.state["seed"] != self.seed:
            log.info(f"--resume: continuing with the run's seed {resume.state['seed']} (not {self.seed}) to stay exact")
            self.seed = resume.state["seed"]

        self.accumulation = cfg.accumulation_steps(ctx.world_size)
        self.layout = BatchLayout(cfg.DATASET.batch_size * ctx.world_size * self.accumulation,
                                  cfg.DATASET.batch_size, ctx.world_size, ctx.rank)  # fmt: skip
        if resume is not None and resume.state["global_batch_size"] != self.layout.global_batch_size:
            raise UserError(
                f"--resume: {resume.state_file} was trained with global batch {resume.state['global_batch_size']}, "
                f"this run has {self.layout.global_batch_size} (GRADIENT_ACCUMULATION.global_batch_size)"
            )

        self.train_set = build_dataset(cfg, "train", self.seed)
        self.sampler = TrainBatchSampler(len(self.train_set), self.layout, self.seed)
        self.train_loader = make_loader(self.train_set, self.sampler, cfg, device)
        self.valid_loader = None
        if options.validate:
            valid_set = build_dataset(cfg, "valid", self.seed)
            valid_sampler = EvalBatchSampler(len(valid_set), cfg.DATASET.valid_batch, ctx.world_size, ctx.rank)
            self.valid_loader = make_loader(valid_set, valid_sampler, cfg, device)

        self.module = build_train_model(cfg, options, self.seed, resume, log).to(device)  # saved, evaluated
        self.model = self.module  # what runs forward/backward: the DDP wrapper when distributed
        if ctx.distributed:
            self.model = DistributedDataParallel(self.module, device_ids=[device.index] if device.type == "cuda" else None)
        self.schedule = lr_schedule(cfg)
        self.optimizer = build_optimizer(optimizer_spec(cfg), self.module, self.schedule.lr_at(0))
        self.amp_dtype, use_scaler = amp_settings(cfg, options, device)
        self.scaler = torch.amp.GradScaler(device.type) if use_scaler else None

        self.epochs_done, self.steps_done, self.best_top1 = 0, 0, None
        self.last_checkpoint: Path | None = None
        if resume is not None:
            state = resume.state
            self.optimizer.load_state_dict(state["optimizer"])
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
        )
        if (options.amp_level or cfg.amp_level) == "O2" and self.amp_dtype is not None:
            log.info("amp_level O2: autocast keeps fp32 master weights and casts compute, as O1 does")

    def checkpoint_note(self) -> str:
        return f"last complete checkpoint: {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint saved yet"

    def run(self, stop: StopRequest) -> TrainResult:
        cfg, log = self.cfg, self.log
        steps_per_epoch = self.sampler.steps_per_epoch
        clock_start, steps_run = time.perf_counter(), 0
        if self.epochs_done >= cfg.epochs:
            log.info(f"nothing to do: the run in {self.output_dir} already finished its {cfg.epochs} epochs")
        self.model.train()
        for epoch in range(self.epochs_done, cfg.epochs):
            first_step = self.steps_done if epoch == self.epochs_done else 0
            self.sampler.set_epoch(epoch, first_step)
            log.start_bar(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", initial=first_step)
            totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top1 hits, top5 hits, samples
            batches = iter(self.train_loader)
            tick = time.perf_counter()
            for step in range(first_step, steps_per_epoch):
                lr = self.schedule.lr_at(epoch, step, steps_per_epoch)
                set_lr(self.optimizer, lr)
                stats, reader_cost = self.forward_backward(batches, epoch, step, stop)
                self.update(stats, epoch, step)

                totals += torch.tensor([stats.loss_sum, stats.hits1, stats.hits5, stats.count], dtype=torch.float64)
                now = time.perf_counter()
                batch_cost, tick = now - tick, now
                steps_run += 1
                log.advance_bar({"loss": f"{stats.loss:.4f}", "lr": f"{lr:.2e}"})
                if (step + 1) % cfg.log_interval == 0 or step + 1 == steps_per_epoch:
                    remaining = (cfg.epochs - epoch) * steps_per_epoch - step - 1
                    values = dict(epoch=epoch + 1, step=step + 1, loss=stats.loss, lr=lr, top1=stats.hits1 / stats.count,
                                  top5=stats.hits5 / stats.count, batch_cost=batch_cost, reader_cost=reader_cost,
                                  ips=stats.count / batch_cost)  # fmt: skip
                    eta = remaining * (now - clock_start) / steps_run
                    log.info(format_train_line(epochs=cfg.epochs, steps=steps_per_epoch, eta_seconds=eta, **values))
                    log.record("train", values, epoch * steps_per_epoch + step + 1)

                if stats.stop_votes:
                    weights = interrupted_weights_path(self.output_dir, cfg.model_name)
                    self.save_point(weights, epoch, step + 1)
                    log.close_bar()
                    signal_name = stop.signal_name or "SIGTERM"  # another rank's signal: torchrun forwards SIGTERM
                    log.info(f"stopped by {signal_name} at epoch {epoch + 1} step {step + 1}/{steps_per_epoch}; "
                             f"saved {weights} and its state; continue with the same command plus --resume")  # fmt: skip
                    return TrainResult(self.output_dir, epoch, self.best_top1, weights, signal_name)
            del batches
            log.close_bar()
            self.end_epoch(epoch, totals)
        return TrainResult(self.output_dir, cfg.epochs, self.best_top1, self.last_checkpoint)

    def forward_backward(self, batches, epoch: int, step: int, stop: StopRequest) -> tuple[StepStats, float]:
        """Accumulate the gradient of one global batch; returns its stats (all ranks) and the reader time."""
        device, accumulation = self.ctx.device, self.accumulation
        stats = torch.zeros(5, dtype=torch.float64, device=device)  # as StepStats
        reader_cost = 0.0
        for micro in range(accumulation):
            wait = time.perf_counter()
            batch = next(batches)
            reader_cost += time.perf_counter() - wait
            for path, reason in batch["replaced"]:  # warned here: workers cannot tell each other
                self.train_set.warn_unreadable(path, reason)
            clip = batch["clip"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            num_views = clip.shape[1]
            clip, labels = clip.flatten(0, 1), labels.repeat_interleave(num_views)
            # Dropout / drop-path noise from (seed, epoch, step, rank, micro-batch): exact on resume.
            torch.manual_seed(derive_seed(self.seed, DROPOUT_STREAM, epoch, step, self.ctx.rank, micro))
            last_micro = micro == accumulation - 1
            # DDP averages gradients over ranks on the last micro-batch only.
            sync = self.model.no_sync() if self.ctx.distributed and not last_micro else contextlib.nullcontext()
            with sync:
                with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    logits = self.model(clip)
                loss = F.cross_entropy(logits.float(), labels)
                scaled = loss / accumulation  # the mean over the rank's share of the global batch
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            hit1, hit5 = topk_correct(logits.detach().float(), labels)
            n = labels.shape[0]
            stats[0] += loss.detach().double() * n
            stats[1] += hit1.sum()
            stats[2] += hit5.sum()
            stats[3] += n
        stats[4] = float(stop.signal_name is not None)
        return StepStats(*all_reduce_sum(stats, self.ctx).tolist()), reader_cost

    def update(self, stats: StepStats, epoch: int, step: int) -> None:
        """Apply the accumulated gradient, unless the loss is not finite (stop, or skip if configured)."""
        optimizer, scaler = self.optimizer, self.scaler
        if not math.isfinite(stats.loss):
            where = f"epoch {epoch + 1} step {step + 1}/{self.sampler.steps_per_epoch}"
            optimizer.zero_grad(set_to_none=True)
            if self.cfg.nonfinite_loss != "skip":
                raise NonFiniteLossError(
                    f"non-finite loss ({stats.loss}) at {where}: training stopped before updating the weights; "
                    f"{self.checkpoint_note()}. Lower OPTIMIZER.learning_rate or set nonfinite_loss: skip, "
                    f"then continue with --resume"
                )
            self.log.info(f"WARNING: non-finite loss ({stats.loss}) at {where}: step skipped")
            self.log.record("skipped_step", {"epoch": epoch + 1, "step": step + 1, "loss": str(stats.loss)})
            return
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

    def end_epoch(self, epoch: int, totals: torch.Tensor) -> None:
        """Epoch summary, validation and best model, epoch checkpoint."""
        cfg, log, name = self.cfg, self.log, self.cfg.model_name
        if totals[3] > 0:  # not when resumed right at the end of the epoch
            loss_avg, top1_avg, top5_avg = (totals[:3] / totals[3]).tolist()
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
        """Weights, then the training state that names them (both atomic): a complete resume point."""
        if self.ctx.is_main:
            save_model(self.module, weights, metadata={"epoch": str(epochs_done), "step": str(steps_done)})
            state = {
                "epochs_done": epochs_done, "steps_done": steps_done, "seed": self.seed,
                "global_batch_size": self.layout.global_batch_size, "best_top1": self.best_top1,
                "weights": weights.name, "optimizer": self.optimizer.state_dict(),
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
