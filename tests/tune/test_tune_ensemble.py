"""`tune.ensemble: N`: the packaged model is an ensemble of the study's best N trials, each retrained as a member."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from trustforge.settings import Settings
from trustforge.spec import load_spec, spec_to_dict
from trustforge.tune import tune

SPACE = {
    "train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.4},
}
SPEC = {
    "name": "wine-ens",
    "data": {"source": "builtin:wine"},
    "model": {"kind": "tabm", "k": 2, "hidden": [16]},
    "train": {"max_epochs": 4},
    "tune": {"space": SPACE, "trials": 4, "startup_trials": 4, "pruner": "none", "metric": "val_loss", "ensemble": 3},
}


def test_the_best_trials_become_the_members_of_the_packaged_model(workspace):
    from trustforge import Model
    from trustforge.evaluate import write_report
    from trustforge.tune._space import decode

    settings = Settings.from_env()
    r = tune(SPEC, settings=settings)
    done = sorted((row for row in r.summary["leaderboard"] if row["state"] == "complete"), key=lambda row: (row["value"], row["trial"]))
    top = [row["trial"] for row in done[:3]]
    assert r.summary["ensemble"] == {"asked": 3, "trials": top} and top[0] == r.best_trial
    assert r.summary["retrained"]["ensemble"] == top
    members = r.run.spec.model.members
    assert r.run.spec.model.kind == "ensemble" and len(members) == 3
    space = load_spec(SPEC).tune.space
    for member, row in zip(members, done[:3]):
        params = decode(space, row["params"])
        assert member.model.dropout == pytest.approx(params["model.dropout"])
        assert member.train.optimizer.lr == pytest.approx(params["train.optimizer.lr"])
    lineage = json.loads((r.run.package / "manifest.json").read_text())["lineage"]["tune"]
    assert [m["trial"] for m in lineage["ensemble"]] == top
    model = Model.load(r.run.package, keyring=r.run.keyring)
    assert len(model.module.members) == 3
    html = write_report(r.run.run_dir).read_text()
    assert f"an ensemble of trials {', '.join(map(str, top))}" in html


def test_without_registering_no_ensemble_is_trained(workspace):
    r = tune(SPEC, settings=Settings.from_env(), register=False)
    assert r.run is None and "retrained" not in r.summary and "ensemble" not in r.summary


@pytest.mark.parametrize("n", [0, 17, True, 2.0])
def test_ensemble_out_of_range_is_a_usage_error_naming_the_option(workspace, n):
    from trustforge.errors import UsageError

    with pytest.raises(UsageError, match=r"--ensemble must be 1 to 16"):
        tune(SPEC, settings=Settings.from_env(), ensemble=n)
    assert not (Settings.from_env().runs_dir).exists()  # refused before any trial


def _trial(number, value, **params):
    return SimpleNamespace(number=number, value=value, params=params)


class _Study:
    def __init__(self, trials):
        self.trials = trials

    def get_trials(self, deepcopy=False, states=()):
        return self.trials


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_members_share_the_best_trials_data_settings_and_rank_by_the_metric(direction):
    from trustforge.tune._study import _ensemble_trials

    spec = load_spec(
        {
            **SPEC,
            "tune": {
                **SPEC["tune"],
                "space": {**SPACE, "data.numeric.scaling": {"type": "categorical", "choices": ["standard", "robust"]}},
            },
        }
    )
    base = spec_to_dict(spec)
    base.pop("tune")
    sign = 1 if direction == "minimize" else -1
    trials = [
        _trial(0, sign * 0.5, **{"data.numeric.scaling": "standard"}),
        _trial(1, sign * 0.1, **{"data.numeric.scaling": "standard"}),  # the best
        _trial(2, sign * 0.2, **{"data.numeric.scaling": "robust"}),  # other data: never a member
        _trial(3, sign * 0.3, **{"data.numeric.scaling": "standard"}),
        _trial(4, sign * 0.4, **{"data.numeric.scaling": "standard"}),
    ]
    members, alone = _ensemble_trials(_Study(trials), spec.tune, base, trials[1], direction)
    assert [t.number for t in members] == [1, 3, 4] and alone is None
    members, alone = _ensemble_trials(_Study(trials[1:3]), spec.tune, base, trials[1], direction)
    assert [t.number for t in members] == [1] and "no other completed trial shares" in alone


def test_a_defended_spec_keeps_the_best_trial_alone():
    from trustforge.tune._study import _ensemble_trials

    spec = load_spec({**SPEC, "train": {**SPEC["train"], "privacy": {"epsilon": 3}}})
    base = spec_to_dict(spec)
    trials = [_trial(0, 0.1), _trial(1, 0.2)]
    members, alone = _ensemble_trials(_Study(trials), spec.tune, base, trials[0], "minimize")
    assert [t.number for t in members] == [0] and "train.privacy" in alone
