"""The Trainer: the training loop as engineering around a model that is pure science.

It owns the device, precision, optimizer, schedule, gradient accumulation and clipping, and
randomness; callbacks add early stopping, progress, logging and checkpoints, and a step
strategy (`train._steps`) takes each optimisation step. Data are tensors in memory, batched
by index with a seeded generator (no DataLoader: for in-memory tensors its per-sample
collation costs more than the model's step on small models).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from trustforge.data import AttackSpace, first_row, input_kind, largest_budget
from trustforge.errors import SpecError, TrainingError
from trustforge.spec import AdamWSpec, NoSchedulerSpec, TrainSpec
from trustforge.train._adversarial import AdversarialStep
from trustforge.train._callbacks import Callback, Checkpoint, CSVLogger, EarlyStopping, ProgressBar
from trustforge.train._checkpoint import flatten_optimizer, unflatten_optimizer
from trustforge.train._optim import LossFn, build_optimizer, learning_rate
from trustforge.train._private import PrivateStep
from trustforge.train._steps import PlainStep, StepContext, StepStrategy

__all__ = ["Trainer", "seeded", "resolve_device", "private_step_of", "check_adversarial"]

MetricsFn = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
InputsTransform = Callable[[tuple[torch.Tensor, ...], torch.Generator], tuple[torch.Tensor, ...]]


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


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(accelerator: str, local_rank: int | None = None) -> torch.device:
    """The device a process trains on.

    `auto` picks CUDA, else Apple's MPS, else the CPU; naming an accelerator that is absent is
    an error. Under a data-parallel launch (`local_rank` given) a CUDA process takes the GPU of
    its local rank, as torchrun's one-process-per-GPU layout expects.

    Raises:
        TrainingError: `cuda` or `mps` is asked for and not available.
    """
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.accelerator is 'cuda' but no CUDA device is available; use auto or cpu")
    if accelerator == "mps" and not _mps_available():
        raise TrainingError("train.accelerator is 'mps' but no Apple MPS device is available; use auto or cpu")
    if accelerator in ("cuda", "auto") and torch.cuda.is_available():
        index = local_rank or 0
        if index >= torch.cuda.device_count():
            raise TrainingError(f"local rank {index} has no GPU: this node has {torch.cuda.device_count()}; lower --nproc-per-node")
        return torch.device("cuda", index)
    if accelerator in ("mps", "auto") and _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_precision(precision: str, device: torch.device) -> None:
    # float16 needs a gradient scaler and fast float16 kernels: CUDA's. On a CPU autocast to
    # float16 is slower than float32 and the scaler has nothing to guard; bf16-mixed is the CPU's
    # mixed precision (same exponent range as float32, no scaler).
    if precision == "16-mixed" and device.type != "cuda":
        raise TrainingError(f"train.precision '16-mixed' needs a CUDA device; this run trains on {device.type}: use bf16-mixed or 32")


# A training split larger than this share of the GPU's free memory stays in pinned host memory and
# is copied batch by batch (asynchronously); a smaller one is copied to the GPU once, so no batch
# waits on the host.
_DEVICE_RESIDENT_SHARE = 0.5


def _resident_on(device: torch.device, tensors: Sequence[torch.Tensor]) -> bool:
    """Whether a training split is copied to `device` whole (True) or streamed from pinned host memory."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return sum(t.numel() * t.element_size() for t in tensors) <= _DEVICE_RESIDENT_SHARE * free


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


@dataclass(frozen=True)
class _Plan:
    """How every epoch's samples split into batches and accumulation groups.

    Batch norm cannot train on a single sample: a last batch of one is skipped (`used` 0; the
    sample rejoins next epoch, in another batch). Each loss is weighted by its batch's share of
    the samples of its accumulation group, so accumulating k batches of size b steps exactly as
    one batch of k·b would.
    """

    batch_size: int
    used: tuple[int, ...]  # samples each batch trains on
    weights: tuple[float, ...]  # each batch's share of its group's samples
    updates: tuple[bool, ...]  # an optimizer update follows the batch
    syncs: tuple[bool, ...]  # the batch is the last one of its group that trains

    @classmethod
    def of(cls, n: int, batch_size: int, accumulate: int) -> "_Plan":
        count = math.ceil(n / batch_size)
        used = [0 if (size == 1 and n > 1) else size for size in (min(batch_size, n - b * batch_size) for b in range(count))]
        groups = [range(g, min(g + accumulate, count)) for g in range(0, count, accumulate)]
        weights, updates, syncs = [0.0] * count, [False] * count, [False] * count
        for group in groups:
            samples = sum(used[b] for b in group)
            trained = [b for b in group if used[b]]
            for b in trained:
                weights[b] = used[b] / samples
            if trained:
                updates[group[-1]] = syncs[trained[-1]] = True
        return cls(batch_size, tuple(used), tuple(weights), tuple(updates), tuple(syncs))


