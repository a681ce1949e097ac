"""Forecasting end to end: examples/forecast_air_passengers.yaml beats the seasonal-naive
forecast; packages forecast from a series, refuse short ones, and carry their evidence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _cli import run_main
from _figures import assert_near_readme

import trustforge
from trustforge.data import load_source
from trustforge.errors import DataError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "forecast_air_passengers.yaml"


def seasonal(seed: int = 7) -> pd.DataFrame:
    return load_source("builtin:seasonal", target=None, image_size=(8, 8), channels=1, seed=seed).frame


def test_air_passengers_example_beats_seasonal_naive_with_few_epochs():
    """examples/forecast_air_passengers.yaml cut to 60 epochs still forecasts 1959–1960 far better
    than repeating last year's month (seasonal-naive MAE 47.6 thousand passengers)."""
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["train"].update(max_epochs=60, early_stopping=None)
    spec["evaluate"] = {"speed": False}
    result = trustforge.run(spec, progress=False, register=False)
    m = result.metrics
    assert m["n"] == 24  # the test windows: the 24 months of 1959 and 1960
    assert m["baseline_seasonal_naive_mae"] == pytest.approx(47.583, abs=1e-3)
    assert m["mae"] < 0.7 * m["baseline_seasonal_naive_mae"], m
    assert m["mape"] < m["baseline_seasonal_naive_mape"] and m["smape"] < m["baseline_seasonal_naive_smape"]


@pytest.mark.slow
def test_air_passengers_example_at_full_settings():
    result = trustforge.run(EXAMPLE, progress=False, register=False)
    m = result.metrics
    # Measured (seed 7): MAE 14.7 (MAPE 3.2 %) against seasonal-naive 47.6 (10.5 %).
    assert_near_readme("forecast_air_passengers.yaml", m)
    assert m["mae"] < 0.4 * m["baseline_seasonal_naive_mae"], m


@pytest.fixture(scope="module")
def seasonal_run(tmp_path_factory):
    """A quick horizon-3 forecaster of the generated series, with a shift set of another seed."""
    tmp = tmp_path_factory.mktemp("seasonal")
    other = seasonal(seed=99)
    other.to_csv(tmp / "other.csv", index=False)
    spec = {
        "name": "seasonal-mlp",
        "task": "forecasting",
        "data": {"source": "builtin:seasonal", "series": {"lookback": 24, "horizon": 3, "season": 12}},
        "model": {"kind": "mlp", "hidden": [32]},
        "train": {"max_epochs": 40, "batch_size": 32, "optimizer": {"lr": 0.003}, "early_stopping": None},
        "evaluate": {"speed": False, "shift": f"csv:{tmp / 'other.csv'}"},
    }
    with pytest.MonkeyPatch.context() as mp:  # a module-scoped run gets its own workspace
        mp.setenv("TRUSTFORGE_HOME", str(tmp / "ws"))
        result = trustforge.run(spec, progress=False, register=False)
    return result, tmp


def test_multi_step_forecasts_beat_the_baseline_at_every_step(seasonal_run):
    result, _ = seasonal_run
    m = result.metrics
    assert len(m["mae_by_step"]) == 3
    assert m["mae"] < 0.8 * m["baseline_seasonal_naive_mae"], m
    assert m["mae_by_step"][0] <= m["mae_by_step"][2] + 0.3  # further ahead is not easier


def test_the_package_forecasts_the_next_steps_from_a_series(seasonal_run):
    result, tmp = seasonal_run
    model = result.load_model()
    series = seasonal()
    table = model.predict(series)
    assert list(table.columns) == ["step", "time", "prediction"]
    assert list(table["step"]) == [1, 2, 3] and list(table["time"]) == [360, 361, 362]
    # Only the last `lookback` values matter, and row order does not (the time column orders them).
    tail = series.tail(24).sample(frac=1.0, random_state=1)
    np.testing.assert_allclose(model.predict(tail)["prediction"], table["prediction"], rtol=1e-6)
    # The forecast continues the series: near where the seasonal pattern and trend put it.
    t = np.arange(360, 363)
    expected = 100 + 0.25 * t + 12 * np.sin(2 * np.pi * t / 12) + 5 * np.cos(2 * np.pi * t / 6)
    assert np.abs(table["prediction"].to_numpy() - expected).max() < 8


