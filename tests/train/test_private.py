"""Private training (train.privacy): the ε recorded is Opacus' accountant's for the noise, sample
rate and steps taken; batches are Poisson samples; batch norm becomes group norm and a layer
DP-SGD cannot train is one error; every bad spec value is one error naming its field; the private
digits example reaches the issue's accuracy and records its guarantee in metrics, package, report
and card."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from opacus.accountants import PRVAccountant, RDPAccountant
from torch import nn

from trustforge import run
from trustforge.data import prepare
from trustforge.errors import ModelError, SpecError
from trustforge.evaluate import task_of, write_report
from trustforge.models import build_model, private_compatible
from trustforge.spec import SGDSpec, load_spec
from trustforge.train import PrivateStep, StepContext, Trainer

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = ROOT / "examples" / "digits_cnn_private.yaml"


class _Rows:
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.inputs, self.target = (x,), y

    def __len__(self) -> int:
        return len(self.target)


def _rows(n: int, seed: int = 0) -> _Rows:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return _Rows(x, (x[:, 0] > 0).long())


def _fit(step: PrivateStep, rows: _Rows, *, epochs: int, batch_size: int) -> Trainer:
    trainer = Trainer(loss_fn=nn.CrossEntropyLoss(), max_epochs=epochs, batch_size=batch_size, step=step, seed=3)
    trainer.fit(nn.Linear(4, 2), rows)
    return trainer


# ---------------------------------------------------------------------------- the accountant


def test_recorded_epsilon_is_opacus_accountant_for_the_steps_taken():
    """Noise 1.1, sample rate 0.01 (batch 64 of 6,400 rows), 1,000 steps (10 epochs), δ 1e-5: the
    issue's figures (RDP 1.7118, PRV 1.5255), and what a fresh Opacus accountant says of that history."""
    step = PrivateStep(sample_size=6400, batch_size=64, epochs=10, delta=1e-5, max_grad_norm=1.0, noise_multiplier=1.1, accountant="rdp")
    trainer = _fit(step, _rows(6400), epochs=10, batch_size=64)
    got = trainer.summary(trainer.history)
    assert got["privacy_steps"] == 1000 and got["privacy_sample_rate"] == 0.01 and got["privacy_noise_multiplier"] == 1.1
    assert got["privacy_accountant"] == "rdp" and got["privacy_sampling"] == "poisson" and got["privacy_delta"] == 1e-5
    # The same steps read by the PRV accountant (a resumed step takes the history as it is).
    prv = PrivateStep(sample_size=6400, batch_size=64, epochs=10, delta=1e-5, max_grad_norm=1.0, noise_multiplier=1.1, accountant="prv")
    prv.load_state_dict(json.loads(json.dumps(step.state_dict())))
    for recorded, opacus, issue in (
        (got["privacy_epsilon"], RDPAccountant(), 1.7118),
        (prv.summary()["privacy_epsilon"], PRVAccountant(), 1.5255),
    ):
        opacus.history = [(1.1, 0.01, 1000)]
        assert recorded == pytest.approx(opacus.get_epsilon(delta=1e-5), abs=1e-9)
        assert recorded == pytest.approx(issue, abs=5e-5)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_a_target_epsilon_is_spent_and_not_exceeded(accountant):
    step = PrivateStep(sample_size=1000, batch_size=50, epochs=5, delta=1e-5, max_grad_norm=1.0, epsilon=3.0, accountant=accountant)
    step.load_state_dict({"history": [[step.noise_multiplier, step.sample_rate, step.planned_steps]]})
    assert 2.95 <= step.epsilon() <= 3.0  # Opacus' search stops within 0.01 below the target
    assert step.planned_steps == 100 and step.summary()["privacy_target_epsilon"] == 3.0


def test_an_unreachable_budget_is_a_spec_error_naming_epsilon(tmp_path):
    raw = {"name": "p", "task": "classification", "data": {"source": "builtin:digits"}, "model": {"kind": "mlp"}}
    raw["train"] = {"max_epochs": 1, "privacy": {"epsilon": 1e-7, "accountant": "rdp"}}
    spec = load_spec(raw)
    with pytest.raises(SpecError, match=r"train\.privacy\.epsilon: epsilon 1e-07 .* cannot be reached") as err:
        Trainer.from_spec(spec, prepare(spec), task_of(spec))
    assert "noise multiplier of a million" in str(err.value) and "budget is too low" not in str(err.value)  # ours, not Opacus's words


# ---------------------------------------------------------------------------- the sampling and the step


