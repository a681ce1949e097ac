"""Step strategies plug into the Trainer without touching its loop; `Trainer.from_spec` assembles
a run's trainer; the loop stays small."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import torch

import trustforge.train as train_pkg
from trustforge.data import prepare
from trustforge.evaluate import task_of
from trustforge.models import build_model
from trustforge.spec import load_spec
from trustforge.train import Checkpoint, CSVLogger, EarlyStopping, PlainStep, ProgressBar, Trainer, seeded
from trustforge.train._trainer import _Plan


def _spec(**train):
    train = {"max_epochs": 3, "batch_size": 16, "early_stopping": None, "optimizer": {"name": "adamw", "lr": 0.03}, **train}
    return load_spec(
        {"name": "t", "data": {"source": "builtin:iris"}, "model": {"kind": "mlp", "hidden": [16], "dropout": 0.1}, "train": train}
    )


@functools.lru_cache(maxsize=None)
def _data():
    return prepare(_spec())


def _fit(spec, step=None):
    data = _data()
    with seeded(spec.train.seed):
        model = build_model(spec, data.schema)
    task = task_of(spec)
    trainer = Trainer.from_train_spec(
        spec.train, task.loss(spec, 3, data.train.target), step=step, val_metrics=task.validation_metrics(spec, data.preprocessor)
    )
    trainer.fit(model, data.train, data.validation)
    return trainer, model, data


class CountingStep(PlainStep):
    """The plain step, counting what the loop asks of it."""

    def __init__(self):
        self.setups = 0
        self.backwards: list[tuple[int, float, bool]] = []
        self.updates = 0

    def setup(self, ctx):
        self.setups += 1
        assert ctx.optimizer.param_groups and ctx.clip_val == 0.5

    def backward(self, ctx, inputs, target, *, weight, sync):
        self.backwards.append((len(target), weight, sync))
        return super().backward(ctx, inputs, target, weight=weight, sync=sync)

    def update(self, ctx):
        self.updates += 1
        super().update(ctx)


def test_a_custom_step_is_used_and_the_loop_is_unchanged():
    spec = _spec(accumulate_grad_batches=3, gradient_clip_val=0.5)
    plain, plain_model, data = _fit(spec)
    step = CountingStep()
    counted, counted_model, _ = _fit(spec, step)
    assert step.setups == 1
    batches = -(-len(data.train) // 16)
    groups = -(-batches // 3)
    assert len(step.backwards) == 3 * batches and step.updates == 3 * groups
    # Every group's weights sum to one (k batches step as one batch of their union), and only
    # the last batch of a group asks for a gradient sync.
    epoch = step.backwards[:batches]
    for g in range(0, batches, 3):
        group = epoch[g : g + 3]
        assert abs(sum(w for _, w, _ in group) - 1.0) < 1e-12
        assert [s for *_, s in group] == [False] * (len(group) - 1) + [True]
    assert sum(n for n, _, _ in epoch) == len(data.train)
    # The strategy did the same arithmetic as the default one: same history, same weights.
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(counted.history) == strip(plain.history)
    for (k, a), b in zip(plain_model.state_dict().items(), counted_model.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_step_that_skips_updates_leaves_the_weights_alone():
    class Frozen(PlainStep):
        def update(self, ctx):
            ctx.optimizer.zero_grad(set_to_none=True)

    spec = _spec(max_epochs=1)
    data = _data()
    with seeded(spec.train.seed):
        model = build_model(spec, data.schema)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Trainer.from_train_spec(spec.train, task_of(spec).loss(spec, 3, data.train.target), step=Frozen()).fit(model, data.train)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_plan_skips_a_last_batch_of_one_and_updates_at_group_ends():
    plan = _Plan.of(n=33, batch_size=8, accumulate=2)  # batches of 8, 8, 8, 8, 1
    assert plan.used == (8, 8, 8, 8, 0)
    assert plan.weights == (0.5, 0.5, 0.5, 0.5, 0.0)
    assert plan.updates == (False, True, False, True, False)  # the last group trains nothing
    plan = _Plan.of(n=17, batch_size=8, accumulate=3)  # 8, 8, 1: one group, its last batch skipped
    assert plan.used == (8, 8, 0) and plan.updates == (False, False, True) and plan.syncs == (False, True, False)


def test_from_spec_assembles_a_runs_trainer(tmp_path):
    spec = _spec(early_stopping={"monitor": "val_log_loss", "patience": 2})
    data = _data()
    trainer = Trainer.from_spec(spec, data, task_of(spec), run_dir=tmp_path, progress=True)
    kinds = [type(cb) for cb in trainer.callbacks]
    assert kinds == [EarlyStopping, CSVLogger, ProgressBar, Checkpoint]
    stop, bar = trainer.callbacks[0], trainer.callbacks[2]
    assert stop.sign == -1.0  # log-loss: lower is better, from the metrics table
    assert bar.metric == "val_log_loss"
    assert trainer.max_epochs == 3 and trainer.batch_size == 16 and isinstance(trainer.step, PlainStep)
    logs = trainer.val_metrics(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))
    assert set(logs) == {"accuracy", "log_loss"}
    bare = Trainer.from_spec(_spec(), data, task_of(spec))
    assert bare.callbacks == []  # no run folder: no log, no checkpoint, no bar


def test_from_spec_truncates_the_log_past_the_resumed_epoch(tmp_path):
    (tmp_path / "epochs.csv").write_text("epoch,train_loss\n1,0.9\n2,0.8\n3,0.7\n")
    spec = _spec()
    Trainer.from_spec(spec, _data(), task_of(spec), run_dir=tmp_path, resume_meta={"epoch": 1})
    assert (tmp_path / "epochs.csv").read_text().splitlines() == ["epoch,train_loss", "1,0.9", "2,0.8"]


def test_no_function_in_train_is_longer_than_60_lines():
    folder = Path(train_pkg.__file__).parent
    long = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_build_optimizer_reads_a_param_groups_iterable_once_and_steps_it():
    """Param groups given as generators (`{"params": model.parameters()}`) are not used up by the
    fused-kernel check: the optimizer gets every parameter, fused on the CPU."""
    from torch import nn

    from trustforge.spec import AdamWSpec
    from trustforge.train import build_optimizer

    model = nn.Linear(3, 2)
    opt = build_optimizer(AdamWSpec(name="adamw", lr=0.1), [{"params": model.parameters()}])
    assert len(opt.param_groups[0]["params"]) == 2 and opt.param_groups[0]["fused"] is True
    before = model.weight.detach().clone()
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    assert not torch.equal(model.weight, before)
