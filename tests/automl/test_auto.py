"""model.kind auto (issue 17.3): the baselines as pickle-free torch modules, the choice on validation only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from typer.testing import CliRunner

from trustforge.automl import SealedSplit, choose, run_auto
from trustforge.data import prepare
from trustforge.errors import SpecError
from trustforge.evaluate import fit_fitted, fit_logistic, table_matrix, write_report
from trustforge.models import build_model
from trustforge.package import Model
from trustforge.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _mixed_csv(path, n=400, seed=0):
    """Numbers with missing values, a category and a binary target that depends on all three."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    logit = 1.5 * x1 - x2 + np.where(colour == "red", 1.0, -0.5)
    y = np.where(logit + rng.normal(scale=0.5, size=n) > 0, "yes", "no")
    x1[rng.random(n) < 0.1] = np.nan
    pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "target": y}).to_csv(path, index=False)
    return f"csv:{path}"


def _prepared(source, kind, task="classification", **model):
    spec = load_spec({"task": task, "data": {"source": source, "target": "target"}, "model": {"kind": kind, **model}, "train": {"seed": 3}})
    return spec, prepare(spec)


def _hgb(spec, data):
    m = spec.model
    cls = HistGradientBoostingClassifier if data.schema.classes else HistGradientBoostingRegressor
    est = cls(
        max_iter=m.max_iter,
        learning_rate=m.learning_rate,
        max_leaf_nodes=m.max_leaf_nodes,
        min_samples_leaf=m.min_samples_leaf,
        l2_regularization=m.l2_regularization,
        early_stopping=m.early_stopping,
        random_state=spec.train.seed,
    )
    return est.fit(table_matrix(data.train.inputs), data.train.target.numpy())


@pytest.mark.parametrize(
    "source,task",
    [
        ("builtin:breast_cancer", "classification"),
        ("builtin:wine", "classification"),
        ("builtin:diabetes", "regression"),
        ("mixed", "classification"),
    ],
)
def test_tree_tensors_predict_what_sklearn_predicts(source, task, tmp_path):
    source = _mixed_csv(tmp_path / "mixed.csv") if source == "mixed" else source
    spec, data = _prepared(source, "hist_gradient_boosting", task, max_iter=40)
    module = build_model(spec, data.schema)
    fit_fitted(spec, data, module)
    est = _hgb(spec, data)
    x = table_matrix(data.test.inputs)
    inputs = list(data.test.inputs)
    # Missing values take the side each node learned (or the larger child): blank a fifth of the first column.
    blank = np.random.default_rng(1).random(len(x)) < 0.2
    x[blank, 0] = np.nan
    inputs[0] = inputs[0].clone()
    inputs[0][torch.from_numpy(blank), 0] = float("nan")
    with torch.no_grad():
        got = module(*inputs).double().numpy()
    if task == "regression":
        want = est.predict(x)[:, None]
    elif len(est.classes_) == 2:
        want = est.decision_function(x)
        got = got[:, 1] - got[:, 0]  # the module's logits are (0, z)
    else:
        want = est.decision_function(x)
    assert np.abs(got - want).max() < 1e-5 * max(1.0, np.abs(want).max())
    assert int(module.depth) > 1 and module.feature.shape[0] == 40 * (3 if source == "builtin:wine" else 1)


@pytest.mark.parametrize("table", ["mixed", "strikes"])
def test_linear_module_is_the_yardsticks_logistic_regression(table, tmp_path):
    """Numbers with missing values and a category; and the README's strikes (a date, categories, free text as a bag of tokens)."""
    if table == "mixed":
        spec, data = _prepared(_mixed_csv(tmp_path / "mixed.csv"), "linear")
    else:
        spec = load_spec({"data": {"source": f"csv:{EXAMPLES}/data/strikes.csv", "target": "disrupted"}, "model": {"kind": "linear"}})
        data = prepare(spec)
    module = build_model(spec, data.schema)
    fit_fitted(spec, data, module)
    fitted, design, _ = fit_logistic(data, seed=spec.train.seed)
    want = fitted.predict_proba(design.transform(data.test.inputs))
    with torch.no_grad():
        got = torch.softmax(module(*data.test.inputs), dim=1).numpy()
    assert np.abs(got - want).max() < 1e-5
    assert (got.argmax(1) == data.test.target.numpy()).mean() > 0.8  # it learned something


