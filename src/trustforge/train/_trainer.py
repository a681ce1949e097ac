"""The Trainer: the training loop as engineering around a model that is pure science.

It owns the device, precision, optimizer, schedule, gradient accumulation and clipping, and
randomness; callbacks add early stopping, progress, logging and checkpoints. Data are
tensors in memory, batched by index with a seeded generator (no DataLoader: for in-memory
tensors its per-sample collation costs more than the model's step on small models).
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from trustforge.errors import TrainingError
from trustforge.spec._model import TrainSpec
from trustforge.train._callbacks import Callback
from trustforge.train._checkpoint import flatten_optimizer, unflatten_optimizer
from trustforge.train._optim import LossFn, lr_at, make_optimizer

__all__ = ["Trainer", "seeded", "resolve_device"]

MetricsFn = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global generator seeded, restoring the caller's state after.

    Model initialisation and dropout draw from the global generator; forking keeps a run
    reproducible without leaking state into (or from) the caller.
    """
    with torch.random.fork_rng(devices=[]):
        # Only the CPU generator: `torch.manual_seed` would also reseed CUDA generators, which
        # are not forked here, and so leak into the caller's state.
        torch.random.default_generator.manual_seed(seed)
        yield


def resolve_device(accelerator: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without one is an error."""
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.accelerator is 'cuda' but no CUDA device is available; use auto or cpu")
    if accelerator in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _balanced_weights(target: torch.Tensor) -> torch.Tensor:
    """Per-sample drawing weights 1 / (count of its class), on the CPU (where the generator is).

    Drawn with replacement, every class then makes up an equal share of an epoch in
    expectation: rare positives (fraud) repeat, common ones are subsampled; an epoch keeps its
    number of samples, so `max_epochs` means the same amount of work.
    """
    if target.dtype not in (torch.int64, torch.int32) or target.dim() != 1:
        raise TrainingError("train.sampler 'balanced' needs class-index targets (task classification)")
    t = target.cpu()
    counts = torch.bincount(t).double()
    return 1.0 / counts[t]


class Trainer:
    """Fits a model on in-memory tensors.

    Args:
        spec: the spec's `train` section.
        loss_fn: maps (model outputs, targets) to a scalar loss.
        callbacks: optional behaviour, called in order.
        val_metrics: maps (validation outputs, targets) to named metrics (logged as `val_<name>`).
        train_transform: applied to the first input of each training batch (augmentation).
        train_batch_transform: applied to all inputs of each training batch, returning the
            inputs the model takes (e.g. each interaction paired with a sampled negative item).

    A model may add its own penalty to the training loss (e.g. L2 on the embedding rows a
    batch looked up): a `penalty()` method returning the penalty of its last forward pass in
    training mode (as Keras layers `add_loss`). It is trained on, not logged: `train_loss` is
    the data loss, comparable with `val_loss`.
    """

    def __init__(
        self,
        spec: TrainSpec,
        loss_fn: LossFn,
        *,
        callbacks: Sequence[Callback] = (),
        val_metrics: MetricsFn | None = None,
        train_transform: BatchTransform | None = None,
        train_batch_transform: Callable[[tuple[torch.Tensor, ...], torch.Generator], tuple[torch.Tensor, ...]] | None = None,
    ):
        self.spec = spec
        self.loss_fn = loss_fn
        self.callbacks = list(callbacks)
        self.val_metrics = val_metrics
        self.train_transform = train_transform
        self.train_batch_transform = train_batch_transform
        self.max_epochs = spec.max_epochs
        self.device = resolve_device(spec.accelerator)
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator().manual_seed(spec.seed + 1)
        self.history: list[dict[str, float]] = []
        self.should_stop = False
        self.best_epoch: int | None = None
        self.batches_per_epoch = 0
        self.start_epoch = 0
        self.fit_seconds = 0.0

    # ------------------------------------------------------------------ the loop

    def fit(
        self,
        model: nn.Module,
        train: Any,
        validation: Any | None = None,
        *,
        resume: tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None,
    ) -> list[dict[str, float]]:
        """Train `model` in place on `train` (an object with `.inputs` and `.target`).

        Randomness comes from the spec's seed only: batch order and augmentation from the
        trainer's generator, dropout from torch's global generator, which is forked and seeded
        for the fit, so the caller's state neither changes the result nor is changed by it.

        Returns:
            One dict of logs per epoch (train_loss, val_loss, val_<metric>, lr, seconds).

        Raises:
            TrainingError: the loss became NaN or infinite.
        """
        with self._own_rng():
            return self._fit(model, train, validation, resume)

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.random.default_generator.manual_seed(self.spec.seed + 2)
            if devices:
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(self.spec.seed + 2)
            yield

    def _fit(self, model: nn.Module, train: Any, validation: Any | None, resume: Any) -> list[dict[str, float]]:
        self.model = model.to(self.device)
        self.optimizer = make_optimizer(self.spec, model.parameters())
        self.should_stop = False
        inputs = tuple(t.to(self.device) for t in train.inputs)
        target = train.target.to(self.device)
        n = len(target)
        bs = self.spec.batch_size
        self.batches_per_epoch = math.ceil(n / bs)
        sample_weights = _balanced_weights(train.target) if self.spec.sampler == "balanced" else None
        if resume is not None:
            self.load_state_dict(*resume)
        autocast = self._autocast()
        accumulate = self.spec.accumulate_grad_batches
        # Batch norm cannot train on a single sample: a last batch of one is skipped (the sample
        # rejoins next epoch, in another batch).
        used = [0 if (size == 1 and n > 1) else size for size in (min(bs, n - b * bs) for b in range(self.batches_per_epoch))]
        # Each loss is weighted by its batch's share of the samples of its accumulation group, so
        # accumulating k batches of size b steps exactly as one batch of k·b would.
        group_samples = [sum(used[g : g + accumulate]) for g in range(0, self.batches_per_epoch, accumulate)]
        for cb in self.callbacks:
            cb.on_fit_start(self)
        started = time.perf_counter()
        try:
            # A run that stopped early and was interrupted afterwards (while packaging) resumes
            # with no epochs left.
            first = self.max_epochs if self.should_stop else self.start_epoch
            for epoch in range(first, self.max_epochs):
                epoch_start = time.perf_counter()
                lr = lr_at(self.spec, epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                for cb in self.callbacks:
                    cb.on_epoch_start(self, epoch)
                model.train()
                if sample_weights is None:
                    perm = torch.randperm(n, generator=self.generator).to(self.device)
                else:  # train.sampler: balanced — n draws with replacement, each class equally likely
                    perm = torch.multinomial(sample_weights, n, replacement=True, generator=self.generator).to(self.device)
                total = torch.zeros((), device=self.device)
                seen = 0
                pending = False
                self.optimizer.zero_grad(set_to_none=True)
                for b in range(self.batches_per_epoch):
                    if used[b]:
                        idx = perm[b * bs : (b + 1) * bs]
                        xs = tuple(t[idx] for t in inputs)
                        if self.train_transform is not None:
                            xs = (self.train_transform(xs[0], self.generator),) + xs[1:]
                        if self.train_batch_transform is not None:
                            xs = self.train_batch_transform(xs, self.generator)
                        with autocast:
                            loss = self.loss_fn(model(*xs), target[idx])
                            penalty = model.penalty() if callable(getattr(model, "penalty", None)) else None
                        share = used[b] / group_samples[b // accumulate]
                        objective = loss if penalty is None else loss + penalty
                        (objective * share if share != 1 else objective).backward()
                        pending = True
                        total += loss.detach() * used[b]
                        seen += used[b]
                    if pending and ((b + 1) % accumulate == 0 or b + 1 == self.batches_per_epoch):
                        self._clip()
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                        pending = False
                    for cb in self.callbacks:
                        cb.on_batch_end(self, b)
                train_loss = float(total) / max(seen, 1)
                if not math.isfinite(train_loss):
                    raise TrainingError(
                        f"training loss became {train_loss} in epoch {epoch + 1}; lower train.optimizer.lr "
                        "or set train.gradient_clip_val"
                    )
                logs = {"train_loss": train_loss}
                if validation is not None and len(validation):
                    logs.update(self._validate(validation))
                logs["lr"] = lr
                logs["seconds"] = time.perf_counter() - epoch_start
                self.history.append(logs)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                if self.should_stop:
                    break
        except BaseException:
            # Let callbacks release what they hold (a live progress display, a checkpoint
            # being written) before the error reaches the caller.
            for cb in self.callbacks:
                cb.on_fit_abort(self)
            raise
        self.fit_seconds = time.perf_counter() - started
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history

    @torch.no_grad()
    def predict(self, inputs: Sequence[torch.Tensor], batch_size: int = 1024, *, mixed_precision: bool = True) -> torch.Tensor:
        """Raw model outputs for `inputs`, in eval mode, on CPU.

        Args:
            mixed_precision: use the trainer's precision (as validation does); False computes in
                float32, as a loaded package does, so the figures describe the saved model.
        """
        assert self.model is not None
        self.model.eval()
        n = len(inputs[0])
        outs = []
        with self._autocast() if mixed_precision else contextlib.nullcontext():
            for i in range(0, n, batch_size):
                outs.append(self.model(*(t[i : i + batch_size].to(self.device) for t in inputs)).float())
        return torch.cat(outs).cpu() if outs else torch.empty(0)

    def _validate(self, data: Any) -> dict[str, float]:
        out = self.predict(data.inputs)
        logs = {"val_loss": float(self.loss_fn(out, data.target))}
        if self.val_metrics is not None:
            logs.update({f"val_{k}": v for k, v in self.val_metrics(out, data.target).items()})
        return logs

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.spec.precision == "bf16-mixed":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _clip(self) -> None:
        clip = self.spec.gradient_clip_val
        if clip is None:
            return
        if self.spec.gradient_clip_algorithm == "norm":
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        else:
            nn.utils.clip_grad_value_(self.model.parameters(), clip)

    # ------------------------------------------------------------------ resume state

    def state_dict(self, epoch: int) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Everything needed to continue after `epoch` (0-based) as (JSON, tensors)."""
        opt_meta, opt_tensors = flatten_optimizer(self.optimizer.state_dict())
        tensors = {f"model.{k}": v.detach().cpu() for k, v in self.model.state_dict().items()}
        tensors.update(opt_tensors)
        tensors["rng.generator"] = self.generator.get_state()
        tensors["rng.global"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        callbacks = {}
        for i, cb in enumerate(self.callbacks):
            meta, cb_tensors = cb.state_dict()
            if meta or cb_tensors:
                callbacks[f"{i}:{type(cb).__name__}"] = meta
                tensors.update({f"cb{i}.{k}": v.detach().cpu() for k, v in cb_tensors.items()})
        meta = {"epoch": epoch, "stopped": self.should_stop, "optimizer": opt_meta, "history": self.history, "callbacks": callbacks}
        return meta, tensors

    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.optimizer.load_state_dict(unflatten_optimizer(meta["optimizer"], tensors))
        self.generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.global"])
        if self.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.history = list(meta["history"])
        self.should_stop = bool(meta.get("stopped", False))
        for i, cb in enumerate(self.callbacks):
            key = f"{i}:{type(cb).__name__}"
            if key in meta["callbacks"]:
                prefix = f"cb{i}."
                cb.load_state_dict(meta["callbacks"][key], {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        self.start_epoch = meta["epoch"] + 1
