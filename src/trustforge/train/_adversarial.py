"""Adversarial training as a step strategy: each batch is attacked, then trained on.

Two defences, both standard:

- PGD adversarial training (Madry et al., 2018): a `ratio` of each batch is replaced by its
  adversarial examples (PGD or FGSM on the training loss, within epsilon), and the model is
  trained on the mix with its ordinary loss. `ratio` 1 is Madry's min-max objective; below 1
  the clean remainder keeps clean accuracy up (Goodfellow et al., 2015 used half and half).
- TRADES (Zhang et al., 2019): loss = CE(clean) + beta · KL(p_clean || p_adv), the adversarial
  example found by maximising that KL from a small random start. Beta trades clean accuracy
  for robustness; the paper uses 6.

The attack runs on the inputs the data's kind of input lets a gradient attack move
(`InputKind.attack_spaces`): pixels within [0, 1], table numbers within their training range;
the budget is in those spaces' units (a fraction of the pixel range, standard deviations).
The attack runs with the model in eval mode by default: batch norm then normalises with its
running statistics, so crafting an example neither moves those statistics (seven extra
training-mode forwards per batch would pull them towards adversarial inputs) nor lets the
rest of the batch shape each example's gradient, and dropout is off, so each step ascends
the loss of the network that will be deployed (TRADES's reference code does the same).

The strategy counts its cost: attack forward/backward passes and the seconds spent crafting,
carried over a resume in `state_dict` and reported by `summary` (see `Trainer.summary`).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from trustforge.data import AttackSpace
from trustforge.models import fgsm, pgd
from trustforge.train._steps import PlainStep, StepContext

__all__ = ["AdversarialStep"]


class AdversarialStep(PlainStep):
    """Train on adversarial examples crafted against the current model, batch by batch.

    Args:
        spaces: one attack space per model input (None where the input may not move), as
            `InputKind.attack_spaces(preprocessor)` returns them.
        method: "pgd" (Madry: train on a mix of clean and adversarial samples) or "trades".
        attack: "pgd" or "fgsm" (one step of size epsilon; PGD-AT's cheap variant).
        epsilon: the budget, in the spaces' units (> 0).
        steps: attack steps for PGD (ignored by FGSM).
        step_size: the size of one step in budget units; None: 2.5 · epsilon / steps
            (Madry et al.'s rule, so the walk can cross the ball).
        norm: "inf" or "2".
        ratio: the share of each batch replaced by its adversarial examples (method pgd).
        beta: the weight of TRADES's KL term.
        random_start: start PGD from a random point in the ball, drawn from the trainer's
            seeded generator (TRADES always starts from one: its KL has no gradient at the clean point).
        attack_mode: "eval" (default, see the module docstring) or "train".

    The returned (logged) `train_loss` is the loss trained on: the mix's loss for pgd, the
    whole TRADES objective for trades; it is not comparable with `val_loss` (clean inputs).
    """

    def __init__(
        self,
        spaces: Sequence[AttackSpace | None],
        *,
        method: str = "pgd",
        attack: str = "pgd",
        epsilon: float,
        steps: int = 7,
        step_size: float | None = None,
        norm: str = "inf",
        ratio: float = 1.0,
        beta: float = 6.0,
        random_start: bool = True,
        attack_mode: str = "eval",
    ):
        if method not in ("pgd", "trades"):
            raise ValueError(f"method must be pgd or trades; got {method!r}")
        if attack not in ("pgd", "fgsm"):
            raise ValueError(f"attack must be pgd or fgsm; got {attack!r}")
        if attack_mode not in ("eval", "train"):
            raise ValueError(f"attack_mode must be eval or train; got {attack_mode!r}")
        if not any(s is not None and s.moves() for s in spaces):
            raise ValueError("no input of this model can be moved by a gradient attack")
        self.spaces = tuple(spaces)
        self.method = method
        self.attack = attack
        self.epsilon = float(epsilon)
        self.steps = 1 if attack == "fgsm" else int(steps)
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.epsilon / self.steps
        self.norm = norm
        self.ratio = float(ratio)
        self.beta = float(beta)
        self.random_start = random_start
        self.attack_mode = attack_mode
        # The cost, summed over the fit (and carried over a resume).
        self.samples = 0  # training samples seen
        self.attacked = 0  # of which attacked
        self.attack_passes = 0  # forward+backward passes through the model spent crafting, per sample summed
        self.train_passes = 0  # forward passes trained on, per sample summed (2 per sample for TRADES)
        self.attack_seconds = 0.0
        self._generator: torch.Generator | None = None  # the trainer's, from `setup`

    # ------------------------------------------------------------------ the step

    def backward(
        self, ctx: StepContext, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, *, weight: float, sync: bool
    ) -> torch.Tensor:
        model = ctx.model
        n = len(target)
        k = n if self.method == "trades" else max(1, round(self.ratio * n))
        started = time.perf_counter()
        was_training = model.training
        model.train(self.attack_mode == "train")
        try:
            if self.method == "trades":
                adv = self._trades_examples(model, inputs)
            else:
                adv = self._craft(model, tuple(t[n - k :] for t in inputs), target[n - k :], ctx.loss_fn)
        finally:
            model.train(was_training)
        self.attack_seconds += time.perf_counter() - started
        self.samples += n
        self.attacked += k
        self.attack_passes += k * self.steps
        if self.method == "trades":
            return self._trades_backward(ctx, inputs, adv, target, weight)
        # The first n - k samples stay clean, the last k are replaced (the batch is already shuffled).
        mixed = tuple(torch.cat([t[: n - k], a]) if k < n else a for t, a in zip(inputs, adv))
        self.train_passes += n
        return super().backward(ctx, mixed, target, weight=weight, sync=sync)

    def _craft(
        self, model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, loss_fn: Any
    ) -> tuple[torch.Tensor, ...]:
        if self.attack == "fgsm":
            return fgsm(model, inputs, target, loss_fn, self.spaces, epsilon=self.epsilon, norm=self.norm)  # type: ignore[arg-type]
        return pgd(
            model,
            inputs,
            target,
            loss_fn,
            self.spaces,
            epsilon=self.epsilon,
            steps=self.steps,
            step_size=self.step_size,
            norm=self.norm,  # type: ignore[arg-type]
            random_start=self.random_start,
            generator=self._generator,
        )

    def _trades_examples(self, model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        # The attack ascends KL(p_clean || p_adv) with p_clean fixed (TRADES, Algorithm 1). The
        # KL's gradient is zero at the clean point, so the walk always starts from a random
        # point in the ball (the paper's code: a tiny Gaussian step), drawn from the trainer's
        # generator.
        with torch.no_grad():
            clean = _log_probs(model(*inputs)).detach()

        def kl(outputs: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            return _kl(clean, _log_probs(outputs))

        if self.attack == "fgsm":  # one step of size epsilon from a random start in the ball
            steps, step_size = 1, self.epsilon
        else:
            steps, step_size = self.steps, self.step_size
        return pgd(
            model,
            inputs,
            clean,
            kl,
            self.spaces,
            epsilon=self.epsilon,
            steps=steps,
            step_size=step_size,
            norm=self.norm,  # type: ignore[arg-type]
            random_start=True,
            generator=self._generator,
        )

    def _trades_backward(
        self, ctx: StepContext, inputs: tuple[torch.Tensor, ...], adv: tuple[torch.Tensor, ...], target: torch.Tensor, weight: float
    ) -> torch.Tensor:
        model = ctx.model
        with ctx.autocast:
            clean_out = model(*inputs)
            penalty = model.penalty() if callable(getattr(model, "penalty", None)) else None
            adv_out = model(*adv)
            natural = ctx.loss_fn(clean_out, target)
            robust = _kl(_log_probs(clean_out), _log_probs(adv_out))
            loss = natural + self.beta * robust
        objective = loss if penalty is None else loss + penalty
        (objective * weight if weight != 1 else objective).backward()
        self.train_passes += 2 * len(target)
        return loss.detach()

    def setup(self, ctx: StepContext) -> None:
        self._generator = ctx.generator

    # ------------------------------------------------------------------ cost and resume

    def summary(self) -> dict[str, Any]:
        """The defence and its cost, for the run's metrics (flat keys, `adversarial_` first)."""
        per_sample = (self.attack_passes + self.train_passes) / max(self.samples, 1)
        return {
            "adversarial_method": self.method,
            "adversarial_attack": self.attack,
            "adversarial_epsilon": self.epsilon,
            "adversarial_steps": self.steps,
            "adversarial_norm": self.norm,
            "adversarial_attacked_share": self.attacked / max(self.samples, 1),
            # forward+backward passes per training sample, against 1 for plain training
            "adversarial_passes_per_sample": per_sample,
            "adversarial_attack_seconds": self.attack_seconds,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "attacked": self.attacked,
            "attack_passes": self.attack_passes,
            "train_passes": self.train_passes,
            "attack_seconds": self.attack_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.samples = int(state["samples"])
        self.attacked = int(state["attacked"])
        self.attack_passes = int(state["attack_passes"])
        self.train_passes = int(state["train_passes"])
        self.attack_seconds = float(state["attack_seconds"])


def _log_probs(outputs: torch.Tensor) -> torch.Tensor:
    """Class log-probabilities of a classifier's outputs (N, C); one logit (bce) is two classes."""
    outputs = outputs.float()
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        z = outputs.reshape(-1, 1)
        return torch.cat([F.logsigmoid(-z), F.logsigmoid(z)], dim=1)
    return F.log_softmax(outputs, dim=1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per sample, averaged over the batch."""
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
