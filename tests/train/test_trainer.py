"""The Trainer learns real (tiny) tasks with every optimizer, loss, schedule and option it offers.

Each test trains an MLP for a few epochs on sklearn's iris, breast-cancer or diabetes set and
asserts what was learned or what the loop did (lr used, gradient norms, steps taken).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from trustforge.data import Prepared, prepare
from trustforge.errors import TrainingError
from trustforge.evaluate import TASKS, outputs_to_proba, task_of
from trustforge.models import build_model
from trustforge.spec import TaskSpec, load_spec
from trustforge.train import Callback, EarlyStopping, Trainer, lr_at, seeded


def make_spec(source: str = "builtin:iris", task: str = "classification", *, hidden=(16,), dropout: float = 0.0, **train) -> TaskSpec:
    train.setdefault("max_epochs", 4)
    train.setdefault("batch_size", 16)
    train.setdefault("early_stopping", None)
    train.setdefault("optimizer", {"name": "adamw", "lr": 0.03})
    return load_spec(
        {
            "name": "t",
            "task": task,
            "data": {"source": source},
            "model": {"kind": "mlp", "hidden": list(hidden), "dropout": dropout},
            "train": train,
        }
    )


@functools.lru_cache(maxsize=None)
def _prepared(source: str, task: str, seed: int) -> Prepared:
    return prepare(load_spec({"task": task, "data": {"source": source}, "model": {"kind": "mlp"}, "train": {"seed": seed}}))


def prepared(spec: TaskSpec) -> Prepared:
    """The spec's data; only source, task and seed matter, so it is read once per combination."""
    return _prepared(spec.data.source, spec.task, spec.train.seed)


def fit(spec: TaskSpec, callbacks=()) -> tuple[Trainer, torch.nn.Module, Prepared]:
    data = prepared(spec)
    with seeded(spec.train.seed):
        model = build_model(spec, data.schema)
    task = task_of(spec)
    trainer = Trainer.from_train_spec(
        spec.train,
        task.loss(spec, len(data.schema.classes or []), data.train.target),
        callbacks=list(callbacks),
        val_metrics=task.validation_metrics(spec, data.preprocessor),
    )
    trainer.fit(model, data.train, data.validation)
    return trainer, model, data


def accuracy_on_test(trainer: Trainer, data: Prepared) -> float:
    proba = outputs_to_proba(trainer.predict(data.test.inputs), len(data.schema.classes))
    return float((proba.argmax(1) == data.test.target.numpy()).mean())


def losses(trainer: Trainer, key: str = "train_loss") -> list[float]:
    return [h[key] for h in trainer.history]


class StepHooks(Callback):
    """Registers optimizer step hooks at fit start: gradients and updates are only visible there."""

    def __init__(self):
        self.grad_norms: list[float] = []
        self.max_abs_grads: list[float] = []
        self.steps_per_epoch: list[int] = []
        self.lr_ratios: list[tuple[float, float]] = []  # (lr of the group, -Δw / grad) per SGD step
        self._before: list[torch.Tensor] = []
        self._grads: list[torch.Tensor] = []

    def on_fit_start(self, trainer):
        trainer.optimizer.register_step_pre_hook(self._pre)
        trainer.optimizer.register_step_post_hook(self._post)

    def on_epoch_start(self, trainer, epoch):
        self.steps_per_epoch.append(0)

    def _params(self, optimizer):
        return [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]

    def _pre(self, optimizer, args, kwargs):
        params = self._params(optimizer)
        grads = [p.grad.detach().clone() for p in params]
        self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        self.max_abs_grads.append(max(float(g.abs().max()) for g in grads))
        self._before = [p.detach().clone() for p in params]
        self._grads = grads

    def _post(self, optimizer, args, kwargs):
        self.steps_per_epoch[-1] += 1
        params = self._params(optimizer)
        # The largest gradient entry gives the best-conditioned estimate of the applied lr.
        g = torch.cat([x.flatten() for x in self._grads])
        delta = torch.cat([(p.detach() - b).flatten() for p, b in zip(params, self._before)])
        i = int(g.abs().argmax())
        self.lr_ratios.append((optimizer.param_groups[0]["lr"], float(-delta[i] / g[i])))


