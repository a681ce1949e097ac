"""Gradient attacks on a network's encoded inputs: FGSM and PGD, L-infinity and L2.

Why our own and not ART's: the attack must run on the package's network in its real input
space (the spaces its input kind declares, `data.AttackSpace`), for every kind of input and
inside the training step (adversarial training); ART wraps one array input per classifier and
copies to NumPy every step. The update rules are the standard ones (Goodfellow et al., 2015;
Madry et al., 2018) and `tests/models/test_attacks.py` holds them equal to ART's on the digits
network.

A step moves `delta`, the perturbation in budget units (`x_adv = x + delta · unit`): for L∞
by `step_size · sign(grad)`, for L2 by `step_size · grad / ||grad||₂`, with the norm taken
over all of a sample's attacked elements jointly. After each step the adversarial input is
clipped to each element's valid range, then `delta` is projected back onto the epsilon ball
(the order ART uses). Elements outside an attack space's mask, and tensors without a space
(token ids, category indices), never move.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch

from trustforge.data import AttackSpace

__all__ = ["fgsm", "pgd", "Norm"]

Norm = Literal["inf", "2"]
Forward = Callable[..., torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_TINY = 1e-12


def fgsm(
    forward: Forward,
    inputs: Sequence[torch.Tensor],
    target: torch.Tensor,
    loss_fn: LossFn,
    spaces: Sequence[AttackSpace | None],
    *,
    epsilon: float | torch.Tensor,
    norm: Norm = "inf",
) -> tuple[torch.Tensor, ...]:
    """The fast gradient (sign) method: one step of size epsilon (Goodfellow et al., 2015)."""
    return pgd(forward, inputs, target, loss_fn, spaces, epsilon=epsilon, steps=1, step_size=1.0, norm=norm, relative_step=True)


def pgd(
    forward: Forward,
    inputs: Sequence[torch.Tensor],
    target: torch.Tensor,
    loss_fn: LossFn,
    spaces: Sequence[AttackSpace | None],
    *,
    epsilon: float | torch.Tensor,
    steps: int,
    step_size: float | torch.Tensor,
    norm: Norm = "inf",
    random_start: bool = False,
    generator: torch.Generator | None = None,
    relative_step: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Projected gradient descent on the loss, untargeted (Madry et al., 2018).

    Args:
        forward: the network, called as `forward(*inputs)`; put it in eval mode first unless a
            training-mode attack is meant (its gradients are neither kept nor zeroed).
        inputs: the encoded inputs, one tensor per model input (batch first).
        target: what `loss_fn` compares the outputs with (true labels, or the model's own
            predictions to avoid label leaking).
        loss_fn: (outputs, target) -> a scalar, summed or averaged over the batch; the attack
            ascends it.
        spaces: one per input: where it may move, or None where it may not.
        epsilon: the budget in the spaces' units, a float or one per sample (N,), at least 0.
        steps: gradient steps, at least 1.
        step_size: the size of a step in budget units (per sample like epsilon); with
            `relative_step`, a fraction of epsilon.
        norm: "inf" or "2".
        random_start: start from a uniform draw in the L∞ ball (a Gaussian direction scaled into
            the ball for L2), drawn from `generator`.

    Returns:
        The adversarial inputs, detached; tensors without a space are returned as given.
    """
    if norm not in ("inf", "2"):
        raise ValueError(f"norm must be 'inf' or '2'; got {norm!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}")
    if len(spaces) != len(inputs):
        raise ValueError(f"{len(spaces)} attack spaces for {len(inputs)} inputs")
    attacked = [i for i, s in enumerate(spaces) if s is not None and s.moves()]
    if not attacked:
        raise ValueError("no input of this model can be moved by a gradient attack")
    x0 = [t.detach() for t in inputs]
    n = x0[0].shape[0]
    eps = _per_sample(epsilon, n, x0[0].device)
    if bool((eps < 0).any()):
        raise ValueError("epsilon must be at least 0")
    step = _per_sample(step_size, n, x0[0].device) * (eps if relative_step else 1.0)
    geo = {i: _Geometry(spaces[i], x0[i]) for i in attacked}

    delta = {i: torch.zeros_like(x0[i]) for i in attacked}
    if random_start:
        delta = _random_start(delta, geo, eps, norm, generator)
        delta = {i: geo[i].clip(x0[i], d) for i, d in delta.items()}
    for _ in range(steps):
        for d in delta.values():
            d.requires_grad_(True)
        adv = list(x0)
        for i in attacked:
            adv[i] = x0[i] + delta[i] * geo[i].unit
        loss = loss_fn(forward(*adv), target)
        grads = torch.autograd.grad(loss, [delta[i] for i in attacked])
        with torch.no_grad():
            grads = {i: g * geo[i].mask for i, g in zip(attacked, grads)}
            direction = _direction(grads, norm, n)
            moved = {i: delta[i].detach() + _bcast(step, delta[i]) * direction[i] for i in attacked}
            moved = {i: geo[i].clip(x0[i], d) for i, d in moved.items()}  # into the valid range
            delta = _project(moved, eps, norm, n)  # back onto the epsilon ball
    out = list(x0)
    for i in attacked:
        out[i] = (x0[i] + delta[i].detach() * geo[i].unit).detach()
    return tuple(out)