def test_a_series_shorter_than_the_lookback_is_refused_with_the_counts(seasonal_run):
    result, _ = seasonal_run
    model = result.load_model()
    series = seasonal()
    with pytest.raises(DataError, match=r"needs the last 24 values of the series \(data.series.lookback\); got 23"):
        model.predict(series.tail(23))
    with pytest.raises(DataError, match=r"column 'value' has 1 missing value; a series must be complete"):
        model.predict(series.tail(30).assign(value=lambda f: f["value"].where(f.index != f.index[3])))
    with pytest.raises(DataError, match=r"unexpected columns \['price'\]"):
        model.predict(series.tail(30).assign(price=1.0))
    with pytest.raises(DataError, match="not an array"):
        model.predict(np.zeros((30, 1)))


def test_package_evaluates_like_the_run_and_keeps_its_evidence(seasonal_run):
    result, _ = seasonal_run
    model = result.load_model()
    from trustforge.data import prepare

    again = model.evaluate(prepare(result.spec).test_raw)
    for k in ("mae", "rmse", "mape", "smape", "baseline_seasonal_naive_mae"):
        assert again[k] == pytest.approx(result.metrics[k], rel=1e-6)
    assert again["n_in_training_period"] == 0  # the test windows forecast times after training's
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    noise = evidence["corruptions"]
    assert noise["metric"] == "mae" and [r["severity"] for r in noise["rows"]] == [1, 2, 3]
    assert noise["rows"][2]["value"] > noise["clean"]  # noisier inputs, worse forecasts
    assert set(evidence["skipped"]) == {
        "calibration",
        "explanations",
        "robustness",
        "privacy_audit",
    }  # a window of values: no attack space, no row-level loss
    assert "calibration" not in evidence or evidence["calibration"] is None
    assert evidence["shift"]["n"] == 360 and evidence["shift"]["shifted"]["mae"] > 0
    manifest = json.loads((result.package / "manifest.json").read_text())
    assert manifest["signature"]["inputs"][0] == {"name": "value", "datatype": "FP64", "shape": [-1], "min_rows": 24}
    assert [o["name"] for o in manifest["signature"]["outputs"]] == ["step", "time", "prediction"]


def test_cli_predicts_a_forecast_from_a_csv_and_reports_a_short_one(seasonal_run, tmp_path):
    result, _ = seasonal_run
    series = seasonal()
    series.to_csv(tmp_path / "series.csv", index=False)
    series.head(5).to_csv(tmp_path / "short.csv", index=False)
    home = result.run_dir.parent.parent
    code, _, err = run_main("predict", result.package, tmp_path / "series.csv", "-o", tmp_path / "out.csv", home=home)
    assert code == 0, err
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["step", "time", "prediction"] and len(out) == 3
    code, _, err = run_main("predict", result.package, tmp_path / "short.csv", home=home)
    assert code != 0 and "Traceback" not in err
    assert "needs the last 24 values" in err and "got 5" in err


def test_a_forecast_over_missing_time_steps_is_refused_naming_the_first(seasonal_run, tmp_path):
    """The model reads its window as consecutive steps: a gap in it is an error, not a forecast
    from values 25 steps apart read as 24 (Python API, the server's path and the CLI alike)."""
    result, _ = seasonal_run
    model = result.load_model()
    series = seasonal()
    gap = series.drop(index=[350, 351])
    message = (
        "column 't': 349 and 352 are 3 steps apart; the model reads consecutive steps of 1 (2 missing). "
        "Fill or drop the gap before forecasting"
    )
    with pytest.raises(DataError, match=re.escape(f"input: {message}")):
        model.predict(gap)
    with pytest.raises(DataError, match=re.escape(message)):
        model.predict_columns({"t": gap["t"].to_numpy(), "value": gap["value"].to_numpy()})
    gap.to_csv(tmp_path / "gap.csv", index=False)
    code, out, err = run_main("predict", result.package, tmp_path / "gap.csv", home=result.run_dir.parent.parent)
    assert code == DataError.exit_code and out == "" and len(err.strip().splitlines()) == 1 and f"gap.csv: {message}" in err
    # A repeated time is refused; a gap before the last 24 steps is not read, and the times go on.
    with pytest.raises(DataError, match=r"column 't' repeats the time 359"):
        model.predict(pd.concat([series, series.tail(1)]))
    early = model.predict(series.drop(index=[100, 101]))
    assert list(early["time"]) == [360, 361, 362]


