"""Optimizers and learning-rate schedules of the recipe.

`Momentum` is PaddleVideo's: SGD with momentum (Nesterov optional) and L2 weight decay on every
parameter, i.e. `weight_decay * param` added to the gradient, which is torch SGD's `weight_decay`.
`AdamW` (decoupled decay) is our extension.

The learning rate is a pure function of (epoch, step within the epoch): nothing to step, nothing
that can drift on resume. PaddleVideo's `MultiStepDecay` changes once per epoch (its scheduler is
stepped after each epoch); `per_step=True` evaluates the schedule at fractional epochs instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class LRSchedule:
    """`base_lr` shaped by `kind` ("multistep", "cosine" or "constant") after an optional linear warmup."""

    base_lr: float
    kind: str = "multistep"
    milestones: tuple[int, ...] = ()  # epochs (0-based epoch index at which the decay starts)
    gamma: float = 0.1
    total_epochs: int = 1  # cosine reaches min_lr at the end of this epoch
    min_lr: float = 0.0
    warmup_epochs: float = 0.0
    warmup_start_lr: float = 0.0
    per_step: bool = False

    def __post_init__(self):
        if self.kind not in ("multistep", "cosine", "constant"):
            raise ConfigError(f"OPTIMIZER.learning_rate.name: unknown schedule {self.kind!r}")

    def lr_at(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """The learning rate of optimizer step `step` (0-based) of epoch `epoch` (0-based)."""
        t = epoch + step / steps_per_epoch if self.per_step else float(epoch)
        if t < self.warmup_epochs:
            return self.warmup_start_lr + (self.base_lr - self.warmup_start_lr) * t / self.warmup_epochs
        if self.kind == "multistep":
            return self.base_lr * self.gamma ** sum(t >= m for m in self.milestones)
        if self.kind == "cosine":
            span = max(self.total_epochs - self.warmup_epochs, 1e-12)
            progress = min((t - self.warmup_epochs) / span, 1.0)
            return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.base_lr


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "Momentum"  # "Momentum" (SGD) or "AdamW"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    no_weight_decay: tuple[str, ...] = ()  # parameters whose name contains one of these: no decay


def parameter_groups(model: torch.nn.Module, spec: OptimizerSpec) -> list[dict]:
    """One group with `spec.weight_decay`, one without for the `no_weight_decay` names (if any)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if any(part in name for part in spec.no_weight_decay) else decay).append(param)
    groups = [{"params": decay, "weight_decay": spec.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(spec: OptimizerSpec, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    groups = parameter_groups(model, spec)
    if spec.name == "Momentum":
        return torch.optim.SGD(groups, lr=lr, momentum=spec.momentum, nesterov=spec.nesterov and spec.momentum > 0)
    if spec.name == "AdamW":
        return torch.optim.AdamW(groups, lr=lr, betas=spec.betas, eps=spec.eps)
    raise ConfigError(f"OPTIMIZER.name: unknown optimizer {spec.name!r} (Momentum or AdamW)")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
