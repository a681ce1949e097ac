"""`tune.folds`: trials ranked by K-fold cross-validation over the training and validation rows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from trustforge.settings import Settings
from trustforge.spec import load_spec
from trustforge.tune import tune

SPEC = {
    "name": "iris-cv",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [8]},
    "train": {"max_epochs": 3, "early_stopping": None},
    "tune": {
        "space": {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        "trials": 2,
        "startup_trials": 2,
        "pruner": "none",
        "metric": "val_loss",
        "folds": 3,
    },
}


def _iris_data(spec):
    from trustforge.data import prepare

    return prepare(load_spec(spec))


def test_trials_are_ranked_out_of_fold_and_the_study_says_so(workspace):
    from trustforge.automl import cross_validate
    from trustforge.evaluate import task_of, write_report
    from trustforge.tune import _study
    from trustforge.tune._space import apply_params

    settings = Settings.from_env()
    r = tune(SPEC, settings=settings, register=False)
    s = r.summary
    assert not _study._PREPARED  # the worker's data is not kept after the study (its files may change)
    assert s["folds"] == 3 and s["ranked_on"] == "by 3-fold cross-validation over the training and validation rows"
    assert s["counts"] == {"complete": 2}
    base = {k: v for k, v in SPEC.items() if k != "tune"}
    for row in s["leaderboard"]:
        trial = json.loads((settings.runs_dir / row["run"] / "trial.json").read_text())
        assert trial["folds"] == 3 and trial["val_loss"] == row["value"]
        # the ranked value is the out-of-fold loss, not the run's own validation loss beside it
        assert trial["validation"] == row["validation_value"] and trial["validation"] != pytest.approx(row["value"], abs=1e-6)
        spec = load_spec(apply_params(base, row["params"]))
        data = _iris_data(spec)
        pool, out = cross_validate(spec, data, 3)
        assert len(pool) == len(data.train) + len(data.validation)
        loss = task_of(spec).loss(spec, len(data.schema.classes), data.train.target)(out, pool.target)
        assert float(loss) == pytest.approx(row["value"], rel=1e-5)
    # the report names the ranking
    report = write_report(r.run_dir).read_text()
    assert "ranked by val_loss by 3-fold cross-validation over the training and validation rows" in report


def test_cross_validation_never_reads_the_test_split():
    from trustforge.automl import SealedSplit, cross_validate

    spec = load_spec({k: v for k, v in SPEC.items() if k != "tune"})
    data = _iris_data(spec)
    sealed = dataclasses.replace(data, test=SealedSplit("test"), test_raw=SealedSplit("test"))
    pool, out = cross_validate(spec, sealed, 3)
    assert out.shape == (len(pool), 3) and len(pool) == len(data.train) + len(data.validation)
    # every pooled row is predicted by a model that did not train on it: no row's output is left at its empty value
    assert bool(out.isfinite().all())


def test_a_run_on_prepared_data_shared_between_trials_equals_one_that_prepares_its_own(workspace):
    """Trials with `tune.folds` share one worker's prepared data: a run must neither change it nor differ for it."""
    from trustforge.pipeline import run

    spec = {k: v for k, v in SPEC.items() if k != "tune"}
    settings = Settings.from_env()
    data = _iris_data(spec)
    before = [t.clone() for t in (*data.train.inputs, data.train.target, *data.validation.inputs)]
    shared = [run(spec, settings=settings, progress=False, register=False, prepared=data) for _ in range(2)]
    own = run(spec, settings=settings, progress=False, register=False)
    after = [*data.train.inputs, data.train.target, *data.validation.inputs]
    assert all(bool((a == b).all()) for a, b in zip(before, after))
    losses = [[h["val_loss"] for h in r.history] for r in (*shared, own)]
    assert losses[0] == losses[1] == losses[2]
    assert shared[0].metrics["accuracy"] == own.metrics["accuracy"]


def test_resuming_with_other_folds_is_refused_naming_the_field(workspace):
    from trustforge.errors import TuneError

    settings = Settings.from_env()
    one = {**SPEC, "tune": {**SPEC["tune"], "trials": 1, "folds": 1}}
    tune(one, settings=settings, register=False)
    with pytest.raises(TuneError, match=r"ranks on the validation split; this spec by 3-fold cross-validation .*keep tune.folds"):
        tune({**SPEC, "tune": {**SPEC["tune"], "trials": 2}}, settings=settings, register=False)


@pytest.mark.parametrize(
    "change, says",
    [
        ({"data": {"source": "builtin:iris", "split": {"validation": 0.0}}}, "must be 1 without a validation split"),
        ({"data": {"source": "builtin:iris", "clean": {"label_issues": "drop"}}}, "data.clean.label_issues is drop"),
    ],
)
def test_folds_the_spec_cannot_use_are_one_line_naming_tune_folds(tmp_path, workspace, change, says):
    import yaml
    from _cli import run_main

    path = tmp_path / "cv.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **change}))
    code, out, err = run_main("validate", path, "--no-data", home=workspace, cwd=tmp_path)
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "tune.folds" in err and says in err, err


def test_folds_are_refused_for_a_forecast():
    import yaml

    from trustforge.errors import SpecError

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "forecast_air_passengers.yaml").read_text())
    spec["tune"] = {"space": {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1}}, "folds": 2}
    with pytest.raises((SpecError, ValueError), match=r"tune.folds.*must be 1 for task forecasting"):
        load_spec(spec)


def test_a_trial_is_pruned_from_its_folds_and_its_completed_run_stays(workspace, monkeypatch):
    """Ranked out of fold, a trial reports the running out-of-fold metric after each fold but the
    last; a pruner that stops it after the first fold leaves the other folds unfitted, and the run
    the trial made (complete, packaged) keeps its state, with the fold it stopped after in trial.json."""
    import optuna

    from trustforge.automl import _auto
    from trustforge.errors import TuneError
    from trustforge.tune import _study

    fits = []
    real_fit = _auto.fit_candidate
    monkeypatch.setattr(_auto, "fit_candidate", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    monkeypatch.setattr(_study, "_pruner", lambda ts, base: optuna.pruners.ThresholdPruner(upper=0.0, n_warmup_steps=0))
    settings = Settings.from_env()
    with pytest.raises(TuneError, match="no trial completed"):
        tune({**SPEC, "tune": {**SPEC["tune"], "trials": 1}}, settings=settings, register=False)
    assert len(fits) == 1  # one fold of three
    (run,) = list(settings.runs_dir.iterdir())
    trial = json.loads((run / "trial.json").read_text())
    assert trial["pruned_after_fold"] == 1 and trial["folds"] == 3 and "val_loss" not in trial and trial["validation"] > 0
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    assert (run / "package").is_dir()


def test_the_running_score_is_reported_after_every_fold_but_the_last(workspace):
    from trustforge.tune._study import _cross_validated

    class Trial:
        def __init__(self):
            self.steps = {}

        def report(self, value, step):
            self.steps[step] = value

        def should_prune(self):
            return False

    spec = load_spec({k: v for k, v in SPEC.items() if k != "tune"})
    trial, done = Trial(), {}
    value = _cross_validated(trial, spec, _iris_data(spec), 4, "val_accuracy", Settings.from_env(), done)
    assert sorted(trial.steps) == [0, 1, 2] and done == {"fold": 3}
    assert all(0.0 <= v <= 1.0 for v in trial.steps.values()) and 0.0 <= value <= 1.0