# ---------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize(
    ("optimizer", "kind"),
    [
        ({"name": "sgd", "lr": 0.1, "momentum": 0.9}, torch.optim.SGD),
        ({"name": "adam", "lr": 0.03}, torch.optim.Adam),
        ({"name": "adamw", "lr": 0.03}, torch.optim.AdamW),
    ],
    ids=["sgd-momentum", "adam", "adamw"],
)
def test_each_optimizer_lowers_the_loss_and_learns(optimizer, kind):
    trainer, _, data = fit(make_spec(optimizer=optimizer, max_epochs=5))
    assert type(trainer.optimizer) is kind
    if kind is torch.optim.SGD:
        assert trainer.optimizer.param_groups[0]["momentum"] == 0.9
    train_loss = losses(trainer)
    assert train_loss[-1] < 0.6 * train_loss[0], train_loss
    assert losses(trainer, "val_loss")[-1] < losses(trainer, "val_loss")[0]
    assert accuracy_on_test(trainer, data) >= 0.8  # chance is 1/3


# ---------------------------------------------------------------------------- losses


def test_cross_entropy_is_the_default_classification_loss():
    spec = make_spec(max_epochs=1)
    data = prepared(spec)
    loss_fn = TASKS["classification"].loss(spec, 3, data.train.target)
    out = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 1, 0])
    assert float(loss_fn(out, y)) == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-6)


def test_bce_on_a_binary_set_has_one_output_and_two_probability_columns():
    spec = make_spec("builtin:breast_cancer", loss="bce", batch_size=32, max_epochs=3)
    trainer, model, data = fit(spec)
    out = trainer.predict(data.test.inputs)
    assert out.shape == (len(data.test), 1)  # one logit
    proba = outputs_to_proba(out, 2)
    assert proba.shape == (len(data.test), 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(proba[:, 1], torch.sigmoid(out[:, 0]).double().numpy(), atol=1e-6)
    assert losses(trainer)[-1] < 0.5 * losses(trainer)[0]
    assert accuracy_on_test(trainer, data) > 0.85  # the majority class is 63%
    # The loss the trainer used is binary cross-entropy with logits.
    loss_fn = TASKS["classification"].loss(spec, 2, data.train.target)
    y = data.test.target
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y.float())
    assert float(loss_fn(out, y)) == pytest.approx(float(expected), rel=1e-6)


def test_mse_regression_beats_predicting_the_mean():
    spec = make_spec("builtin:diabetes", "regression", hidden=(32,), batch_size=32, max_epochs=6, optimizer={"name": "adam", "lr": 0.01})
    trainer, _, data = fit(spec)
    out = trainer.predict(data.test.inputs)
    assert out.shape == (len(data.test), 1)
    decode = data.preprocessor.decode_regression
    y = decode(data.test.target.numpy().astype(np.float64))
    pred = decode(out[:, 0].numpy().astype(np.float64))
    r2 = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 > 0.2, r2
    assert losses(trainer)[-1] < losses(trainer)[0]
    loss_fn = TASKS["regression"].loss(spec, 0, data.train.target)
    assert float(loss_fn(out, data.test.target)) == pytest.approx(float(((out[:, 0] - data.test.target) ** 2).mean()), rel=1e-6)


# ---------------------------------------------------------------------------- schedules