def _choice_spec(**model):
    return load_spec(
        {
            "name": "iris-auto",
            "data": {"source": "builtin:iris"},
            # A budget no loaded CI machine reaches: a candidate skipped for time would change the leaderboard.
            "model": {"kind": "auto", "candidates": ["linear", "hist_gradient_boosting", "mlp"], "time_budget": 3600, **model},
            "train": {"max_epochs": 4, "seed": 5},
            "evaluate": {"corruptions": False, "explain": False, "robustness": None},
        }
    )


class _Recorder:
    """A split that notes any use of it."""

    def __init__(self):
        object.__setattr__(self, "touched", [])

    def __getattr__(self, name):
        self.touched.append(name)
        raise AttributeError(name)

    def __len__(self):
        self.touched.append("__len__")
        return 0


def test_the_choice_never_reads_the_test_split():
    spec = _choice_spec()
    data = prepare(spec)
    honest = choose(spec, data)
    # 1. A test split that notes every use: nothing reads it.
    recorder = _Recorder()
    watched = choose(spec, dataclasses.replace(data, test=recorder, test_raw=recorder))
    assert recorder.touched == []
    # 2. A poisoned test split (labels shuffled, inputs noise): the same scores, the same choice.
    g = torch.Generator().manual_seed(0)
    poisoned_test = dataclasses.replace(
        data.test,
        inputs=tuple(torch.randn(t.shape, generator=g) if t.is_floating_point() else t for t in data.test.inputs),
        target=data.test.target[torch.randperm(len(data.test), generator=g)],
    )
    poisoned = choose(spec, dataclasses.replace(data, test=poisoned_test))

    def scores(choice):
        return [(r["kind"], r.get("val_accuracy"), r.get("val_log_loss")) for r in choice["leaderboard"]]

    assert scores(honest) == scores(watched) == scores(poisoned)
    assert honest["chosen"] == poisoned["chosen"] and honest["selected_on"] == "validation"
    # 3. The seal itself: any use of the test split during the choice raises.
    with pytest.raises(RuntimeError, match="sealed"):
        SealedSplit("test").inputs
    rows = {r["kind"]: r for r in honest["leaderboard"]}
    assert set(rows) == {"linear", "hist_gradient_boosting", "mlp"}
    assert all(r["fit_seconds"] > 0 and r["latency_ms"] > 0 for r in rows.values())
    assert rows["linear"]["val_accuracy"] > 0.8 and rows["hist_gradient_boosting"]["val_accuracy"] > 0.8


def test_a_trained_candidate_stops_early_on_training_rows_never_on_the_validation_split_that_ranks_it(monkeypatch):
    from trustforge.train import Trainer

    spec = _choice_spec()
    data = prepare(spec)
    seen = []
    real_fit = Trainer.fit

    def fit(self, model, train, validation, *a, **k):
        seen.append((validation.inputs[0].clone(), validation.target.clone(), len(train), len(validation)))
        return real_fit(self, model, train, validation, *a, **k)

    monkeypatch.setattr(Trainer, "fit", fit)
    choose(spec, data)
    assert len(seen) == 1  # the mlp; the baselines are fitted, not trained by epochs
    stop_x, stop_y, n_fit, n_stop = seen[0]
    assert n_fit + n_stop == len(data.train) and n_stop == pytest.approx(0.15 * len(data.train), abs=len(data.schema.classes))
    # the same share of each class in both parts, and the validation split takes no part
    for c in data.train.target.unique():
        assert (stop_y == c).sum() == int((data.train.target == c).sum() * 0.15)
    train_rows = {tuple(r) for r in data.train.inputs[0].tolist()}
    assert all(tuple(r) in train_rows for r in stop_x.tolist())
    assert not any(tuple(r) in train_rows for r in data.validation.inputs[0].tolist())  # iris's splits share no row


@pytest.mark.parametrize(
    "model,field",
    [
        ({"kind": "auto", "candidates": ["mlp", "xgboost"]}, "model.candidates[1]"),
        ({"kind": "auto", "candidates": []}, "model.candidates"),
        ({"kind": "auto", "preset": "slow"}, "model.preset"),
        ({"kind": "auto", "time_budget": 0}, "model.time_budget"),
        ({"kind": "auto", "ensemble": 9}, "model.ensemble"),
        # a probe: the best 3 of 1 candidate was accepted, and no ensemble ever scored
        (
            {"kind": "auto", "ensemble": 3, "candidates": ["mlp"]},
            "model.ensemble must be at most the 1 candidate model.candidates names (0: no ensemble); got 3",
        ),
        ({"kind": "auto", "ensemble": 3, "candidates": ["mlp", "linear"]}, "model.ensemble must be at most the 2 candidates"),
        ({"kind": "auto", "registerbaseline": True}, "model.registerbaseline"),
        ({"kind": "hist_gradient_boosting", "max_leaf_nodes": 1}, "model.max_leaf_nodes"),
    ],
)
def test_spec_errors_are_one_line_naming_the_field(model, field):
    with pytest.raises(SpecError) as e:
        load_spec({"data": {"source": "builtin:wine"}, "model": model})
    message = str(e.value)
    assert "\n" not in message and field in message, message