class _Geometry:
    """One attack space applied to a batch: unit, mask and budget-unit bounds, broadcast."""

    def __init__(self, space: AttackSpace, x: torch.Tensor):
        dev, dt = x.device, x.dtype
        self.unit = torch.as_tensor(space.unit, dtype=dt, device=dev).unsqueeze(0)
        self.lo = torch.as_tensor(space.lo, dtype=dt, device=dev).unsqueeze(0)
        self.hi = torch.as_tensor(space.hi, dtype=dt, device=dev).unsqueeze(0)
        mask = (
            torch.ones((), dtype=dt, device=dev) if space.mask is None else torch.as_tensor(space.mask, dtype=dt, device=dev).unsqueeze(0)
        )
        self.mask = torch.broadcast_to(mask, x.shape)

    def clip(self, x0: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """`delta` (budget units) such that `x0 + delta · unit` lies in [lo, hi]; masked elements 0."""
        adv = torch.minimum(torch.maximum(x0 + delta * self.unit, self.lo), self.hi)
        return (adv - x0) / self.unit * self.mask


def _per_sample(v: float | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32, device=device)
    return t.expand(n) if t.ndim == 0 else t.reshape(n)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _norms(parts: dict[int, torch.Tensor], n: int) -> torch.Tensor:
    """Per sample, the L2 norm over all parts jointly (N,)."""
    return torch.sqrt(sum(p.reshape(n, -1).pow(2).sum(dim=1) for p in parts.values()))


def _direction(grads: dict[int, torch.Tensor], norm: Norm, n: int) -> dict[int, torch.Tensor]:
    if norm == "inf":
        return {i: g.sign() for i, g in grads.items()}
    scale = _norms(grads, n).clamp_min(_TINY)
    return {i: g / _bcast(scale, g) for i, g in grads.items()}


def _project(delta: dict[int, torch.Tensor], eps: torch.Tensor, norm: Norm, n: int) -> dict[int, torch.Tensor]:
    if norm == "inf":
        return {i: torch.maximum(torch.minimum(d, _bcast(eps, d)), -_bcast(eps, d)) for i, d in delta.items()}
    factor = torch.clamp(eps / _norms(delta, n).clamp_min(_TINY), max=1.0)
    return {i: d * _bcast(factor, d) for i, d in delta.items()}


def _random_start(
    delta: dict[int, torch.Tensor], geo: dict[int, _Geometry], eps: torch.Tensor, norm: Norm, generator: torch.Generator | None
) -> dict[int, torch.Tensor]:
    def draw(like: torch.Tensor, gaussian: bool) -> torch.Tensor:
        fn = torch.randn if gaussian else torch.rand
        return fn(like.shape, generator=generator, dtype=like.dtype).to(like.device)

    if norm == "inf":
        return {i: (draw(d, False) * 2 - 1) * _bcast(eps, d) * geo[i].mask for i, d in delta.items()}
    # L2: a uniform direction, a radius drawn so the point is uniform in the ball's volume.
    direction = {i: draw(d, True) * geo[i].mask for i, d in delta.items()}
    size = sum(int(d[0].numel()) for d in delta.values())
    norms = _norms(direction, len(eps)).clamp_min(_TINY)
    radius = eps * torch.rand(len(eps), generator=generator).to(eps.device) ** (1.0 / max(size, 1))
    return {i: d / _bcast(norms, d) * _bcast(radius, d) for i, d in direction.items()}