def test_batches_are_poisson_samples_at_the_sample_rate():
    step = PrivateStep(sample_size=2000, batch_size=40, epochs=1, delta=1e-5, max_grad_norm=1.0, noise_multiplier=1.0)
    g = torch.Generator().manual_seed(0)
    epochs = [step.batches(2000, 40, g) for _ in range(20)]
    batches = [b for e in epochs for b in e]
    assert all(len(e) == 50 for e in epochs)  # ceil(n / batch_size) steps per epoch
    sizes = torch.tensor([len(b) for b in batches], dtype=torch.float64)
    assert all(len(b.unique()) == len(b) for b in batches)  # no row twice in a batch
    # Binomial(2000, 0.02): mean 40, variance 39.2; a fixed-size batcher would give variance 0.
    assert abs(float(sizes.mean()) - 40) < 1.0 and 30 < float(sizes.var()) < 50
    counts = torch.bincount(torch.cat(batches), minlength=2000).double()  # each row in ~ 1000 · 0.02 = 20 batches
    assert abs(float(counts.mean()) - 20) < 0.5 and 14 < float(counts.var()) < 26  # Binomial(1000, 0.02) per row: 19.6


def test_empty_batches_still_take_a_noised_step_and_are_counted():
    """A Poisson batch may be empty (here a third are): the step adds noise only, and counts."""
    step = PrivateStep(sample_size=10, batch_size=1, epochs=3, delta=1e-3, max_grad_norm=1.0, noise_multiplier=1.0, accountant="rdp")
    trainer = _fit(step, _rows(10), epochs=3, batch_size=1)
    assert step.steps == 30 and trainer.summary(trainer.history)["privacy_steps"] == 30
    model = trainer.model
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())  # the hooks are gone after the fit
    assert not model._forward_hooks and not model._backward_hooks


def test_each_sample_is_clipped_to_max_grad_norm():
    """One batch of identical huge-gradient rows, next to no noise: the update is the clipped gradient."""
    torch.manual_seed(0)
    x = torch.full((8, 4), 100.0)
    y = torch.zeros(8, dtype=torch.long)
    step = PrivateStep(sample_size=8, batch_size=8, epochs=1, delta=1e-5, max_grad_norm=0.5, noise_multiplier=1e-9, accountant="rdp")
    model = nn.Linear(4, 2)
    before = model.weight.detach().clone(), model.bias.detach().clone()
    trainer = Trainer(loss_fn=nn.CrossEntropyLoss(), max_epochs=1, batch_size=8, step=step, optimizer=SGDSpec(lr=1.0), seed=0)
    trainer.fit(model, _Rows(x, y))
    moved = torch.cat([(model.weight - before[0]).flatten(), (model.bias - before[1]).flatten()]).detach()
    # sample rate 1: one step on all 8 rows, each gradient (norm ~ 70) clipped to 0.5, summed, / 8
    assert step.steps == 1 and float(moved.norm()) == pytest.approx(0.5, abs=1e-3)


def test_a_step_without_samples_adds_noise_of_multiplier_times_clip_over_the_batch():
    """An empty Poisson batch: the update is the noise alone, std σ · C / expected batch size."""
    torch.manual_seed(0)
    model = nn.Linear(100, 100)
    before = model.weight.detach().clone()
    step = PrivateStep(sample_size=80, batch_size=8, epochs=1, delta=1e-5, max_grad_norm=2.0, noise_multiplier=1.5, accountant="rdp")
    ctx = StepContext(
        model, torch.optim.SGD(model.parameters(), lr=1.0), nn.CrossEntropyLoss(), contextlib.nullcontext(), None, "norm", None
    )
    step.setup(ctx)
    step.update(ctx)
    step.teardown(ctx)
    moved = (before - model.weight.detach()).flatten()
    assert float(moved.std()) == pytest.approx(1.5 * 2.0 / 8, rel=0.03) and abs(float(moved.mean())) < 0.01
    assert step.steps == 1
    assert type(ctx.optimizer) is torch.optim.SGD  # teardown hands the plain optimizer back


def test_the_accountant_resumes_from_its_state():
    a = PrivateStep(sample_size=100, batch_size=10, epochs=2, delta=1e-5, max_grad_norm=1.0, noise_multiplier=1.0, accountant="rdp")
    _fit(a, _rows(100), epochs=1, batch_size=10)
    state = json.loads(json.dumps(a.state_dict()))  # JSON, as a checkpoint stores it
    b = PrivateStep(sample_size=100, batch_size=10, epochs=2, delta=1e-5, max_grad_norm=1.0, noise_multiplier=1.0, accountant="rdp")
    b.load_state_dict(state)
    assert b.steps == a.steps == 10 and b.epsilon() == a.epsilon() > 0


