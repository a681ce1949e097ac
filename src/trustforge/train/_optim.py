"""Losses, optimizers and learning-rate schedules named in the spec."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from trustforge.spec._model import AdamSpec, AdamWSpec, SGDSpec, TrainSpec

__all__ = ["make_optimizer", "make_loss", "lr_at", "LossFn"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    """The optimizer named by `spec.optimizer`."""
    o = spec.optimizer
    if isinstance(o, SGDSpec):
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    if isinstance(o, AdamWSpec):
        return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    if isinstance(o, AdamSpec):
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    raise AssertionError(f"unhandled optimizer {o!r}")


def lr_at(spec: TrainSpec, epoch: int) -> float:
    """Learning rate for a 0-based epoch.

    A pure function of the epoch, so a resumed run needs no scheduler state to continue.
    """
    base = spec.optimizer.lr
    s = spec.scheduler
    if s.name == "step":
        return base * s.gamma ** (epoch // s.step_size)
    if s.name == "cosine":
        if epoch < s.warmup_epochs:
            return base * (epoch + 1) / s.warmup_epochs
        span = max(1, spec.max_epochs - s.warmup_epochs)
        progress = min(1.0, (epoch - s.warmup_epochs) / span)
        return s.min_lr + (base - s.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return base


def make_loss(task: str, spec: TrainSpec, n_classes: int, train_target: torch.Tensor, *, feedback: str | None = None) -> LossFn:
    """The loss function for the task, taking raw model outputs and encoded targets.

    `class_weights: balanced` weighs each class by n / (K · count), as sklearn's
    `class_weight="balanced"` does. Task recommendation (`feedback` explicit or implicit):
    MSE on ratings, or BPR, -log σ(score(u, i) - score(u, j)), on the score differences a
    recommender returns for (interaction, sampled negative) pairs.
    """
    if task == "recommendation":
        if feedback == "implicit":
            return lambda out, y: F.softplus(-out.float().reshape(-1)).mean()  # softplus(-x) = -log σ(x)
        return lambda out, y: F.mse_loss(out.float().reshape(-1), y)
    if task == "regression":
        return lambda out, y: F.mse_loss(out.squeeze(-1).float(), y)
    if task == "forecasting":  # (N, horizon) outputs against (N, horizon) targets
        return lambda out, y: F.mse_loss(out.float().reshape(y.shape), y)
    weights = None
    if spec.class_weights == "balanced":
        counts = torch.bincount(train_target, minlength=n_classes).clamp(min=1).float()
        weights = len(train_target) / (n_classes * counts)
    if spec.loss == "bce":
        pos_weight = None if weights is None else (weights[1] / weights[0]).reshape(1)
        return lambda out, y: F.binary_cross_entropy_with_logits(out.squeeze(-1).float(), y.float(), pos_weight=pos_weight)
    ls = spec.label_smoothing
    return lambda out, y: F.cross_entropy(out.float(), y, weight=weights, label_smoothing=ls)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
