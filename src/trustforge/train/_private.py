"""Private training as a step strategy: DP-SGD (Abadi et al., 2016) through Opacus.

Each step draws a Poisson sample of the training rows (every row independently with
probability q = batch_size / n), computes each sample's gradient (Opacus' grad-sample
hooks), clips it to `max_grad_norm`, sums, adds Gaussian noise of std
`noise_multiplier · max_grad_norm` and divides by the expected batch size (Opacus'
`DPOptimizer`). Opacus' accountant (PRV by default, or RDP) turns the noise, the sample rate
and the steps taken into the ε spent at the given δ; nothing of the accounting is ours.

Why Opacus' pieces rather than `PrivacyEngine.make_private`: the Trainer batches in-memory
tensors by index and has no DataLoader to hand over, so the strategy draws the Poisson batches
itself (`batches`), with exactly the sample rate it gives the accountant, and an epoch is
ceil(n / batch_size) steps. The sampling is the one the accountant assumes: drawing the batch
size k from Binomial(n, q) and then k distinct rows uniformly gives every row an independent
inclusion with probability q.

What the guarantee covers: the model's weights (and every model chosen among the epochs by
validation data, which is post-processing). It does not cover what the preprocessing fits on
the training rows (table standardisation, vocabularies, category lists) nor the package's
monitoring statistics; those are computed without noise.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Any, Iterator

import torch

from trustforge._extras import require
from trustforge.errors import TrainingError
from trustforge.train._steps import StepContext, StepStrategy

__all__ = ["PrivateStep", "accounting_refusal"]

SAMPLING = "poisson"  # what `batches` draws; recorded with the guarantee


def _check_arguments(
    epsilon: float | None,
    noise_multiplier: float | None,
    accountant: str,
    sample_size: int,
    batch_size: int,
    epochs: int,
    delta: float,
    max_grad_norm: float,
) -> None:
    """`PrivateStep`'s arguments, each in range (ValueError naming the first that is not)."""
    if (epsilon is None) == (noise_multiplier is None):
        raise ValueError("give epsilon or noise_multiplier, not both and not neither")
    if accountant not in ("prv", "rdp"):
        raise ValueError(f"accountant must be prv or rdp; got {accountant!r}")
    if sample_size < 1 or batch_size < 1 or epochs < 1:
        raise ValueError(f"sample_size, batch_size and epochs must be >= 1; got {sample_size}, {batch_size}, {epochs}")
    if not 0 < delta < 1 or max_grad_norm <= 0:
        raise ValueError(f"delta must be in (0, 1) and max_grad_norm > 0; got {delta}, {max_grad_norm}")
    if delta * sample_size >= 1:  # the spec's own check (`PrivacySpec.check_delta`) names the field first
        raise ValueError(f"delta must be below 1/sample_size = {1 / sample_size:.3g}; got {delta}")