# ---------------------------------------------------------------------------- models


def _digits_spec(privacy):
    raw = yaml.safe_load((ROOT / "examples" / "digits_cnn.yaml").read_text())
    raw["train"].update({"max_epochs": 1, "privacy": privacy})
    return load_spec(raw)


def test_batch_norm_becomes_group_norm_when_the_spec_asks_for_privacy():
    plain = _digits_spec(None)
    data = prepare(plain)
    kinds = {type(m) for m in build_model(plain, data.schema).modules()}
    assert nn.BatchNorm2d in kinds and nn.GroupNorm not in kinds
    private = build_model(_digits_spec({"epsilon": 3}), data.schema)
    norms = [m for m in private.modules() if isinstance(m, (nn.GroupNorm, nn.modules.batchnorm._BatchNorm))]
    assert norms and all(isinstance(m, nn.GroupNorm) for m in norms)
    assert [m.num_groups for m in norms] == [32, 32]  # gcd(32, channels) for 32 and 64 channels


class _Scaled(nn.Module):
    """A trainable layer that keeps a buffer: Opacus has no per-sample gradient for it."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.register_buffer("seen", torch.zeros(3))

    def forward(self, x):
        return x * self.scale


def test_a_layer_dp_sgd_cannot_train_is_one_model_error_naming_it():
    model = nn.Sequential(nn.Linear(3, 3), _Scaled())
    with pytest.raises(ModelError, match=r"train\.privacy: .*\b1 \(_Scaled\): a trainable layer with buffers"):
        private_compatible(model)
    assert private_compatible(nn.Sequential(nn.Linear(3, 3))) is not None  # a plain layer passes


# ---------------------------------------------------------------------------- the spec


_BASE = {"name": "p", "task": "classification", "data": {"source": "builtin:digits"}, "model": {"kind": "cnn", "channels": [8]}}


@pytest.mark.parametrize(
    ("train", "field", "says"),
    [
        ({"privacy": {"epsilon": 0}}, "train.privacy.epsilon", r"\(0, 1000\]; got 0"),
        ({"privacy": {"epsilon": -1}}, "train.privacy.epsilon", "got -1"),
        ({"privacy": {"epsilon": 3, "delta": 0}}, "train.privacy.delta", r"\(0, 1\); got 0"),
        ({"privacy": {"epsilon": 3, "delta": 1}}, "train.privacy.delta", r"\(0, 1\); got 1"),
        ({"privacy": {"epsilon": 3, "max_grad_norm": 0}}, "train.privacy.max_grad_norm", "got 0"),
        ({"privacy": {"epsilon": 3, "noise_multiplier": 1.1}}, "train.privacy.noise_multiplier", "left out when epsilon is given"),
        ({"privacy": {"delta": 1e-5}}, "train.privacy.epsilon", "is required"),
        ({"privacy": {"epsilon": 3, "accountant": "gdp"}}, "train.privacy.accountant", "'prv' or 'rdp'"),
        ({"privacy": {"epsilon": 3}, "adversarial": {}}, "train.privacy", "cannot be combined with train.adversarial"),
        ({"privacy": {"epsilon": 3}, "sampler": "balanced"}, "train.sampler", "Poisson"),
        ({"privacy": {"epsilon": 3}, "accumulate_grad_batches": 2}, "train.accumulate_grad_batches", "must be 1"),
        ({"privacy": {"epsilon": 3}, "gradient_clip_val": 1.0}, "train.gradient_clip_val", "max_grad_norm clips each sample"),
        ({"privacy": {"epsilon": 3}, "class_weights": "balanced"}, "train.class_weights", "must be none"),
    ],
)
def test_a_bad_privacy_value_is_one_error_naming_the_field(train, field, says):
    with pytest.raises(SpecError) as err:
        load_spec({**_BASE, "train": train})
    assert field in str(err.value) and re.search(says, str(err.value)), str(err.value)


def _line_of(path: Path, key: str) -> int:
    """The 1-based line of the first `key:` in a YAML file."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(f"{key}:"))


def test_a_delta_the_training_rows_refuse_is_named_at_its_line(workspace, tmp_path):
    """The delta >= 1/n error comes once the rows are known, after the spec loaded: validate and
    train name its file and line as they do the spec's own errors (a probe saw none)."""
    from _cli import run_main

    raw = {**_BASE, "data": {"source": "builtin:iris"}, "model": {"kind": "mlp", "hidden": [8]}}
    raw["train"] = {**_IRIS_PRIVATE, "privacy": {**_IRIS_PRIVATE["privacy"], "delta": 0.5}}
    path = tmp_path / "pv.yaml"
    path.write_text(yaml.safe_dump(raw))
    for command in ("validate", "train"):
        code, out, err = run_main(command, path, home=workspace)
        where = f"error: {path}:{_line_of(path, 'delta')}: train.privacy.delta must be below 1/n"
        assert code == 2 and err.startswith(where) and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}:\d+: train\.privacy\.delta must be below 1/n"):
        run(path, progress=False)  # the Python API, given the file, too