def test_cli_evaluate_says_when_windows_forecast_the_training_period(seasonal_run, tmp_path):
    result, _ = seasonal_run
    seasonal().to_csv(tmp_path / "series.csv", index=False)
    code, out, err = run_main("evaluate", result.package, tmp_path / "series.csv", home=result.run_dir.parent.parent)
    assert code == 0, err
    first, last = result.load_model().schema.series.train_period
    metrics = json.loads(out.strip().splitlines()[-1])
    k = metrics["n_in_training_period"]
    assert metrics["n"] == 360 - 24 - 3 + 1 and k == last - 24 + 1  # windows forecasting from time 24 up to `last`
    assert f"note: {k} of the 334 windows forecast times inside the model's training period ({first} to {last})" in err
    assert "in-sample" in err
    # The last 60 steps lie after training: no note.
    seasonal().tail(60).to_csv(tmp_path / "late.csv", index=False)
    code, out, err = run_main("evaluate", result.package, tmp_path / "late.csv", home=result.run_dir.parent.parent)
    assert code == 0 and "training period" not in err and json.loads(out.strip().splitlines()[-1])["n_in_training_period"] == 0


def test_trading_days_train_and_forecast_under_step_rows(tmp_path, monkeypatch):
    """Daily prices have no rows on weekends and holidays: step rows reads the rows as consecutive
    trading days, at training, in the package's forecast and in its evaluation."""
    monkeypatch.setenv("TRUSTFORGE_HOME", str(tmp_path / "ws"))
    days = pd.bdate_range("2024-01-02", periods=122).drop(pd.to_datetime(["2024-01-15", "2024-02-19"]))
    prices = pd.DataFrame({"day": days, "close": 100.0 + np.sin(np.arange(120) / 3.0)})
    prices.to_csv(tmp_path / "prices.csv", index=False)
    spec = {
        "task": "forecasting",
        "data": {
            "source": f"csv:{tmp_path / 'prices.csv'}",
            "target": "close",
            "series": {"time": "day", "lookback": 10, "horizon": 2, "season": 5},
        },
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 2, "early_stopping": None},
        "evaluate": {"speed": False},
    }
    with pytest.raises(DataError, match=r"2024-01-12 and 2024-01-16 are 2 steps apart; .* or set data.series.step: rows"):
        trustforge.run(spec, progress=False, register=False)
    spec["data"]["series"]["step"] = "rows"
    model = trustforge.run(spec, progress=False, register=False).load_model()
    assert model.schema.series.step == "rows"
    forecast = model.predict(prices.head(14))  # the holiday 2024-01-15 lies in the 10 days it reads
    assert list(forecast.columns) == ["step", "prediction"] and len(forecast) == 2
    assert [o["name"] for o in model.task.output_signature(model.schema)] == ["step", "prediction"]
    assert model.evaluate(prices)["n"] == 120 - 12 + 1


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_a_series_source_under_another_task_is_one_line_naming_the_task(task, workspace):
    # A probe: `task: regression` over builtin:air_passengers was "internal error (NotImplementedError)", exit 70.
    code, _, err = run_main("validate", _write_spec(workspace.parent, task), home=workspace)
    assert code == 3 and "holds a time series, which only task forecasting reads" in err and "internal error" not in err, err


def _write_spec(folder, task):
    path = folder / f"series-{task}.yaml"
    path.write_text(f"name: s\ntask: {task}\ndata: {{source: 'builtin:air_passengers'}}\nmodel: {{kind: mlp}}\n")
    return path
