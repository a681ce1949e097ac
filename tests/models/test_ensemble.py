"""`model.kind: ensemble`: networks trained apart, the weighted mean of their predictions."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from trustforge.errors import SpecError
from trustforge.models import Ensemble
from trustforge.spec import load_spec, member_spec, spec_to_yaml

MEMBERS = [
    {"model": {"kind": "tabm", "k": 2, "hidden": [16]}},
    {"model": {"kind": "mlp", "hidden": [16]}, "train": {"optimizer": {"name": "adam", "lr": 0.01}, "early_stopping": None}},
]
SPEC = {
    "name": "wine-ensemble",
    "data": {"source": "builtin:wine"},
    "model": {"kind": "ensemble", "members": MEMBERS},
    "train": {"max_epochs": 4},
    "evaluate": {"speed": False, "corruptions": False, "explain": False, "robustness": None, "privacy_audit": None},
    "monitor": {"reference": False, "ood": {"enabled": False}},
}


class _Fixed(nn.Module):
    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out.expand(len(x), -1)


def test_classes_are_averaged_as_probabilities_not_logits():
    a, b = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 9.0]])
    ens = Ensemble([_Fixed(a), _Fixed(b)], [0.25, 0.75], "classes")
    got = torch.softmax(ens(torch.zeros(2, 1)), dim=-1)
    want = 0.25 * torch.softmax(a, -1) + 0.75 * torch.softmax(b, -1)
    assert torch.allclose(got, want.expand(2, -1), atol=1e-6)
    # the mean of the logits would say something else: [1, 0, 6.75] puts less weight on class 0
    assert not torch.allclose(got[0], torch.softmax(0.25 * a + 0.75 * b, -1)[0], atol=1e-3)


def test_one_logit_and_values():
    a, b = torch.tensor([[2.0]]), torch.tensor([[-1.0]])
    logit = Ensemble([_Fixed(a), _Fixed(b)], [0.5, 0.5], "logit")(torch.zeros(1, 1))
    assert torch.sigmoid(logit).item() == pytest.approx(0.5 * (torch.sigmoid(a) + torch.sigmoid(b)).item(), abs=1e-6)
    value = Ensemble([_Fixed(a), _Fixed(b)], [0.2, 0.8], "value")(torch.zeros(3, 1))
    assert value.shape == (3, 1) and value[0].item() == pytest.approx(0.2 * 2.0 - 0.8, abs=1e-6)


@pytest.mark.parametrize(
    "model, train, message",
    [
        ({"members": [{"model": {"kind": "auto"}}, MEMBERS[0]]}, {}, "model.members[0].model.kind must be one of"),
        ({"members": [MEMBERS[0]]}, {}, "model.members must have at least 2 items"),
        ({"members": MEMBERS, "weights": [1.0]}, {}, "model.weights must hold one weight per member (2); got 1"),
        (
            {"members": [MEMBERS[0], {"model": {"kind": "mlp"}, "train": {"loss": "bce"}}]},
            {},
            "model.members[1].train.loss is not a field",
        ),
        (
            {"members": [MEMBERS[0], {"model": {"kind": "mlp"}, "train": {"early_stopping": {"monitor": "val_mae"}}}]},
            {},
            "model.members[1].train.early_stopping.monitor must be val_loss or val_<metric> with a classification metric",
        ),
        ({"members": MEMBERS}, {"privacy": {"epsilon": 3}}, "train.privacy does not apply to model.kind ensemble"),
    ],
)
def test_spec_mistakes_name_the_field(model, train, message):
    spec = {**SPEC, "model": {"kind": "ensemble", **model}, "train": {**SPEC["train"], **train}}
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert message in str(err.value)


def test_a_member_reads_the_run_settings_it_does_not_set_and_a_set_null_survives_writing():
    spec = load_spec(SPEC)
    first, second = member_spec(spec, 0), member_spec(spec, 1)
    assert first.train.optimizer == spec.train.optimizer and first.train.early_stopping == spec.train.early_stopping
    assert second.train.optimizer.name == "adam" and second.train.early_stopping is None
    assert (first.train.seed, second.train.seed) == (spec.train.seed, spec.train.seed + 1)  # members of one kind still differ
    again = load_spec(yaml.safe_load(spec_to_yaml(spec)))  # as spec.yaml and the package write it
    assert member_spec(again, 1).train.early_stopping is None and member_spec(again, 0).train.early_stopping is not None
    assert again == spec


def test_each_member_is_the_network_its_own_run_would_train(workspace):
    """The ensemble's members equal networks trained alone from `member_spec`: same weights."""
    from trustforge import Model, run
    from trustforge.data import prepare
    from trustforge.evaluate import task_of
    from trustforge.models import build_model
    from trustforge.settings import Settings
    from trustforge.train import Trainer, seeded

    settings = Settings.from_env()
    result = run(SPEC, settings=settings, progress=False, register=False)
    assert [m["kind"] for m in result.metrics["ensemble"]] == ["tabm", "mlp"]
    assert result.metrics["epochs_trained"] == sum(m["epochs_trained"] for m in result.metrics["ensemble"])
    packaged = Model.load(result.package, keyring=result.keyring)
    assert isinstance(packaged.module, Ensemble)
    spec = load_spec(SPEC)
    data = prepare(spec)
    for i, member in enumerate(packaged.module.members):
        own = member_spec(spec, i)
        with seeded(own.train.seed):
            alone = build_model(own, data.schema)
        Trainer.from_spec(own, data, task_of(own)).fit(alone, data.train, data.validation)
        for name, tensor in alone.state_dict().items():
            assert torch.equal(tensor, member.state_dict()[name]), f"member {i}: {name} differs"
    rows = (result.run_dir / "epochs.csv").read_text().splitlines()
    assert rows[0].startswith("member,epoch,") and len(rows) == 1 + result.metrics["epochs_trained"]


def test_the_learning_curves_draw_one_line_per_member():
    from trustforge.evaluate._report_plots import learning_curves

    rows = [
        {"member": m, "epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_accuracy": 0.5 + 0.1 * e}
        for m in (1, 2)
        for e in (1, 2, 3)
    ]
    fig = learning_curves({"epochs": rows})
    loss, metric = fig.axes[0], fig.axes[1]
    assert [line.get_label() for line in loss.get_lines()] == [
        "train loss, member 1",
        "val loss, member 1",
        "train loss, member 2",
        "val loss, member 2",
    ]
    assert all(list(line.get_xdata()) == [1, 2, 3] for line in loss.get_lines())  # each member's own epochs, not 1-6 zig-zagging
    assert len(metric.get_lines()) == 2
    one = learning_curves({"epochs": [{k: v for k, v in r.items() if k != "member"} for r in rows[:3]]})
    assert [line.get_label() for line in one.axes[0].get_lines()] == ["train loss", "val loss"]