def test_lr_at_cosine_with_warmup():
    spec = make_spec(
        max_epochs=10, optimizer={"name": "sgd", "lr": 0.1}, scheduler={"name": "cosine", "warmup_epochs": 2, "min_lr": 0.001}
    ).train
    assert lr_at(spec, 0) == pytest.approx(0.05)  # linear warm-up: (epoch + 1) / warmup of the base lr
    assert lr_at(spec, 1) == pytest.approx(0.1)
    assert lr_at(spec, 2) == pytest.approx(0.1)  # cosine starts at the base lr
    assert lr_at(spec, 6) == pytest.approx(0.001 + 0.099 * 0.5)  # half way: the mean of base and min
    assert lr_at(spec, 9) == pytest.approx(0.001 + 0.099 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    after_warmup = [lr_at(spec, e) for e in range(2, 10)]
    assert after_warmup == sorted(after_warmup, reverse=True)
    assert min(after_warmup) >= 0.001


def test_lr_at_step_and_none():
    spec = make_spec(max_epochs=10, optimizer={"name": "sgd", "lr": 0.1}, scheduler={"name": "step", "step_size": 3, "gamma": 0.5}).train
    assert [lr_at(spec, e) for e in (0, 2, 3, 5, 6, 9)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.0125])
    flat = make_spec(optimizer={"name": "sgd", "lr": 0.1}).train
    assert {lr_at(flat, e) for e in range(5)} == {0.1}


