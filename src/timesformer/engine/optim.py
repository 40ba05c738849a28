"""Optimizers and learning-rate schedules, read straight from the config's OPTIMIZER section.

`Momentum` is PaddleVideo's: SGD with momentum (Nesterov as `use_nesterov` says) and L2 weight
decay on every parameter, i.e. `weight_decay * param` added to the gradient, which is torch SGD's
`weight_decay`. `AdamW` (decoupled decay) is our extension.

The learning rate is a pure function of (epoch, step within the epoch): nothing to step, nothing
that can drift on resume. PaddleVideo's `MultiStepDecay` changes once per epoch (its scheduler is
stepped after each epoch); `iter_step: true` evaluates the schedule at fractional epochs instead.
"""

from __future__ import annotations

import math

import torch

from .config.schema import LearningRateConfig, OptimizerConfig


def lr_at(schedule: LearningRateConfig, total_epochs: int, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The learning rate of optimizer step `step` (0-based) of epoch `epoch` (0-based)."""
    t = epoch + step / steps_per_epoch if schedule.iter_step else float(epoch)
    base = schedule.learning_rate
    if t < schedule.warmup_epochs:
        return schedule.warmup_start_lr + (base - schedule.warmup_start_lr) * t / schedule.warmup_epochs
    if schedule.name == "MultiStepDecay":
        return base * schedule.gamma ** sum(t >= m for m in schedule.milestones)
    # CosineAnnealingDecay: from the base rate to eta_min over the epochs after the warmup.
    span = max(total_epochs - schedule.warmup_epochs, 1e-12)
    progress = min((t - schedule.warmup_epochs) / span, 1.0)
    return schedule.eta_min + (base - schedule.eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: torch.nn.Module, spec: OptimizerConfig) -> list[dict]:
    """One group with the weight decay, one without for the `no_weight_decay_name` parts (if any)."""
    no_decay_parts = spec.no_weight_decay_name.split()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if any(part in name for part in no_decay_parts) else decay).append(param)
    groups = [{"params": decay, "weight_decay": spec.weight_decay.value}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(
    spec: OptimizerConfig, model: torch.nn.Module, lr: float, device: torch.device = torch.device("cpu")
) -> torch.optim.Optimizer:
    """The config's optimizer over `model`'s parameters on `device`: fused on CUDA (one kernel
    for every parameter instead of a launch per tensor group, the same update up to rounding);
    elsewhere torch's default implementation, so CPU results stay as they were."""
    groups = parameter_groups(model, spec)
    kernels = {"fused": True} if device.type == "cuda" else {}
    if spec.name == "Momentum":
        nesterov = spec.use_nesterov and spec.momentum > 0  # torch refuses Nesterov without momentum
        return torch.optim.SGD(groups, lr=lr, momentum=spec.momentum, nesterov=nesterov, **kernels)
    return torch.optim.AdamW(groups, lr=lr, betas=(spec.beta1, spec.beta2), eps=spec.epsilon, **kernels)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """A saved optimizer state, keeping this run's kernel choice: torch would take the saved
    `fused` flag too, so a CUDA run resumed on a CPU (or the reverse) would keep the other's."""
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flag in zip(optimizer.param_groups, fused):
        group["fused"] = flag


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