def test_auto_and_baselines_refuse_data_they_cannot_read():
    for spec, field in [
        ({"data": {"source": "builtin:digits"}, "model": {"kind": "linear"}}, "model.kind"),
        ({"data": {"source": "builtin:wine", "split": {"validation": 0}}, "model": {"kind": "auto"}}, "data.split.validation"),
    ]:
        with pytest.raises(SpecError, match=field.replace(".", r"\.")):
            load_spec(spec)
    spec = load_spec({"data": {"source": "builtin:digits"}, "model": {"kind": "auto", "candidates": ["linear"]}})
    with pytest.raises(SpecError, match=r"model\.candidates\[0\] 'linear' does not suit image data"):
        choose(spec, prepare(spec))


def test_an_ensemble_larger_than_the_candidates_fitted_is_noted_at_choice_time():
    # a probe: model.ensemble 3 with one candidate said nothing; here the second is skipped for time
    spec = _choice_spec(candidates=["linear", "hist_gradient_boosting"], ensemble=2, time_budget=1e-9)
    choice = choose(spec, prepare(spec))
    assert [r.get("skipped", "") != "" for r in choice["leaderboard"]] == [False, True]
    assert choice["verdict"].endswith(" model.ensemble is 2, and 1 candidate could be fitted: no ensemble was scored."), choice["verdict"]


def test_a_winning_baseline_is_packaged_signed_and_served_without_pickle(workspace):
    spec = _choice_spec(candidates=["linear", "hist_gradient_boosting"], register_baseline=True, ensemble=2).model_dump(mode="json")
    result = run_auto(spec, progress=False)
    choice = result.metrics["model_choice"]
    assert choice["chosen"] == choice["best"] == result.spec.model.kind  # the validation winner is what was packaged
    assert any(r.get("ensemble") for r in choice["leaderboard"])
    html = write_report(result.run_dir).read_text()
    assert (result.run_dir / "leaderboard.json").is_file() and "Model choice" in html and choice["verdict"].split(":")[0] in html
    assert result.model_uri is not None
    files = sorted(p.name for p in result.package.iterdir())
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib", ".skops"))], files
    model = Model.load(result.package, keyring=result.keyring)  # signature, digests, then tensors
    data = prepare(result.spec)
    with torch.no_grad():
        want = model.module(*data.test.inputs)
    assert torch.equal(model.outputs(data.test_raw), want)
    assert result.metrics["accuracy"] > 0.85
    # The manifest carries the leaderboard too (signed with the package).
    manifest = json.loads((result.package / "manifest.json").read_text())
    assert manifest["metrics"]["model_choice"]["selected_on"] == "validation"


def test_folds_score_every_non_test_row_out_of_fold_and_never_a_test_row():
    spec = _choice_spec(candidates=["linear", "hist_gradient_boosting"], folds=3)
    data = prepare(spec)
    recorder = _Recorder()
    choice = choose(spec, dataclasses.replace(data, test=recorder, test_raw=recorder))
    assert recorder.touched == []
    assert choice["selected_on"].startswith("3-fold cross-validation") and choice["scored_rows"] == len(data.train) + len(data.validation)


def test_cli_preset_says_when_a_baseline_won_and_packages_the_network(tmp_path):
    from trustforge.cli import app

    spec = tmp_path / "wine.yaml"
    spec.write_text(
        "name: wine-preset\ndata: {source: 'builtin:wine'}\nmodel: {kind: mlp}\ntrain: {max_epochs: 3, seed: 5}\n"
        "evaluate: {corruptions: false, explain: false, robustness: null}\n"
    )
    result = CliRunner().invoke(app, ["train", str(spec), "--preset", "fast", "--no-register", "-q"])
    assert result.exit_code == 0, result.output
    assert "model choice" in result.output and "validation" in result.output
    assert "accuracy" in result.output
    bad = CliRunner().invoke(app, ["train", str(spec), "--preset", "slow"])
    assert bad.exit_code != 0 and "--preset must be fast or best" in bad.output