@pytest.mark.parametrize(
    "scheduler",
    [{"name": "cosine", "warmup_epochs": 2, "min_lr": 0.01}, {"name": "step", "step_size": 2, "gamma": 0.5}],
    ids=["cosine", "step"],
)
def test_the_optimizer_uses_the_scheduled_lr(scheduler):
    spec = make_spec(max_epochs=5, batch_size=32, optimizer={"name": "sgd", "lr": 0.2}, scheduler=scheduler)
    hooks = StepHooks()
    trainer, _, _ = fit(spec, [hooks])
    expected = [lr_at(spec.train, e) for e in range(5)]
    assert len(set(expected)) > 2  # the schedule really changes the lr
    assert losses(trainer, "lr") == pytest.approx(expected)
    # Plain SGD moves each weight by exactly -lr · grad: the step applied the scheduled lr.
    steps = hooks.steps_per_epoch[0]
    for i, (group_lr, applied) in enumerate(hooks.lr_ratios):
        assert group_lr == pytest.approx(expected[i // steps])
        assert applied == pytest.approx(expected[i // steps], rel=1e-3)


# ---------------------------------------------------------------------------- early stopping


def final_val_loss(trainer: Trainer, data: Prepared) -> float:
    return trainer._validate(data.validation)["val_loss"]


def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    # min_delta so large that only the first epoch counts as an improvement.
    es = EarlyStopping("val_loss", patience=2, min_delta=1e6)
    trainer, _, data = fit(make_spec(max_epochs=10), [es])
    assert len(trainer.history) == 3  # the best epoch, then `patience` epochs without improvement
    assert trainer.best_epoch == 0
    val = losses(trainer, "val_loss")
    assert val[2] < val[0]  # the model kept learning: the restored weights are not the last ones
    assert final_val_loss(trainer, data) == pytest.approx(val[0], rel=1e-6, abs=0)


def test_early_stopping_on_a_metric_to_maximise():
    # Accuracy on 15 validation samples plateaus after a few epochs: ties are no improvement.
    spec = make_spec(max_epochs=30, optimizer={"name": "adamw", "lr": 0.01}, early_stopping={"monitor": "val_accuracy", "patience": 2})
    es = EarlyStopping("val_accuracy", patience=2)
    trainer, _, data = fit(spec, [es])
    acc = losses(trainer, "val_accuracy")
    best = int(np.argmax(acc))  # the first epoch with the highest accuracy
    assert len(acc) < 30, "should have stopped early"
    assert len(acc) == best + 1 + 2
    assert trainer.best_epoch == best
    assert trainer._validate(data.validation)["val_accuracy"] == acc[best]
    assert final_val_loss(trainer, data) == pytest.approx(losses(trainer, "val_loss")[best], rel=1e-6)


# ---------------------------------------------------------------------------- gradients


def test_gradient_clipping_by_norm_bounds_the_gradient_norm():
    base = dict(max_epochs=1, optimizer={"name": "sgd", "lr": 0.1})
    free = StepHooks()
    fit(make_spec(**base), [free])
    assert max(free.grad_norms) > 0.05  # without clipping the norm exceeds the bound below
    clipped = StepHooks()
    trainer, _, _ = fit(make_spec(**base, gradient_clip_val=0.05), [clipped])
    assert len(clipped.grad_norms) == len(free.grad_norms)
    assert max(clipped.grad_norms) <= 0.05 * (1 + 1e-5)
    assert max(clipped.grad_norms) > 0.05 * 0.99  # clipped to the bound, not to zero
    assert math.isfinite(trainer.history[0]["train_loss"])


def test_gradient_clipping_by_value_bounds_each_entry():
    hooks = StepHooks()
    fit(make_spec(max_epochs=1, optimizer={"name": "sgd", "lr": 0.1}, gradient_clip_val=0.01, gradient_clip_algorithm="value"), [hooks])
    assert max(hooks.max_abs_grads) <= 0.01


def test_accumulating_batches_steps_like_one_larger_batch():
    # 105 training rows: 7 batches of 16 in groups of two are the 4 batches of 32 (32, 32, 32, 9).
    common = dict(max_epochs=2, optimizer={"name": "sgd", "lr": 0.2})
    small = StepHooks()
    _, acc_model, _ = fit(make_spec(batch_size=16, accumulate_grad_batches=2, **common), [small])
    large = StepHooks()
    _, big_model, data = fit(make_spec(batch_size=32, **common), [large])
    assert len(data.train) == 105
    assert small.steps_per_epoch == large.steps_per_epoch == [4, 4]
    for (name, a), b in zip(acc_model.state_dict().items(), big_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    plain = StepHooks()
    _, plain_model, _ = fit(make_spec(batch_size=16, **common), [plain])
    assert plain.steps_per_epoch == [7, 7]
    assert not torch.allclose(plain_model.state_dict()["net.0.weight"], acc_model.state_dict()["net.0.weight"])


# ---------------------------------------------------------------------------- precision


def test_bf16_mixed_precision_trains_on_cpu_and_learns():
    dtypes = set()

    class FirstLayerDtype(Callback):
        def on_fit_start(self, trainer):
            first = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear))
            first.register_forward_hook(lambda mod, inp, out: dtypes.add(out.dtype) if mod.training else None)

    spec = make_spec(precision="bf16-mixed", max_epochs=5)
    assert spec.train.accelerator == "cpu"
    trainer, model, data = fit(spec, [FirstLayerDtype()])
    assert dtypes == {torch.bfloat16}  # the layers really ran in bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    assert losses(trainer)[-1] < 0.6 * losses(trainer)[0]
    assert accuracy_on_test(trainer, data) >= 0.8


# ---------------------------------------------------------------------------- failures


def test_a_diverging_loss_is_a_training_error_that_names_the_epoch():
    done: list[int] = []

    class Epochs(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            done.append(epoch + 1)

    spec = make_spec("builtin:diabetes", "regression", batch_size=32, max_epochs=10, optimizer={"name": "sgd", "lr": 0.3, "momentum": 0.9})
    with pytest.raises(TrainingError) as info:
        fit(spec, [Epochs()])
    assert done, "should diverge after at least one finite epoch"
    assert f"in epoch {done[-1] + 1};" in str(info.value)
    assert "nan" in str(info.value) or "inf" in str(info.value)


def test_an_absurd_lr_fails_in_the_first_epoch():
    spec = make_spec("builtin:diabetes", "regression", batch_size=32, max_epochs=3, optimizer={"name": "sgd", "lr": 10})
    with pytest.raises(TrainingError, match=r"in epoch 1;.*train.optimizer.lr"):
        fit(spec)


# ---------------------------------------------------------------------------- randomness


def test_same_spec_twice_gives_bit_identical_weights_whatever_the_callers_rng():
    spec = make_spec(dropout=0.3, max_epochs=2)  # dropout draws from torch's global generator
    before = torch.get_rng_state()
    _, first, _ = fit(spec)
    assert torch.equal(torch.get_rng_state(), before), "training changed the caller's global RNG state"
    torch.manual_seed(12345)  # a caller with other global state
    _, second, _ = fit(spec)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    _, other_seed, _ = fit(make_spec(dropout=0.3, max_epochs=2, seed=8))
    assert not torch.equal(first.state_dict()["net.0.weight"], other_seed.state_dict()["net.0.weight"])
