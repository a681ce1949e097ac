"""Step strategies: how one optimisation step is taken, handed to the Trainer as an object.

The Trainer's loop decides *when*: which samples form a batch, which batches form one
accumulation group, when an epoch ends. A strategy decides *how*: the forward pass and loss
of one batch and its backward pass (`backward`), then the update once a group is complete
(`update`). The loop never asks which strategy it holds, so private training (Opacus DP-SGD:
per-sample clipping and noise in the optimizer it wraps), adversarial training (perturbed
inputs inside `backward`) and distributed training (a DDP-wrapped model in `setup`, and
`sync` to skip the all-reduce of batches that do not end a group) plug in as new classes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["StepContext", "StepStrategy", "PlainStep", "clip_gradients"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class StepContext:
    """What a strategy works with during one fit (built by the Trainer at fit start).

    Attributes:
        model: the network, on the trainer's device, in training mode during steps.
        optimizer: the optimizer over `model`'s parameters.
        loss_fn: maps (outputs, targets) to the scalar data loss.
        autocast: the precision context (bf16 autocast for `bf16-mixed`, float16 for `16-mixed`,
            else a no-op); reusable, entered once per forward pass.
        clip_val: the gradient clipping threshold, or None for no clipping.
        clip_algorithm: "norm" (clip the global L2 norm) or "value" (clip each element).
        generator: the trainer's seeded generator, for strategies that draw (e.g. attack starts).
        scaler: the gradient scaler (`16-mixed`; a disabled one is a pass-through): scale the
            objective before `backward`, unscale before clipping, step and update through it.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    autocast: contextlib.AbstractContextManager
    clip_val: float | None
    clip_algorithm: str
    generator: torch.Generator
    scaler: torch.amp.GradScaler = field(default_factory=lambda: torch.amp.GradScaler("cpu", enabled=False))


class StepStrategy:
    """The interface. Subclasses override `backward` and `update`; `setup` is optional.

    For one accumulation group of batches the loop calls `backward` once per batch, then
    `update` once; gradients are zeroed at the start of every epoch.
    """

    def setup(self, ctx: StepContext) -> None:
        """Called once per fit after the optimizer exists (and before a resume loads state).

        A strategy may replace `ctx.model` or `ctx.optimizer` with wrappers (DDP, Opacus);
        the Trainer keeps the unwrapped model for prediction and checkpoints.
        """

    def teardown(self, ctx: StepContext) -> None:
        """Called once when a fit ends (or fails): undo what `setup` attached to the model (hooks)."""

    def batches(self, n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor] | None:
        """One epoch's batches as index tensors (CPU) into the `n` training samples, or None.

        None (the default) lets the loop batch: a shuffle cut into `batch_size` pieces, grouped for
        accumulation. A strategy that must draw its own (DP-SGD's Poisson sampling) returns them;
        the loop then updates after every batch, an empty one included (`backward` is skipped).
        """
        return None

    def backward(
        self, ctx: StepContext, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, *, weight: float, sync: bool
    ) -> torch.Tensor:
        """Forward, loss and backward of one batch; returns the detached data loss (a scalar).

        Args:
            weight: this batch's share of its accumulation group's samples; the gradient of
                `weight · loss` is accumulated, so k batches step as one batch of their union.
            sync: an `update` follows this batch (a distributed strategy reduces gradients now).
        """
        raise NotImplementedError

    def update(self, ctx: StepContext) -> None:
        """Apply the accumulated gradients (clipping first) and zero them."""
        raise NotImplementedError

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's part of an epoch's sample order (all of it by default).

        A data-parallel strategy returns its rank's share; every process must get the same
        length, so that their steps (and the gradient all-reduce in them) pair up.
        """
        return order

    def mean_loss(self, total: torch.Tensor, seen: int) -> float:
        """The epoch's mean training loss from this process's summed loss over `seen` samples
        (a data-parallel strategy reduces both over all processes first)."""
        return float(total) / max(seen, 1)

    def agree(self, stop: bool) -> bool:
        """Whether training stops after this epoch, as every process must see it (rank 0's decision
        under data parallelism); `stop` itself by default."""
        return stop

    def summary(self) -> dict[str, Any]:
        """What the run's metrics report of the strategy (flat JSON values, e.g. its cost); none by default."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """JSON state to carry over a resume (e.g. a privacy accountant); none by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def clip_gradients(model: nn.Module, clip_val: float | None, algorithm: str) -> None:
    """Clip `model`'s gradients in place (Lightning's `gradient_clip_val` / `_algorithm`)."""
    if clip_val is None:
        return
    if algorithm == "norm":
        nn.utils.clip_grad_norm_(model.parameters(), clip_val)
    else:
        nn.utils.clip_grad_value_(model.parameters(), clip_val)


class PlainStep(StepStrategy):
    """Ordinary back-propagation, with the model's own penalty if it has one.

    A model may add a penalty to the training loss (e.g. L2 on the embedding rows a batch
    looked up): a `penalty()` method returning the penalty of its last forward pass in
    training mode (as Keras layers' `add_loss`). It is trained on, not returned: the returned
    loss is the data loss, comparable with `val_loss`.
    """

    def backward(
        self, ctx: StepContext, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, *, weight: float, sync: bool
    ) -> torch.Tensor:
        model = ctx.model
        with ctx.autocast:
            loss = ctx.loss_fn(model(*inputs), target)
            penalty = model.penalty() if callable(getattr(model, "penalty", None)) else None
        objective = loss if penalty is None else loss + penalty
        ctx.scaler.scale(objective * weight if weight != 1 else objective).backward()
        return loss.detach()

    def update(self, ctx: StepContext) -> None:
        if ctx.scaler.is_enabled() and ctx.clip_val is not None:
            ctx.scaler.unscale_(ctx.optimizer)  # clip the true gradients, not the scaled ones
        clip_gradients(ctx.model, ctx.clip_val, ctx.clip_algorithm)
        ctx.scaler.step(ctx.optimizer)  # skips the step when float16 gradients overflowed
        ctx.scaler.update()
        ctx.optimizer.zero_grad(set_to_none=True)
