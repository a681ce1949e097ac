"""Optimizers and learning-rate schedules named in the spec.

Losses belong to the tasks (`trustforge.evaluate.Task.loss`): what `train.loss: auto` means
depends on the task, and the Trainer takes the loss as a function.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from trustforge.spec import AdamSpec, AdamWSpec, SGDSpec, TrainSpec

__all__ = ["make_optimizer", "build_optimizer", "lr_at", "learning_rate", "LossFn"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    """The optimizer named by `spec.optimizer`."""
    return build_optimizer(spec.optimizer, params)


def build_optimizer(o: Any, params) -> torch.optim.Optimizer:
    """The optimizer an optimizer spec (`SGDSpec`, `AdamSpec`, `AdamWSpec`) names, with torch's
    fused kernel where it has one for every parameter's device (the CPU and CUDA): the same
    update, computed in one pass. On the CPU an AdamW step over MiniLM's 22 M parameters takes
    29 ms fused against 162 ms one tensor at a time, and a small MLP's 0.06 ms against 0.22 ms."""
    # Param groups' own iterables are read twice (here and by torch): lists, so neither comes up empty.
    params = [{**p, "params": list(p["params"])} if isinstance(p, dict) else p for p in params]
    fused = _fusable(params)
    if isinstance(o, SGDSpec):
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay, fused=fused)
    if isinstance(o, AdamWSpec):
        return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=fused)
    if isinstance(o, AdamSpec):
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=fused)
    raise AssertionError(f"unhandled optimizer {o!r}")


def _fusable(params: list) -> bool | None:
    """True when torch's fused optimizers take every parameter (floating point, on the CPU or a
    CUDA device); None (torch's default choice) otherwise."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    return True if tensors and all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors) else None


def lr_at(spec: TrainSpec, epoch: int) -> float:
    """Learning rate for a 0-based epoch.

    A pure function of the epoch, so a resumed run needs no scheduler state to continue.
    """
    return learning_rate(spec.scheduler, spec.optimizer.lr, spec.max_epochs, epoch)


def learning_rate(s: Any, base: float, max_epochs: int, epoch: int) -> float:
    """Learning rate for a 0-based epoch under schedule `s` (a scheduler spec) from rate `base`."""
    if s.name == "step":
        return base * s.gamma ** (epoch // s.step_size)
    if s.name == "cosine":
        if epoch < s.warmup_epochs:
            return base * (epoch + 1) / s.warmup_epochs
        span = max(1, max_epochs - s.warmup_epochs)
        progress = min(1.0, (epoch - s.warmup_epochs) / span)
        return s.min_lr + (base - s.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return base


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