class PrivateStep(StepStrategy):
    """DP-SGD steps on Poisson batches, with Opacus' per-sample clipping, noise and accountant.

    Args:
        sample_size: the number of training rows n (the sample rate is batch_size / n).
        batch_size: the expected batch size (the Poisson batches vary around it).
        epochs: the epochs the budget is spread over (with `epsilon`: the noise is chosen so
            that ε is spent after `epochs` · ceil(n / batch_size) steps).
        epsilon: the target budget; or give `noise_multiplier`.
        delta: δ of (ε, δ)-differential privacy.
        max_grad_norm: each sample's gradient is clipped to this L2 norm.
        noise_multiplier: the noise std over `max_grad_norm`, instead of `epsilon`.
        accountant: "prv" (Opacus' default for `PrivacyEngine`) or "rdp".

    Raises:
        ValueError: a value out of range, or a budget too small for the steps (no noise reaches it).

    A model's own `penalty()` is not trained on: its gradient is no sum of per-sample gradients,
    and DP-SGD replaces the gradient with the clipped, noised sum.
    """

    def __init__(
        self,
        *,
        sample_size: int,
        batch_size: int,
        epochs: int,
        delta: float,
        max_grad_norm: float,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        accountant: str = "prv",
    ):
        require("privacy", "train.privacy (DP-SGD)")
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier

        _check_arguments(epsilon, noise_multiplier, accountant, sample_size, batch_size, epochs, delta, max_grad_norm)
        self.sample_size = int(sample_size)
        self.batch_size = min(int(batch_size), self.sample_size)
        self.sample_rate = self.batch_size / self.sample_size
        self.steps_per_epoch = math.ceil(self.sample_size / self.batch_size)
        self.planned_steps = int(epochs) * self.steps_per_epoch
        self.delta = float(delta)
        self.max_grad_norm = float(max_grad_norm)
        self.target_epsilon = None if epsilon is None else float(epsilon)
        self.accountant_name = accountant
        if noise_multiplier is None:
            if epsilon is None or epsilon <= 0:
                raise ValueError(f"epsilon must be > 0; got {epsilon}")
            try:
                with _quiet():
                    noise_multiplier = get_noise_multiplier(
                        target_epsilon=float(epsilon),
                        target_delta=self.delta,
                        sample_rate=self.sample_rate,
                        steps=self.planned_steps,
                        accountant=accountant,
                    )
            except ValueError:  # Opacus's "The privacy budget is too low.": its search passed its largest noise
                raise ValueError(
                    f"epsilon {epsilon} at delta {delta} cannot be reached in {self.planned_steps} steps at sample rate "
                    f"{self.sample_rate:.4g} (not even with a noise multiplier of a million); raise epsilon or lower max_epochs"
                ) from None
        elif noise_multiplier <= 0:
            raise ValueError(f"noise_multiplier must be > 0; got {noise_multiplier}")
        else:  # refused now, not after the fit, when the accountant would first be asked for the ε spent
            refusal = accounting_refusal(accountant, float(noise_multiplier), self.sample_rate, self.planned_steps, self.delta)
            if refusal is not None:
                raise ValueError(refusal)
        self.noise_multiplier = float(noise_multiplier)
        self.accountant = create_accountant(mechanism=accountant)
        self.seconds = 0.0  # time in steps, for the cost against plain training
        self._hooks: Any = None
        self._stepped = False  # a backward ran since the last update

    # ------------------------------------------------------------------ the fit

    def setup(self, ctx: StepContext) -> None:
        """Attach Opacus' per-sample-gradient hooks to the model and wrap the optimizer in its `DPOptimizer`."""
        from opacus.grad_sample import GradSampleHooks
        from opacus.optimizers import DPOptimizer

        try:
            self._hooks = GradSampleHooks(ctx.model, batch_first=True, loss_reduction="mean", strict=True)
        except NotImplementedError as e:
            raise TrainingError(f"train.privacy: Opacus cannot compute per-sample gradients for this model: {e}") from None
        optimizer = DPOptimizer(
            ctx.optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            expected_batch_size=self.batch_size,
            loss_reduction="mean",
        )
        optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        ctx.optimizer = optimizer

    def teardown(self, ctx: StepContext) -> None:
        if self._hooks is not None:
            self._hooks.cleanup()  # removes the hooks and the grad_sample attributes from the parameters
            self._hooks = None
        inner = getattr(ctx.optimizer, "original_optimizer", None)
        if inner is not None:
            ctx.optimizer = inner

    def batches(self, n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        """ceil(n / batch_size) Poisson batches: each row in each batch independently with probability q."""
        if n != self.sample_size:
            raise TrainingError(f"train.privacy: the step was planned for {self.sample_size} training rows; the fit has {n}")
        out = []
        total = torch.tensor(float(n))
        rate = torch.tensor(self.sample_rate)
        for _ in range(self.steps_per_epoch):
            k = int(torch.binomial(total, rate, generator=generator))
            out.append(_distinct(n, k, generator))
        return out

    def backward(
        self, ctx: StepContext, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, *, weight: float, sync: bool
    ) -> torch.Tensor:
        started = time.perf_counter()
        with ctx.autocast:
            loss = ctx.loss_fn(ctx.model(*inputs), target)
        with _quiet():
            loss.backward()  # a mean over the batch: Opacus' hooks scale each sample's gradient back by the batch size
        self._stepped = True
        self.seconds += time.perf_counter() - started
        return loss.detach()

    def update(self, ctx: StepContext) -> None:
        started = time.perf_counter()
        if not self._stepped:
            # An empty Poisson batch still takes a step (noise only), as the accountant counts it.
            for p in ctx.model.parameters():
                if p.requires_grad:
                    p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
        ctx.optimizer.step()
        ctx.optimizer.zero_grad(set_to_none=True)
        self._stepped = False
        self.seconds += time.perf_counter() - started

    # ------------------------------------------------------------------ the guarantee

    @property
    def steps(self) -> int:
        """Noised steps taken (over resumes)."""
        return sum(int(n) for _, _, n in self.accountant.history)

    def epsilon(self) -> float:
        """The ε spent so far at `delta`, as Opacus' accountant reports it (0 before any step)."""
        if not self.accountant.history:
            return 0.0
        try:
            with _quiet():
                return float(self.accountant.get_epsilon(delta=self.delta))
        except _ACCOUNTING_FAILURES as e:  # checked before the fit (`accounting_refusal`); a history it did not foresee
            field = (
                f"train.privacy.epsilon {self.target_epsilon:g} (noise multiplier {self.noise_multiplier:g})"
                if self.target_epsilon is not None
                else f"train.privacy.noise_multiplier {self.noise_multiplier:g}"
            )
            raise TrainingError(
                f"{field}: Opacus' {self.accountant_name} accountant cannot account the {self.steps} steps taken "
                f"({e.__class__.__name__}: {e}); " + ("lower epsilon" if self.target_epsilon is not None else "raise noise_multiplier")
            ) from None

    def summary(self) -> dict[str, Any]:
        """The guarantee, for the run's metrics (flat keys, `privacy_` first)."""
        return {
            "privacy_epsilon": self.epsilon(),
            "privacy_delta": self.delta,
            "privacy_target_epsilon": self.target_epsilon,
            "privacy_accountant": self.accountant_name,
            "privacy_noise_multiplier": self.noise_multiplier,
            "privacy_max_grad_norm": self.max_grad_norm,
            "privacy_sample_rate": self.sample_rate,
            "privacy_steps": self.steps,
            "privacy_sampling": SAMPLING,
            "privacy_seconds": self.seconds,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"history": [[float(s), float(q), int(n)] for s, q, n in self.accountant.history], "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.history = [(float(s), float(q), int(n)) for s, q, n in state["history"]]
        self.seconds = float(state.get("seconds", 0.0))


# What Opacus' accountants raise on a noise too small to account: the PRV accountant's grid
# overflows numpy ("Maximum allowed size exceeded"), fails to allocate, or its discretisation
# drifts ("Discrete mean differs significantly from continuous mean").
_ACCOUNTING_FAILURES = (ValueError, RuntimeError, MemoryError, OverflowError, FloatingPointError)

# The largest grid the PRV accountant is let discretise on: its size grows without bound as the
# noise shrinks (Opacus documents no lower bound on the noise multiplier; see opacus#601, #602),
# and measured here 8.7M points took 7 s and gave ε = inf, 200M failed to allocate 1.5 GiB, while
# the examples' runs need 1e5 to 5e5.
_MAX_PRV_GRID = 2**23


def accounting_refusal(accountant: str, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> str | None:
    """Why Opacus' `accountant` cannot give the ε of `steps` DP-SGD steps at this noise and sample
    rate (a message naming `train.privacy.noise_multiplier`), or None when it can.

    The PRV accountant's grid is sized first (cheap) and refused when too large to compute on;
    then the ε of the planned steps is computed once, as the run will ask for it, and must be finite.
    """
    from opacus.accountants import RDPAccountant, create_accountant

    where = f"train.privacy.noise_multiplier {noise_multiplier:g} over the run's {steps} steps at sample rate {sample_rate:.4g}"

    def rdp_epsilon() -> str:
        rdp = RDPAccountant()
        rdp.history = [(noise_multiplier, sample_rate, steps)]
        try:
            with warnings.catch_warnings():  # at such noise RDP's orders fall short of tight: it says so, and we say why
                warnings.simplefilter("ignore")
                return f"; the RDP accountant puts its ε at {rdp.get_epsilon(delta=delta):.3g}, no meaningful guarantee"
        except _ACCOUNTING_FAILURES:
            return ""

    if accountant == "prv":
        from opacus.accountants import PRVAccountant
        from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV

        try:  # the domain PRVAccountant.get_epsilon discretises on, with its default errors
            with warnings.catch_warnings():  # it bounds the domain with RDP, whose orders' warnings say nothing here
                warnings.simplefilter("ignore")
                size = (
                    PRVAccountant()
                    ._get_domain(
                        prvs=[PoissonSubsampledGaussianPRV(sample_rate, noise_multiplier)],
                        num_self_compositions=[steps],
                        eps_error=0.01,
                        delta_error=delta / 1000,
                    )
                    .size
                )
        except _ACCOUNTING_FAILURES:
            size = math.inf
        if size > _MAX_PRV_GRID:
            return f"{where} is too small a noise for Opacus' prv accountant to account{rdp_epsilon()}; raise noise_multiplier"
    trial = create_accountant(mechanism=accountant)
    trial.history = [(noise_multiplier, sample_rate, steps)]
    try:
        with warnings.catch_warnings():  # only the figure is wanted; the run's own accounting speaks for itself
            warnings.simplefilter("ignore")
            epsilon = float(trial.get_epsilon(delta=delta))
    except _ACCOUNTING_FAILURES as e:
        return f"{where}: Opacus' {accountant} accountant cannot account it ({e.__class__.__name__}: {e}); raise noise_multiplier"
    if not math.isfinite(epsilon):
        return f"{where} spends an unbounded ε (the {accountant} accountant gives {epsilon}){rdp_epsilon()}; raise noise_multiplier"
    return None


def _distinct(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """k distinct indices in [0, n), uniformly, in O(k) expected time for k much below n."""
    if k * 4 >= n:
        return torch.randperm(n, generator=generator)[:k]
    picked = torch.empty(0, dtype=torch.long)
    while len(picked) < k:
        more = torch.randint(0, n, (2 * (k - len(picked)),), generator=generator)
        picked = torch.cat([picked, more]).unique()  # sorted: the draw is redone below for a uniform subset
    # `unique` sorts, so which k of the distinct draws are kept must not depend on their values.
    return picked[torch.randperm(len(picked), generator=generator)[:k]]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence two warnings that say nothing wrong here: the RDP orders' range (Opacus' PRV
    accountant bounds its domain with RDP at small budgets) and torch's note that the full
    backward hooks fire on module outputs when the inputs need no gradient (images never do)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        yield