def test_the_verdict_says_what_decided_when_accuracies_tie_within_one_standard_error():
    """Found by a probe: "tabm is best on the validation split (accuracy 0.8417; linear (0.8667) is
    within one standard error of the validation split ..." called the lower score best."""
    from trustforge.automl._auto import _verdict

    tabm = {"kind": "tabm", "baseline": False, "val_accuracy": 0.8417, "val_log_loss": 0.31, "tied_within_se": True}
    linear = {"kind": "linear", "baseline": True, "val_accuracy": 0.8667, "val_log_loss": 0.35, "tied_within_se": True}
    line = _verdict(tabm, tabm, [tabm, linear], "accuracy")
    assert line.startswith("tabm is chosen on the validation split (accuracy 0.8417; linear has 0.8667, within one standard error")
    assert "the validation log loss decides: 0.3100 against 0.3500" in line and "is best" not in line
    alone = {**tabm, "tied_within_se": False}
    assert (
        _verdict(alone, alone, [alone], "accuracy")
        == "tabm is best on the validation split (accuracy 0.8417), and it is the packaged model."
    )


@pytest.mark.parametrize("no_data", [False, True])
def test_validate_refuses_candidates_that_do_not_suit_the_input_as_train_does(tmp_path, workspace, no_data):
    from _cli import run_main

    spec = tmp_path / "auto.yaml"
    spec.write_text("name: a\ndata: {source: 'builtin:iris'}\nmodel: {kind: auto, candidates: [cnn, audio_cnn, mf]}\n")
    code, out, err = run_main("validate", *(["--no-data"] if no_data else []), spec, home=workspace)
    assert code == SpecError.exit_code and out == "", (code, out, err)
    assert "model.candidates[0] 'cnn' does not suit table data" in err and len(err.strip().splitlines()) == 1, err
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: a\ndata: {source: 'builtin:iris'}\nmodel: {kind: auto, candidates: [linear, mlp]}\n")
    assert run_main("validate", "--no-data", ok, home=workspace).code == 0


def test_a_winning_ensemble_of_networks_is_the_packaged_model(workspace, monkeypatch):
    """When the weighted ensemble of networks tops the validation leaderboard, it is packaged
    (model.kind ensemble) rather than reported only; forced here to win, as the split decides otherwise."""
    from trustforge.automl import _auto

    real = _auto._ensemble_row

    def winning(*args, **kwargs):
        return {**real(*args, **kwargs), "val_accuracy": 1.0, "val_log_loss": 0.0, "_rank": (float("inf"), 0.0)}

    monkeypatch.setattr(_auto, "_ensemble_row", winning)
    spec = _choice_spec(candidates=["mlp", "tabm"], ensemble=2).model_dump(mode="json")
    result = run_auto(spec, progress=False, register=False)
    choice = result.metrics["model_choice"]
    top = choice["leaderboard"][0]
    assert top["ensemble"] and top["packaged"] and choice["chosen"] == top["kind"]
    assert "it is the packaged model (model.kind ensemble" in choice["verdict"], choice["verdict"]
    model = result.spec.model
    assert model.kind == "ensemble" and [m.model.kind for m in model.members] == list(top["weights"])
    assert model.weights == pytest.approx(list(top["weights"].values()))
    assert all(m.train.max_epochs == 4 for m in model.members)  # each candidate's epochs and stopping, as it was scored
    assert isinstance(
        Model.load(result.package, keyring=result.keyring).module, __import__("trustforge.models", fromlist=["Ensemble"]).Ensemble
    )
    assert "(packaged)" in write_report(result.run_dir).read_text()


def test_an_ensemble_with_a_baseline_stays_reported_only(workspace, monkeypatch):
    from trustforge.automl import _auto

    real = _auto._ensemble_row
    monkeypatch.setattr(
        _auto, "_ensemble_row", lambda *a, **k: {**real(*a, **k), "val_accuracy": 1.0, "val_log_loss": 0.0, "_rank": (float("inf"), 0.0)}
    )
    spec = _choice_spec(candidates=["linear", "mlp"], ensemble=2)
    choice = choose(spec, prepare(spec))
    assert choice["leaderboard"][0]["ensemble"] and not choice["leaderboard"][0]["packaged"]
    assert choice["chosen_model"]["kind"] != "ensemble"
    assert "not packaged (a baseline cannot be an ensemble's member)" in choice["verdict"]