def test_a_delta_of_one_over_the_training_rows_or_more_is_refused_at_validate_and_train(workspace):
    """δ 0.5 passed the spec's (0, 1) and trained (noise 0.41): δ is the chance the guarantee fails, so it
    must be below 1/n. Iris: 150 rows less 30 test and 15 validation leave n = 105 (1/n = 0.00952)."""
    from trustforge.data import validate_data

    spec = load_spec({**_BASE, "data": {"source": "builtin:iris"}, "model": {"kind": "mlp", "hidden": [8]}, "train": _IRIS_PRIVATE})
    says = r"train\.privacy\.delta must be below 1/n = 0\.00952 for the n = 105 training rows.*got 0\.5; e\.g\. delta: 0\.0001"
    for check in (validate_data, lambda s: run(s, progress=False)):
        with pytest.raises(SpecError, match=says):
            check(
                spec.model_copy(
                    update={"train": spec.train.model_copy(update={"privacy": spec.train.privacy.model_copy(update={"delta": 0.5})})}
                )
            )
    # just below 1/n is the literature's bound, met; the default 1e-5 meets it below 100,000 rows
    spec.train.privacy.model_copy(update={"delta": 1 / 106}).check_delta(105)
    spec.train.privacy.check_delta(99_999)
    with pytest.raises(SpecError, match="train.privacy.delta must be below 1/n"):
        spec.train.privacy.check_delta(100_000)
    with pytest.raises(ValueError, match="below 1/sample_size"):  # the step itself, for callers without a spec
        PrivateStep(sample_size=105, batch_size=8, epochs=1, delta=0.5, max_grad_norm=1.0, noise_multiplier=1.0)


_IRIS_PRIVATE = {"max_epochs": 1, "batch_size": 16, "privacy": {"epsilon": 3, "compare": False}}


def test_a_noise_too_small_to_account_is_refused_at_validate_and_train_naming_the_field(workspace, tmp_path):
    """noise_multiplier 1e-9 trained, then Opacus' PRV accountant failed on the ε spent ("Maximum
    allowed size exceeded"): an internal error, exit 70, the run listed as interrupted. It is one
    error naming train.privacy.noise_multiplier, at validate and before training, and the ε of a
    history the check did not foresee is one TrainingError naming it too."""
    from _cli import run_main

    from trustforge.data import validate_data
    from trustforge.errors import TrainingError

    raw = {**_BASE, "data": {"source": "builtin:iris"}, "model": {"kind": "mlp", "hidden": [8]}}
    raw["train"] = {"max_epochs": 2, "batch_size": 16, "privacy": {"noise_multiplier": 1e-9, "compare": False}}
    says = r"^train\.privacy\.noise_multiplier 1e-09 over the run's 14 steps at sample rate 0\.1524 is too small a noise .*raise noise_multiplier$"
    from trustforge.pipeline import stage_checks_for

    for check in (lambda s: validate_data(s, stage_checks=stage_checks_for(s)), lambda s: run(s, progress=False)):
        with pytest.raises(SpecError, match=says):
            check(load_spec(raw))
    assert not any((workspace / "runs").glob("*")) if (workspace / "runs").exists() else True
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(raw))
    for command in ("validate", "train"):
        code, out, err = run_main(command, tmp_path / "tiny.yaml", home=workspace)
        # named at its line of the file, as the spec's own errors are
        where = f"error: {tmp_path / 'tiny.yaml'}:{_line_of(tmp_path / 'tiny.yaml', 'noise_multiplier')}: "
        assert code == 2 and err.startswith(where + "train.privacy.noise_multiplier 1e-09") and len(err.strip().splitlines()) == 1, err
    step = PrivateStep(sample_size=105, batch_size=16, epochs=2, delta=1e-5, max_grad_norm=1.0, noise_multiplier=1.0)
    step.load_state_dict({"history": [[1e-9, step.sample_rate, 16]]})
    with pytest.raises(TrainingError, match=r"^train\.privacy\.noise_multiplier 1: Opacus' prv accountant cannot account the 16 steps"):
        step.epsilon()
    # what the accountant can account passes: noise 1.1 (the issue's), and RDP at a tiny noise (it gives a huge, finite ε)
    PrivateStep(sample_size=105, batch_size=16, epochs=2, delta=1e-5, max_grad_norm=1.0, noise_multiplier=1.1)
    PrivateStep(sample_size=105, batch_size=16, epochs=2, delta=1e-5, max_grad_norm=1.0, noise_multiplier=1e-9, accountant="rdp")