@dataclass
class _TrainSplit:
    inputs: tuple[torch.Tensor, ...]  # on the trainer's device, or pinned on the host (see `_resident_on`)
    target: torch.Tensor
    draw_weights: torch.Tensor | None  # train.sampler balanced: per-sample drawing weights (CPU)
    resident: bool = True  # inputs and target are on the trainer's device


def _step_of(spec: Any, data: Any) -> StepStrategy:
    """The step strategy a spec asks for: private (DP-SGD), adversarial training on the inputs its data may move, or plain."""
    if spec.train.privacy is not None:
        return private_step_of(spec.train, len(data.train.target))
    adv = spec.train.adversarial
    if adv is None:
        return PlainStep()
    spaces = _adversarial_spaces(adv, data.preprocessor, tuple(t[:1] for t in data.train.inputs))
    return AdversarialStep(
        spaces,
        method=adv.method,
        attack=adv.attack,
        epsilon=adv.epsilon,
        steps=adv.steps,
        step_size=adv.step_size,
        norm=adv.norm,
        ratio=adv.ratio if adv.ratio is not None else 1.0,  # None: the other method's field (see AdversarialSpec)
        beta=adv.beta if adv.beta is not None else 6.0,
        random_start=adv.random_start,
    )


def check_adversarial(spec: Any, preprocessor: Any, raw: Any) -> None:
    """Refuse `train.adversarial` where these inputs cannot meet it, before anything is trained
    (`train` and `validate` run it; the Trainer checks again): no input a gradient attack can
    move, or an epsilon above the largest budget of the inputs (`data.largest_budget`: an image
    column bounds a table's L∞ budget by the pixel range; an L2 budget grows with the row's size).

    Raises:
        SpecError: naming `train.adversarial` or its `epsilon`.
    """
    if spec.train.adversarial is None:
        return
    _adversarial_spaces(spec.train.adversarial, preprocessor, preprocessor.encode_inputs(first_row(raw)))


def _adversarial_spaces(adv: Any, preprocessor: Any, row: Sequence[torch.Tensor]) -> tuple[AttackSpace | None, ...]:
    """The attack spaces adversarial training moves, after the checks of `check_adversarial` (`row`: one encoded row)."""
    spaces = input_kind(preprocessor.schema).attack_spaces(preprocessor)
    if spaces is None or not any(s is not None and s.moves() for s in spaces):
        raise SpecError(
            "train.adversarial needs inputs a gradient attack can move (images, numeric table columns); "
            "this data's columns are categories, texts or flags only: set it to null"
        )
    limit = largest_budget(spaces, row, l2=adv.norm == "2")
    if limit is not None and adv.epsilon > limit[0] + 1e-9:
        raise SpecError(
            f"train.adversarial.epsilon must be at most {limit[0]:.4g} for these inputs ({limit[1]}: a larger budget attacks "
            f"nothing more); got {adv.epsilon:g}"
        )
    return tuple(spaces)


def private_step_of(train: TrainSpec, n: int) -> PrivateStep:
    """DP-SGD over the run's `n` training rows, its budget spread over `train.max_epochs`; what
    `train` builds and `validate` checks (the same refusals, by this function).

    Raises:
        SpecError: `train.privacy` cannot be met on `n` rows (delta, an epsilon no noise reaches in
            the steps, a noise multiplier the accountant cannot account), naming the field.
    """
    p = train.privacy
    p.check_delta(n)
    try:
        return PrivateStep(
            sample_size=n,
            batch_size=train.batch_size,
            epochs=train.max_epochs,
            delta=p.delta,
            max_grad_norm=p.max_grad_norm,
            epsilon=p.epsilon,
            noise_multiplier=p.noise_multiplier,
            accountant=p.accountant,
        )
    except ValueError as e:
        message = str(e)  # the accountant's refusal names its field already
        raise SpecError(message if message.startswith("train.privacy.") else f"train.privacy.epsilon: {message}") from None


class Trainer:
    """Fits a model on in-memory tensors.

    Build it from a spec with `Trainer.from_spec` (what a run does) or `Trainer.from_train_spec`
    (a spec's `train` section and a loss), or name every setting; the names and defaults are
    the spec's (`trustforge.spec.TrainSpec`), after PyTorch Lightning's.

    Args:
        loss_fn: maps (model outputs, targets) to a scalar loss.
        optimizer: an optimizer spec (`SGDSpec`, `AdamSpec`, `AdamWSpec`; default AdamW).
        scheduler: a learning-rate schedule spec (default: constant).
        sampler: "balanced" draws each epoch's samples with replacement, every class equally likely.
        precision: "32", "16-mixed" (float16 autocast and a gradient scaler; CUDA only) or
            "bf16-mixed" (bfloat16 autocast for forward passes).
        accelerator: "cpu", "cuda", "mps" or "auto" (see `resolve_device`).
        compile: train through `torch.compile(model)`; the first step at each new batch shape
            (where compilation happens) is timed as `compile_seconds`, apart from `train_seconds`.
        local_rank: this process's local rank under a data-parallel launch (picks its GPU).
        seed: batch order and augmentation (seed + 1) and dropout (seed + 2) come from it.
        step: how one optimisation step is taken (default `PlainStep()`), see `train._steps`.
        callbacks: optional behaviour, called in order.
        val_metrics: maps (validation outputs, targets) to named metrics (logged as `val_<name>`).
        train_transform: applied to the first input of each training batch (augmentation).
        train_batch_transform: applied to all inputs of each training batch, returning the
            inputs the model takes (e.g. each interaction paired with a sampled negative item).

    A model may add its own penalty to the training loss: see `PlainStep`. `train_loss` is
    the data loss, comparable with `val_loss`.
    """

    def __init__(
        self,
        *,
        loss_fn: LossFn,
        max_epochs: int = 30,
        batch_size: int = 64,
        optimizer: Any = None,
        scheduler: Any = None,
        sampler: str = "none",
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        accumulate_grad_batches: int = 1,
        precision: str = "32",
        accelerator: str = "cpu",
        compile: bool = False,
        local_rank: int | None = None,
        seed: int = 7,
        step: StepStrategy | None = None,
        callbacks: Sequence[Callback] = (),
        val_metrics: MetricsFn | None = None,
        train_transform: BatchTransform | None = None,
        train_batch_transform: InputsTransform | None = None,
    ):
        self.loss_fn = loss_fn
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.optimizer_spec = optimizer if optimizer is not None else AdamWSpec()
        self.scheduler = scheduler if scheduler is not None else NoSchedulerSpec()
        self.sampler = sampler
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.accumulate_grad_batches = accumulate_grad_batches
        self.precision = precision
        self.seed = seed
        self.step = step if step is not None else PlainStep()
        self.callbacks = list(callbacks)
        self.val_metrics = val_metrics
        self.train_transform = train_transform
        self.train_batch_transform = train_batch_transform
        self.device = resolve_device(accelerator, local_rank)
        _check_precision(precision, self.device)
        self.compile = compile
        self.compile_seconds = 0.0
        self._compiled_shapes: set[tuple[int, ...]] = set()
        self.scaler: torch.amp.GradScaler | None = None
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.history: list[dict[str, float]] = []
        self.should_stop = False
        self.best_epoch: int | None = None
        self.batches_per_epoch = 0
        self.start_epoch = 0
        self.fit_seconds = 0.0
        # A resumed fit's seconds before this leg (from the checkpoint), and when this leg began:
        # fit_seconds covers every leg of a run, as epochs_trained counts every leg's epochs.
        self._seconds_before = 0.0
        self._leg_started: float | None = None

    # ------------------------------------------------------------------ building

    @classmethod
    def from_train_spec(cls, train: TrainSpec, loss_fn: LossFn, **kwargs: Any) -> "Trainer":
        """A trainer with the settings of a spec's `train` section; `kwargs` as in the constructor."""
        return cls(
            loss_fn=loss_fn,
            max_epochs=train.max_epochs,
            batch_size=train.batch_size,
            optimizer=train.optimizer,
            scheduler=train.scheduler,
            sampler=train.sampler,
            gradient_clip_val=train.gradient_clip_val,
            gradient_clip_algorithm=train.gradient_clip_algorithm,
            accumulate_grad_batches=train.accumulate_grad_batches,
            precision=train.precision,
            accelerator=train.accelerator,
            compile=train.compile,
            seed=train.seed,
            **kwargs,
        )

    @classmethod
    def from_spec(
        cls,
        spec: Any,
        data: Any,
        task: Any,
        *,
        run_dir: Path | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = False,
        resume_meta: dict[str, Any] | None = None,
        step: StepStrategy | None = None,
        local_rank: int | None = None,
    ) -> "Trainer":
        """The trainer a run of `spec` uses on its prepared `data`.

        Args:
            spec: the `TaskSpec`.
            data: the run's prepared data (`trustforge.data.Prepared`).
            task: the spec's task object (`trustforge.evaluate.task_of(spec)`): it gives the
                loss, the validation metrics and the metric the progress bar shows.
            run_dir: where `epochs.csv` and `checkpoints/` go (None: neither is kept).
            callbacks: extra callbacks, called after the built-in ones.
            progress: show a progress bar.
            resume_meta: the JSON part of the checkpoint a run resumes from: rows logged after
                it (an epoch interrupted after its row) are dropped, as they run again.
            step: the step strategy (default: `PrivateStep` when the spec sets `train.privacy`,
                `AdversarialStep` when it sets `train.adversarial`, else `PlainStep()`).
            local_rank: this process's local rank under a data-parallel launch (its GPU).

        Raises:
            SpecError: `train.adversarial` is set but no input of the prepared data can be
                moved by a gradient attack (a table of categories and texts only), or the
                `train.privacy` budget cannot be reached in the planned steps.
        """
        es = spec.train.early_stopping
        names = (es.monitor.removeprefix("val_"),) if es is not None and es.monitor != "val_loss" else ()
        built: list[Callback] = []
        if es is not None:
            mode = es.mode if es.mode != "auto" else ("max" if task.higher_is_better(es.monitor) else "min")
            built.append(EarlyStopping(es.monitor, es.patience, es.min_delta, mode))
        logger = CSVLogger(run_dir / "epochs.csv") if run_dir is not None else None
        if logger is not None:
            built.append(logger)
            if resume_meta is not None:
                logger.truncate_after(resume_meta["epoch"] + 1)
        if progress:
            built.append(ProgressBar(es.monitor if es is not None else task.default_monitor(spec)))
        if run_dir is not None:
            built.append(Checkpoint(run_dir / "checkpoints"))
        return cls.from_train_spec(
            spec.train,
            task.loss(spec, len(data.schema.classes or []), data.train.target),
            step=step if step is not None else _step_of(spec, data),
            callbacks=[*built, *callbacks],
            val_metrics=task.validation_metrics(spec, data.preprocessor, names),
            train_transform=data.augment if data.augment else None,
            train_batch_transform=data.batch_transform,
            local_rank=local_rank,
        )

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

        Randomness comes from the seed only: batch order and augmentation from the trainer's
        generator, dropout from torch's global generator, which is forked and seeded for the
        fit, so the caller's state neither changes the result nor is changed by it.

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
            torch.random.default_generator.manual_seed(self.seed + 2)
            if devices:
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(self.seed + 2)
            yield

    def _fit(self, model: nn.Module, train: Any, validation: Any | None, resume: Any) -> list[dict[str, float]]:
        ctx, plan, split = self._start(model, train, resume)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        started = self._leg_started = time.perf_counter()
        try:
            # A run that stopped early and was interrupted afterwards (while packaging) resumes
            # with no epochs left.
            first = self.max_epochs if self.should_stop else self.start_epoch
            for epoch in range(first, self.max_epochs):
                self._epoch(ctx, plan, split, validation, epoch)
                # every process of a data-parallel run stops at the same epoch (rank 0 decides)
                self.should_stop = self.step.agree(self.should_stop)
                if self.should_stop:
                    break
        except BaseException:
            # Let callbacks release what they hold (a live progress display, a checkpoint
            # being written) before the error reaches the caller.
            for cb in self.callbacks:
                cb.on_fit_abort(self)
            raise
        finally:
            self.step.teardown(ctx)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.fit_seconds = self._seconds_before + time.perf_counter() - started
        self._leg_started = None
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history

    def _start(self, model: nn.Module, train: Any, resume: Any) -> tuple[StepContext, _Plan, _TrainSplit]:
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.optimizer_spec, model.parameters())
        self.should_stop = False
        self.compile_seconds = 0.0
        self._seconds_before = 0.0
        self._compiled_shapes = set()
        resident = _resident_on(self.device, (*train.inputs, train.target))
        place = (lambda t: t.to(self.device)) if resident else (lambda t: t.cpu().pin_memory())
        split = _TrainSplit(
            tuple(place(t) for t in train.inputs),
            place(train.target),
            _balanced_weights(train.target) if self.sampler == "balanced" else None,
            resident,
        )
        # A data-parallel strategy trains each process on its shard of every epoch's order: the
        # plan is over the shard (the same length on every process, so their steps pair up).
        plan = _Plan.of(len(self.step.shard(torch.arange(len(split.target)))), self.batch_size, self.accumulate_grad_batches)
        self.batches_per_epoch = len(plan.used)
        # float16 gradients underflow without loss scaling; disabled (a pass-through) otherwise.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "16-mixed")
        ctx = StepContext(
            self.model,
            self.optimizer,
            self.loss_fn,
            self._autocast(),
            self.gradient_clip_val,
            self.gradient_clip_algorithm,
            self.generator,
            scaler=self.scaler,
        )
        self.step.setup(ctx)
        if self.compile:
            # After the strategy's wrapper (DDP), as PyTorch advises: dynamo then splits the graph
            # at DDP's gradient buckets so the all-reduce overlaps the backward pass.
            ctx.model = torch.compile(ctx.model)
        if resume is not None:
            self.load_state_dict(*resume)
        return ctx, plan, split

    def _epoch(self, ctx: StepContext, plan: _Plan, split: _TrainSplit, validation: Any | None, epoch: int) -> None:
        epoch_start = time.perf_counter()
        lr = learning_rate(self.scheduler, self.optimizer_spec.lr, self.max_epochs, epoch)
        for group in ctx.optimizer.param_groups:
            group["lr"] = lr
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        self.model.train()
        train_loss = self._train_epoch(ctx, plan, split)
        if not math.isfinite(train_loss):
            raise TrainingError(
                f"training loss became {train_loss} in epoch {epoch + 1}; lower train.optimizer.lr or set train.gradient_clip_val"
            )
        logs = {"train_loss": train_loss}
        if validation is not None and len(validation):
            logs.update(self._validate(validation))
        logs["lr"] = lr
        logs["seconds"] = time.perf_counter() - epoch_start
        self.history.append(logs)
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, logs)

    def _train_epoch(self, ctx: StepContext, plan: _Plan, split: _TrainSplit) -> float:
        """One pass over the training split; returns the mean data loss per sample."""
        drawn = self.step.batches(len(split.target), plan.batch_size, self.generator)
        if drawn is not None:
            return self._drawn_epoch(ctx, drawn, split)
        perm = self.step.shard(self._order(split))
        total = torch.zeros((), device=self.device)
        seen = 0
        ctx.optimizer.zero_grad(set_to_none=True)
        for b, used in enumerate(plan.used):
            if used:
                inputs, target = self._batch(split, perm[b * plan.batch_size : (b + 1) * plan.batch_size])
                total += self._backward(ctx, inputs, target, plan.weights[b], plan.syncs[b]) * used
                seen += used
            if plan.updates[b]:
                self.step.update(ctx)
            for cb in self.callbacks:
                cb.on_batch_end(self, b)
        return self.step.mean_loss(total, seen)

    def _backward(
        self, ctx: StepContext, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, weight: float, sync: bool
    ) -> torch.Tensor:
        """The strategy's backward; with `compile`, the first step at each new batch shape is timed
        as compilation (dynamo compiles, or recompiles for a new shape, on that call)."""
        shape = tuple(inputs[0].shape) if self.compile else ()
        if not self.compile or shape in self._compiled_shapes:
            return self.step.backward(ctx, inputs, target, weight=weight, sync=sync)
        start = time.perf_counter()
        loss = self.step.backward(ctx, inputs, target, weight=weight, sync=sync)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.compile_seconds += time.perf_counter() - start
        self._compiled_shapes.add(shape)
        return loss

    def _drawn_epoch(self, ctx: StepContext, drawn: list[torch.Tensor], split: _TrainSplit) -> float:
        """An epoch of the strategy's own batches (see `StepStrategy.batches`), one update each."""
        total = torch.zeros((), device=self.device)
        seen = 0
        ctx.optimizer.zero_grad(set_to_none=True)
        for b, idx in enumerate(drawn):
            if len(idx):
                inputs, target = self._batch(split, idx.to(self.device) if split.resident else idx)
                total += self._backward(ctx, inputs, target, 1.0, True) * len(idx)
                seen += len(idx)
            self.step.update(ctx)
            for cb in self.callbacks:
                cb.on_batch_end(self, b)
        return self.step.mean_loss(total, seen)

    def _order(self, split: _TrainSplit) -> torch.Tensor:
        n = len(split.target)
        device = self.device if split.resident else torch.device("cpu")
        if split.draw_weights is None:
            return torch.randperm(n, generator=self.generator).to(device)
        # train.sampler: balanced — n draws with replacement, each class equally likely
        return torch.multinomial(split.draw_weights, n, replacement=True, generator=self.generator).to(device)

    def _batch(self, split: _TrainSplit, idx: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        xs = tuple(t[idx] for t in split.inputs)
        target = split.target[idx]
        if not split.resident:  # gathered on the host, copied while the device works on the last batch
            xs = tuple(t.pin_memory().to(self.device, non_blocking=True) for t in xs)
            target = target.pin_memory().to(self.device, non_blocking=True)
        if self.train_transform is not None:
            xs = (self.train_transform(xs[0], self.generator),) + xs[1:]
        if self.train_batch_transform is not None:
            xs = self.train_batch_transform(xs, self.generator)
        return xs, target

    def summary(self, history: list[dict[str, float]]) -> dict[str, Any]:
        """What a run reports of its training: epochs trained, fit time (both over every leg of a resumed run), the best epoch (1-based) and the step strategy's summary."""
        out: dict[str, Any] = {"epochs_trained": len(history), "fit_seconds": self.fit_seconds}
        if self.compile:  # compilation happens inside the fit: reported apart, and training without it
            out["compile_seconds"] = self.compile_seconds
            out["train_seconds"] = self.fit_seconds - self.compile_seconds
        if self.best_epoch is not None:
            out["best_epoch"] = self.best_epoch + 1
        out.update(self.step.summary())  # e.g. adversarial training's cost
        return out

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
        # The model's own device: a caller may have moved it back to the CPU after training (to package it).
        device = next(self.model.parameters(), torch.empty(0, device=self.device)).device
        with self._autocast() if mixed_precision and device == self.device else contextlib.nullcontext():
            for i in range(0, n, batch_size):
                outs.append(self.model(*(t[i : i + batch_size].to(device) for t in inputs)).float())
        return torch.cat(outs).cpu() if outs else torch.empty(0)

    def _validate(self, data: Any) -> dict[str, float]:
        out = self.predict(data.inputs)
        logs = {"val_loss": float(self.loss_fn(out, data.target))}
        if self.val_metrics is not None:
            logs.update({f"val_{k}": v for k, v in self.val_metrics(out, data.target).items()})
        return logs

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16-mixed":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.precision == "16-mixed":
            return torch.autocast(self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

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
        # The fit's seconds so far (every leg), so a resumed run's fit_seconds counts the time before the break.
        leg = time.perf_counter() - self._leg_started if self._leg_started is not None else 0.0
        meta["fit_seconds"] = self._seconds_before + leg
        meta["compile_seconds"] = self.compile_seconds
        if self.scaler is not None and self.scaler.is_enabled():  # 16-mixed: the loss scale carries over a resume
            meta["scaler"] = self.scaler.state_dict()
        step = self.step.state_dict()
        if step:  # only strategies with state (a privacy accountant) add the key
            meta["step"] = step
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
        # A checkpoint written before it carried fit_seconds: its epochs' own seconds (the time
        # between epochs left out), not nothing.
        self._seconds_before = float(meta.get("fit_seconds", sum(float(h.get("seconds", 0.0)) for h in self.history)))
        self.compile_seconds = float(meta.get("compile_seconds", 0.0))
        for i, cb in enumerate(self.callbacks):
            key = f"{i}:{type(cb).__name__}"
            if key in meta["callbacks"]:
                prefix = f"cb{i}."
                cb.load_state_dict(meta["callbacks"][key], {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        if "scaler" in meta and self.scaler is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(meta["scaler"])
        if "step" in meta:
            self.step.load_state_dict(meta["step"])
        self.start_epoch = meta["epoch"] + 1