def test_a_noise_multiplier_alone_is_a_valid_budget():
    spec = load_spec({**_BASE, "train": {"privacy": {"noise_multiplier": 1.1, "accountant": "rdp"}}})
    assert spec.train.privacy.noise_multiplier == 1.1 and spec.train.privacy.epsilon is None


# ---------------------------------------------------------------------------- the example, end to end

# examples/digits_cnn_private.yaml at ε 3, δ 1e-5: the issue's bar is Opacus' untuned 0.889; the
# README's figure (seed 7) is held within 1.5 points.
ISSUE_BAR = 0.889
README_ACCURACY = 0.9248
README_TWIN_ACCURACY = 0.9972  # the non-private twin (the same group-norm network without DP-SGD), seed 7: README


@pytest.mark.slow
def test_the_private_digits_example_reaches_the_bar_and_records_its_guarantee(workspace):
    result = run(PRIVATE, progress=False)
    m = result.metrics
    assert m["accuracy"] >= ISSUE_BAR and abs(m["accuracy"] - README_ACCURACY) <= 0.015, m["accuracy"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Private training (differential privacy)", 1)[1].split("\n## ", 1)[0]
    assert "trustforge train examples/digits_cnn_private.yaml" in section and f"{README_ACCURACY:.4f}" in section
    assert f"non-private twin (the same network with group norm; `compare`) | — | — | {README_TWIN_ACCURACY:.4f}" in section
    assert 2.9 <= m["privacy_epsilon"] <= 3.0 and m["privacy_delta"] == 1e-5 and m["privacy_accountant"] == "prv"
    assert m["privacy_sampling"] == "poisson" and m["privacy_steps"] > 0 and m["privacy_noise_multiplier"] > 0
    on_disk = json.loads((result.run_dir / "metrics.json").read_text())
    assert on_disk["privacy_epsilon"] == m["privacy_epsilon"]
    packaged = result.load_model()  # rebuilt from the spec: group norm again, so the weights load
    assert any(isinstance(x, nn.GroupNorm) for x in packaged.module.modules())
    manifest = json.loads((result.run_dir / "package" / "manifest.json").read_text())
    assert manifest["metrics"]["privacy_epsilon"] == m["privacy_epsilon"] and manifest["spec"]["train"]["privacy"]["epsilon"] == 3
    assert "opacus" in manifest["lineage"]["packages"]
    report = write_report(result.run_dir).read_text()
    card = (result.run_dir / "model_card.md").read_text()
    assert re.search(
        r"\*\*Privacy:\*\* trained with differential privacy .*ε [0-9.]+ at δ 1e-05 \(PRV accountant\).*poisson sampling", card
    )
    assert "trained with differential privacy (DP-SGD through Opacus)" in report and "poisson sampling" in report
    # Membership inference at ε 3 (issue 15): the attacks are within 0.05 of chance on the private model; its
    # non-private twin (the same network without DP-SGD) is audited on the same rows, side by side, with its cost.
    audit = json.loads((result.run_dir / "evidence.json").read_text())["privacy_audit"]
    twin = audit["plain_twin"]
    for name in ("loss", "confidence"):
        assert abs(audit["attacks"][name]["auc"] - 0.5) <= 0.05, (name, audit["attacks"][name]["auc"])  # measured 0.496
        assert audit["attacks"][name]["tpr_at_fpr"]["0.01"]["tpr"] < 0.05  # measured 0.014
    assert twin["metric"]["value"] >= README_TWIN_ACCURACY - 0.015 and twin["metric"]["value"] > m["accuracy"], twin["metric"]
    assert m["plain_twin_fit_seconds"] > 0 and m["dp_sgd_cost_ratio"] > 1
    assert "Private and non-private side by side" in report and "privacy cost: worse than its baseline" in report
    assert f"accuracy {m['accuracy']:.4f} private against {twin['metric']['value']:.4f} non-private" in card
    # the same run folder without the guarantee's keys reads as a run trained without it
    plain = {k: v for k, v in m.items() if not k.startswith("privacy_")}
    (result.run_dir / "metrics.json").write_text(json.dumps(plain))
    write_report(result.run_dir)
    assert "- **Privacy:** not trained with differential privacy" in (result.run_dir / "model_card.md").read_text()
