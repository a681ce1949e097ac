"""Series for forecasting: builtin series, the split by time, windows, scaling, the baseline, errors."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
import torch

from trustforge.data import load_source, prepare
from trustforge.data._raw import RawData
from trustforge.data._series import (
    forecast_inputs,
    forecast_table,
    seasonal_naive,
    split_windows,
    training_overlap,
    window_forecasts,
)
from trustforge.errors import DataError, SpecError
from trustforge.spec import load_spec


def forecast_spec(source: str = "builtin:seasonal", **series) -> dict:
    return {
        "task": "forecasting",
        "data": {"source": source, "series": {"lookback": 24, "season": 12, **series}},
        "model": {"kind": "rnn", "hidden_size": 8},
    }


def load(source: str, **kw):
    return load_source(source, target=kw.get("target"), image_size=(8, 8), channels=1, seed=kw.get("seed", 0))


# ---------------------------------------------------------------------------- builtin series


def test_air_passengers_is_the_monthly_box_jenkins_series():
    raw = load("builtin:air_passengers")
    f = raw.frame
    assert raw.modality == "series" and raw.target == "passengers" and list(f.columns) == ["month", "passengers"]
    assert len(f) == 144
    assert f["month"].iloc[0] == pd.Timestamp("1949-01-01") and f["month"].iloc[-1] == pd.Timestamp("1960-12-01")
    # The classic figures: 112 in January 1949, 432 in December 1960, the peak 622 in July 1960.
    assert f["passengers"].iloc[0] == 112 and f["passengers"].iloc[-1] == 432 and f["passengers"].max() == 622


def test_generated_series_is_seeded_and_seasonal():
    a, b, c = load("builtin:seasonal", seed=1), load("builtin:seasonal", seed=1), load("builtin:seasonal", seed=2)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not a.frame["value"].equals(c.frame["value"])
    v = a.frame["value"].to_numpy()
    detrended = v - np.polyval(np.polyfit(np.arange(len(v)), v, 1), np.arange(len(v)))
    # Period 12: the series correlates with itself one season back, not half a season back.
    lag = lambda k: np.corrcoef(detrended[k:], detrended[:-k])[0, 1]  # noqa: E731
    assert lag(12) > 0.8 and lag(6) < 0.5


# ---------------------------------------------------------------------------- the split by time


@pytest.mark.parametrize("horizon", [1, 3, 12])
def test_split_is_by_time_and_no_target_is_on_two_sides(horizon):
    n, lookback = 200, 24
    tr, va, te = split_windows(n, lookback=lookback, horizon=horizon, test=0.2, validation=0.1)
    assert tr.start == 0 and max(tr) < min(va) and max(va) < min(te)
    assert te.stop == n - lookback - horizon + 1  # the last window ends at the series' end

    def targets(windows: range) -> set[int]:
        return {i + lookback + k for i in windows for k in range(horizon)}

    assert not targets(tr) & targets(va) and not targets(va) & targets(te) and not targets(tr) & targets(te)
    # Adjacent: the next part's first target directly follows the previous part's last one.
    assert max(targets(tr)) + 1 == min(targets(va)) and max(targets(va)) + 1 == min(targets(te))


def test_prepared_series_is_split_by_time_and_scaled_on_training_values_only():
    spec = load_spec(forecast_spec())
    data = prepare(spec)
    assert data.schema.modality == "series" and data.schema.task == "forecasting"
    n_windows = 360 - 24 - 1 + 1
    assert len(data.train) + len(data.validation) + len(data.test) == n_windows
    assert len(data.test) == round(0.2 * n_windows)
    assert data.train.inputs[0].shape == (len(data.train), 24, 1) and data.test.target.shape == (len(data.test), 1)
    # The scaler saw the training part only: changing every value after it changes nothing in it.
    raw = load("builtin:seasonal", seed=spec.train.seed)
    later = raw.frame.copy()
    cut = len(data.train) + 24  # values the training windows read
    later.loc[cut:, "value"] *= 10
    raw.frame = later
    again = prepare(spec, raw)
    assert torch.equal(again.preprocessor.input_state.mean, data.preprocessor.input_state.mean)
    assert torch.equal(again.train.inputs[0], data.train.inputs[0])
    assert not torch.equal(again.test.inputs[0], data.test.inputs[0])


def test_test_part_holds_exactly_the_test_windows_with_their_history():
    data = prepare(load_spec(forecast_spec()))
    assert len(data.test_raw) == len(data.test) + 24 + 1 - 1
    # The last test target is the series' last value.
    y, _, _ = window_forecasts(data.preprocessor, data.test_raw, torch.zeros(len(data.test), 1))
    series = load("builtin:seasonal", seed=7).frame["value"].to_numpy()
    assert y[-1, 0] == pytest.approx(series[-1])


def test_rows_are_put_in_time_order_by_the_time_column(tmp_path):
    raw = load("builtin:seasonal", seed=7)
    shuffled = raw.frame.sample(frac=1.0, random_state=0)
    path = tmp_path / "series.csv"
    shuffled.to_csv(path, index=False)
    spec = forecast_spec(f"csv:{path}", time="t")
    spec["data"]["target"] = "value"
    from_csv = prepare(load_spec(spec))
    from_builtin = prepare(load_spec(forecast_spec()))
    assert torch.allclose(from_csv.test.inputs[0], from_builtin.test.inputs[0], atol=1e-6)


# ---------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("transform,level", [("none", "none"), ("log", "last"), ("none", "mean"), ("log", "mean")])
def test_decoding_the_encoded_targets_gives_back_the_series(transform, level):
    data = prepare(load_spec(forecast_spec(transform=transform, level=level, horizon=3)))
    y, pred, _ = window_forecasts(data.preprocessor, data.test_raw, data.test.target)
    np.testing.assert_allclose(pred, y, rtol=1e-5)
    values = data.test_raw.frame["value"].to_numpy()
    np.testing.assert_allclose(y[:, 0], values[24 : 24 + len(y)], rtol=1e-12)


def test_level_last_makes_the_window_relative_to_its_last_value():
    data = prepare(load_spec(forecast_spec(level="last")))
    x = data.train.inputs[0]
    assert torch.all(x[:, -1, 0] == 0)


def test_seasonal_naive_repeats_the_value_one_season_before_each_step():
    x = np.arange(24.0)[None, :]  # values 0..23 at times 0..23
    # Step k forecasts time 23 + k: one season (12) earlier is time 11 + k, i.e. value 11 + k;
    # beyond one season, whole seasons back (step 13 → time 24 → value 12).
    np.testing.assert_array_equal(seasonal_naive(x, 14, 12)[0], [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 12, 13])
    np.testing.assert_array_equal(seasonal_naive(x, 3, 1)[0], [23, 23, 23])  # season 1: the naive forecast


def test_forecast_table_has_one_row_per_step_with_the_next_times():
    data = prepare(load_spec(forecast_spec("builtin:air_passengers", horizon=3)))
    raw = load("builtin:air_passengers")
    x = forecast_inputs(data.preprocessor, raw)
    assert x.shape == (1, 24, 1)
    table = forecast_table(data.preprocessor, raw, torch.zeros(1, 3))
    assert list(table.columns) == ["step", "time", "prediction"]
    assert list(table["step"]) == [1, 2, 3]
    assert list(table["time"]) == list(pd.date_range("1961-01-01", periods=3, freq="MS"))
    # A zero output means "the window's level" (level: last): the last value, 432.
    np.testing.assert_allclose(table["prediction"], 432.0)


# ---------------------------------------------------------------------------- errors


def test_a_series_shorter_than_the_lookback_cannot_be_forecast():
    data = prepare(load_spec(forecast_spec()))
    short = load("builtin:seasonal", seed=7)
    short.frame = short.frame.head(10)
    with pytest.raises(DataError, match=r"needs the last 24 values .*got 10"):
        forecast_inputs(data.preprocessor, short)


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda f: f.assign(value=f["value"].where(f.index != 5)),
            r"'value' has 1 missing value; a series must be complete \(fill it in, or drop its row\)$",
        ),
        (lambda f: f.assign(value=f["value"].astype(object).where(f.index != 5, "abc")), r"'value' must be numeric; got 'abc' in row 6$"),
        (lambda f: f.assign(t=f["t"].where(f.index != 5, 4)), r"'t' repeats the time 4"),
        (lambda f: f.drop(columns="t"), r"no column 't'"),
        (lambda f: f.head(25), r"series of 25 values gives 1 window of lookback 24"),
        (lambda f: f.assign(value=f["value"] - 200), r"values <= 0; data.series.transform 'log'"),
        (
            lambda f: f.drop(index=[100, 101]),
            r"column 't': 99 and 102 are 3 steps apart; the model reads consecutive steps of 1 \(2 missing\)\. "
            r"Fill or drop the gap before training, or set data.series.step: rows to read the rows as consecutive steps "
            r"\(e.g. trading days\)",
        ),
        (lambda f: f.assign(t=f["t"].where(f.index != 100, 100.5)), r"'t': 99 and 100.5 are not a whole number of steps apart"),
    ],
)
def test_bad_series_are_data_errors_naming_the_column(tmp_path, change, message):
    frame = change(load("builtin:seasonal", seed=7).frame)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    spec = forecast_spec(f"csv:{path}", time="t", transform="log")
    spec["data"]["target"] = "value"
    with pytest.raises(DataError, match=message) as info:
        prepare(load_spec(spec))
    assert str(path) in str(info.value)


def air_passengers_without(months: list[str]) -> pd.DataFrame:
    frame = load("builtin:air_passengers").frame
    return frame[~frame["month"].isin(pd.to_datetime(months))].reset_index(drop=True)


def test_training_refuses_a_series_with_missing_months_naming_the_first(tmp_path):
    path = tmp_path / "gap.csv"
    air_passengers_without(["1955-04-01", "1955-05-01"]).to_csv(path, index=False)
    spec = forecast_spec(f"csv:{path}", time="month")
    spec["data"]["target"] = "passengers"
    with pytest.raises(
        DataError,
        match=r"column 'month': 1955-03-01 and 1955-06-01 are 3 steps apart; the model reads consecutive monthly steps \(2 missing\)",
    ):
        prepare(load_spec(spec))
    odd = load("builtin:air_passengers").frame.assign(month=lambda f: f["month"] + pd.Timedelta(days=14))  # the 15th: no pandas frequency
    odd.to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=r"'month': the times \(1949-01-15, 1949-02-15, 1949-03-15, ...\) have no regular step .* declare data.series.step, "
        r"or set data.series.step: rows",
    ):
        prepare(load_spec(spec))


@pytest.mark.parametrize("form", ["%d/%m/%Y", "%m/%d/%Y", "%d %b %Y"])
def test_times_that_are_not_iso_8601_are_refused_as_a_tables_dates_are(tmp_path, form):
    # 03/01/1949 is March 1st or January 3rd: pandas guessed, and a misread day was blamed as a gap.
    frame = load("builtin:air_passengers").frame
    written = frame.assign(month=frame["month"].dt.strftime(form))
    written.to_csv(tmp_path / "dates.csv", index=False)
    spec = forecast_spec(f"csv:{tmp_path / 'dates.csv'}", time="month")
    spec["data"]["target"] = "passengers"
    first = written["month"].iloc[0]
    message = f"dates.csv: column 'month' must hold ISO 8601 dates (2024-03-01 or 2024-03-01T14:30); got {first!r} in row 1"
    with pytest.raises(DataError, match=re.escape(message)):
        prepare(load_spec(spec))
    # At predict time too, naming the row of the file.
    data = prepare(load_spec(forecast_spec("builtin:air_passengers")))
    late = frame.astype({"month": object})
    late.loc[100, "month"] = "05/01/1957"
    with pytest.raises(DataError, match=re.escape("s.csv: column 'month' must hold ISO 8601 dates") + r".*'05/01/1957' in row 101"):
        forecast_inputs(data.preprocessor, RawData("series", "passengers", "s.csv", frame=late))


def test_the_schema_records_the_time_step_and_the_training_period():
    data = prepare(load_spec(forecast_spec("builtin:air_passengers", horizon=3)))
    cfg = data.schema.series
    assert cfg.step == "MS" and cfg.time_kind == "datetime"
    last_read = data.train_raw.frame["month"].iloc[-1]  # the training windows' last target
    assert cfg.train_period == ("1949-01-01", last_read.strftime("%Y-%m-%d"))
    assert prepare(load_spec(forecast_spec())).schema.series.step == 1.0


def test_a_forecast_refuses_missing_time_steps_in_the_window_it_reads():
    data = prepare(load_spec(forecast_spec("builtin:air_passengers", horizon=3)))
    gap = RawData("series", "passengers", "series.csv", frame=air_passengers_without(["1960-04-01", "1960-05-01"]))
    message = (
        "series.csv: column 'month': 1960-03-01 and 1960-06-01 are 3 steps apart; the model reads consecutive monthly steps "
        "(2 missing). Fill or drop the gap before forecasting"
    )
    with pytest.raises(DataError, match=re.escape(message)):
        forecast_inputs(data.preprocessor, gap)
    # Evaluating reads every window, so a gap anywhere is refused.
    early = RawData("series", "passengers", "series.csv", frame=air_passengers_without(["1950-04-01"]))
    with pytest.raises(DataError, match=r"1950-03-01 and 1950-05-01 are 2 steps apart; .* \(1 missing\)\. Fill or drop the gap first"):
        window_forecasts(data.preprocessor, early, torch.zeros(1, 3))
    # A forecast reads only the last 24 months: a gap before them does not matter, and the table keeps its times.
    assert forecast_inputs(data.preprocessor, early).shape == (1, 24, 1)
    table = forecast_table(data.preprocessor, early, torch.zeros(1, 3))
    assert list(table["time"]) == list(pd.date_range("1961-01-01", periods=3, freq="MS"))
    # Dates where the model was timed with numbers are refused too.
    numeric = prepare(load_spec(forecast_spec()))
    dated = RawData("series", "value", "s.csv", frame=load("builtin:seasonal").frame.assign(t=pd.date_range("2000-01-01", periods=360)))
    with pytest.raises(DataError, match=r"s.csv: column 't' holds dates; the model's series was timed with numbers"):
        forecast_inputs(numeric.preprocessor, dated)


def test_packages_without_a_recorded_step_read_the_rows_as_steps_as_they_were_trained():
    # Packages from before the step was recorded trained on the rows as consecutive steps:
    # nothing is checked (a step guessed from a few times would refuse their own series).
    data = prepare(load_spec(forecast_spec("builtin:air_passengers", horizon=3)))
    data.preprocessor.schema.series = dataclasses.replace(data.schema.series, step=None, train_period=None)
    frame = air_passengers_without(["1960-04-01", "1960-05-01"])
    gap = RawData("series", "passengers", "series.csv", frame=frame)
    assert forecast_inputs(data.preprocessor, gap).shape == (1, 24, 1)
    assert window_forecasts(data.preprocessor, gap, torch.zeros(116, 3))[0].shape == (116, 3)
    # The forecast's time column continues the last times' step where it is regular, as before.
    table = forecast_table(data.preprocessor, load("builtin:air_passengers"), torch.zeros(1, 3))
    assert list(table["time"]) == list(pd.date_range("1961-01-01", periods=3, freq="MS"))
    assert "time" not in forecast_table(
        data.preprocessor, RawData("series", "passengers", "s.csv", frame=frame.tail(25)), torch.zeros(1, 3)
    )
    assert training_overlap(data.preprocessor, load("builtin:air_passengers")) is None
    # Business days with holidays, six of them in the window: predict and evaluate as trained.
    days = trading_days()
    old = dataclasses.replace(data.schema.series, time="day", lookback=6, horizon=2, season=5, step=None, train_period=None)
    data.preprocessor.schema.series = old
    raw = RawData("series", "passengers", "prices.csv", frame=days.rename(columns={"close": "passengers"}).head(14))
    assert forecast_inputs(data.preprocessor, raw).shape == (1, 6, 1)
    assert window_forecasts(data.preprocessor, raw, torch.zeros(7, 2))[0].shape == (7, 2)


def test_training_overlap_counts_the_windows_forecasting_training_times():
    data = prepare(load_spec(forecast_spec("builtin:air_passengers", horizon=3)))
    assert training_overlap(data.preprocessor, data.test_raw) == 0
    # Over the whole series: every window whose forecast times touch the training period.
    n_train = len(data.train.target)
    assert training_overlap(data.preprocessor, load("builtin:air_passengers")) == n_train + 3 - 1


def trading_days(n: int = 80) -> pd.DataFrame:
    """Business days from 2024-01-02 without the exchange holidays 2024-01-15 and 2024-02-19."""
    days = pd.bdate_range("2024-01-02", periods=n + 2).drop(pd.to_datetime(["2024-01-15", "2024-02-19"]))
    return pd.DataFrame({"day": days, "close": 100.0 + np.sin(np.arange(n) / 3.0)})


def trading_spec(path, **series) -> dict:
    spec = forecast_spec(f"csv:{path}", time="day", lookback=10, season=5, horizon=2, **series)
    spec["data"]["target"] = "close"
    return spec


def test_a_holiday_in_business_days_is_refused_under_auto_and_read_as_a_step_under_rows(tmp_path):
    path = tmp_path / "prices.csv"
    trading_days().to_csv(path, index=False)
    # auto learns business days (not daily, which every weekend would break) and names the holiday.
    message = (
        "column 'day': 2024-01-12 and 2024-01-16 are 2 steps apart; the model reads consecutive business-day steps (1 missing). "
        "Fill or drop the gap before training, or set data.series.step: rows to read the rows as consecutive steps (e.g. trading days)"
    )
    with pytest.raises(DataError, match=re.escape(message)):
        prepare(load_spec(trading_spec(path)))
    data = prepare(load_spec(trading_spec(path, step="rows")))
    assert data.schema.series.step == "rows" and data.schema.series.time_kind == "datetime"
    # Forecasting and evaluating read the rows as steps, holidays and all; the forecast has no time column.
    holiday = RawData("series", "close", "prices.csv", frame=trading_days().head(14))  # 2024-01-15 is missing from its last 10 rows
    assert forecast_inputs(data.preprocessor, holiday).shape == (1, 10, 1)
    table = forecast_table(data.preprocessor, holiday, torch.zeros(1, 2))
    assert list(table.columns) == ["step", "prediction"] and list(table["step"]) == [1, 2]
    y, _, _ = window_forecasts(data.preprocessor, RawData("series", "close", "prices.csv", frame=trading_days()), torch.zeros(69, 2))
    assert y.shape == (80 - 12 + 1, 2)
    # A repeated time is still refused.
    repeated = RawData("series", "close", "prices.csv", frame=pd.concat([trading_days(), trading_days().tail(1)]))
    with pytest.raises(DataError, match=r"column 'day' repeats the time 2024-04-2\d; a series"):  # a date, as other messages show it
        forecast_inputs(data.preprocessor, repeated)
    # A missing value at predict time says what to do without speaking of training.
    gap = trading_days().astype({"close": float})
    gap.loc[[70, 75], "close"] = np.nan
    missing = "prices.csv: column 'close' has 2 missing values; a series must be complete (fill them in, or drop their rows)"
    with pytest.raises(DataError, match=re.escape(missing) + "$"):
        forecast_inputs(data.preprocessor, RawData("series", "close", "prices.csv", frame=gap))


def test_mid_month_dates_are_read_as_steps_under_rows(tmp_path):
    path = tmp_path / "mid.csv"
    load("builtin:air_passengers").frame.assign(month=lambda f: f["month"] + pd.Timedelta(days=14)).to_csv(path, index=False)
    spec = forecast_spec(f"csv:{path}", time="month", horizon=3, step="rows")
    spec["data"]["target"] = "passengers"
    data = prepare(load_spec(spec))
    assert data.schema.series.step == "rows" and data.schema.series.train_period[0] == "1949-01-15"
    table = forecast_table(data.preprocessor, data.test_raw, torch.zeros(1, 3))
    assert list(table.columns) == ["step", "prediction"]


def test_a_declared_step_is_checked_not_inferred(tmp_path):
    data = prepare(load_spec(forecast_spec("builtin:air_passengers", horizon=3, step="MS")))
    assert data.schema.series.step == "MS"
    table = forecast_table(data.preprocessor, load("builtin:air_passengers"), torch.zeros(1, 3))
    assert list(table["time"]) == list(pd.date_range("1961-01-01", periods=3, freq="MS"))
    path = tmp_path / "gap.csv"
    air_passengers_without(["1955-04-01"]).to_csv(path, index=False)
    spec = forecast_spec(f"csv:{path}", time="month", step="MS")
    spec["data"]["target"] = "passengers"
    with pytest.raises(DataError, match=r"'month': 1955-03-01 and 1955-05-01 are 2 steps apart; the model reads consecutive monthly"):
        prepare(load_spec(spec))
    # Declared, not inferred: every third month trains as quarterly under auto, but not as monthly steps.
    load("builtin:air_passengers").frame.iloc[::3].to_csv(path, index=False)
    spec["data"]["series"].update(lookback=12, season=4)
    with pytest.raises(
        DataError, match=r"1949-01-01 and 1949-04-01 are 3 steps apart; the model reads consecutive monthly steps \(2 missing\)"
    ):
        prepare(load_spec(spec))
    spec["data"]["series"]["step"] = "auto"
    assert prepare(load_spec(spec)).schema.series.step == "QS-JAN"
    assert prepare(load_spec(forecast_spec(step=1))).schema.series.step == 1.0
    # Times closer than one step are another frequency, not a gap (they were "not a whole number of
    # steps apart ... Fill or drop the gap").
    with pytest.raises(DataError, match=r"'t': 0 and 1 are closer than one step; the model reads consecutive steps of 2: give the series"):
        prepare(load_spec(forecast_spec(step=2)))
    weekly = RawData(
        "series",
        "passengers",
        "weekly.csv",
        frame=pd.DataFrame({"month": pd.date_range("1960-01-03", periods=30, freq="W"), "passengers": 400.0}),
    )
    with pytest.raises(
        DataError,
        match=r"weekly.csv: column .month.: 1960-\d\d-\d\d and 1960-\d\d-\d\d are closer than one step; the model reads consecutive monthly steps: give",
    ):
        forecast_inputs(data.preprocessor, weekly)


@pytest.mark.parametrize(
    "series,message",
    [
        ({"step": "D"}, r"data.series.step is 'D' but column 't' holds numbers; give a number \(the spacing of its times\), or rows"),
        ({"step": 1}, r"data.series.step is 1 but column 'month' holds dates; give a pandas frequency \(D, B, MS, ...\), or rows"),
    ],
)
def test_a_declared_step_of_the_wrong_kind_is_refused_naming_the_field_and_column(series, message):
    source = "builtin:seasonal" if series["step"] == "D" else "builtin:air_passengers"
    with pytest.raises(DataError, match=message):
        prepare(load_spec(forecast_spec(source, **series)))


def test_a_declared_step_without_a_time_column_is_refused(tmp_path):
    path = tmp_path / "values.csv"
    load("builtin:seasonal").frame[["value"]].to_csv(path, index=False)
    spec = forecast_spec(f"csv:{path}", step="D")
    spec["data"]["target"] = "value"
    with pytest.raises(DataError, match=r"data.series.step is 'D' but the series has no time column to check it against"):
        prepare(load_spec(spec))
    spec["data"]["series"]["step"] = "rows"  # what a series without times gets anyway
    assert prepare(load_spec(spec)).schema.series.step is None


def test_forecasting_a_table_of_text_or_images_is_refused():
    with pytest.raises(DataError, match="must be numeric"):
        prepare(load_spec({**forecast_spec("builtin:iris"), "data": {"source": "builtin:iris", "target": "target"}}))
    with pytest.raises(DataError, match="needs a series"):
        prepare(load_spec({**forecast_spec("builtin:digits"), "data": {"source": "builtin:digits"}}))


@pytest.mark.parametrize(
    "spec,message",
    [
        (forecast_spec(lookback=6), "data.series.season must be <= lookback"),
        (forecast_spec(step="H"), r"data.series.step must be auto, rows, a pandas frequency .*; got 'H' \(did you mean h\?\)"),
        (forecast_spec(step="fortnightly"), r"data.series.step must be auto, rows, a pandas frequency \(D, B, MS, W-MON, h, ...\)"),
        (forecast_spec(step=0), r"data.series.step must be .* or a number > 0; got 0"),
        ({"data": {"series": {"lookback": 4}}}, "data.series applies to task forecasting only"),
        ({**forecast_spec(), "train": {"loss": "cross_entropy"}}, "train.loss must be auto or mse for task forecasting"),
        ({**forecast_spec(), "evaluate": {"metrics": ["accuracy"]}}, "must be a forecasting metric"),
        ({**forecast_spec(), "train": {"early_stopping": {"monitor": "val_mape"}}}, "train.early_stopping.monitor"),
        ({**forecast_spec(), "data": {"source": "builtin:seasonal", "features": ["t"]}}, "data.features must be null for task forecasting"),
    ],
)
def test_spec_rules_for_forecasting(spec, message):
    with pytest.raises(SpecError, match=message):
        load_spec(spec)


def test_forecasting_spec_fills_in_the_series_defaults():
    spec = load_spec({"task": "forecasting", "data": {"source": "builtin:seasonal"}})
    assert spec.data.series is not None and spec.data.series.lookback == 24 and spec.data.series.horizon == 1
    assert spec.default_metrics()[:4] == ["mae", "rmse", "mape", "smape"]


# ---------------------------------------------------------------------------- time zones and numeric precision


def small_series(path, times, *, fmt=None, **series) -> dict:
    """A spec for 80 values at `times`, written to `path` (CSV, or Parquet to keep the times' dtype)."""
    frame = pd.DataFrame({"t": times, "value": 100.0 + 10 * np.sin(np.arange(len(times)) / 3.0)})
    frame.to_parquet(path) if str(path).endswith(".parquet") else frame.to_csv(path, index=False, float_format=fmt)
    kind = "parquet" if str(path).endswith(".parquet") else "csv"
    spec = forecast_spec(f"{kind}:{path}", time="t", lookback=10, season=7, horizon=2, **series)
    spec["data"]["target"] = "value"
    return spec


def test_times_with_a_zone_keep_it_and_the_training_period_compares_as_instants(tmp_path):
    utc = pd.date_range("2021-01-01", periods=80, freq="D", tz="UTC")
    data = prepare(load_spec(small_series(tmp_path / "utc.csv", utc.map(pd.Timestamp.isoformat))))
    cfg = data.schema.series
    assert cfg.time_zone == "UTC" and cfg.step == "D" and cfg.train_period[0] == "2021-01-01 00:00:00+00:00"
    whole = RawData("series", "value", "utc.csv", frame=pd.read_csv(tmp_path / "utc.csv"))
    assert training_overlap(data.preprocessor, whole) == len(data.train.target) + 2 - 1
    # The same instants in another zone are the same times.
    berlin = whole.frame.assign(t=utc.tz_convert("Europe/Berlin"))
    assert training_overlap(data.preprocessor, RawData("series", "value", "b", frame=berlin)) == len(data.train.target) + 1
    # Naive dates for a model timed in UTC, and UTC dates for a naive model, are refused naming the column and both kinds.
    naive = RawData("series", "value", "naive.csv", frame=whole.frame.assign(t=utc.tz_localize(None)))
    message = "naive.csv: column 't' holds dates without a time zone; the model's series was timed with dates with a time zone (UTC)"
    for call in (lambda: forecast_inputs(data.preprocessor, naive), lambda: window_forecasts(data.preprocessor, naive, torch.zeros(69, 2))):
        with pytest.raises(DataError, match=re.escape(message)):
            call()
    monthly = prepare(load_spec(forecast_spec("builtin:air_passengers", horizon=3)))
    assert monthly.schema.series.time_zone == "naive"
    aware = RawData(
        "series", "passengers", "s.csv", frame=load("builtin:air_passengers").frame.assign(month=lambda f: f["month"].dt.tz_localize("UTC"))
    )
    with pytest.raises(
        DataError,
        match=r"s.csv: column 'month' holds dates with a time zone \(UTC\); the model's series was timed with dates without a time zone",
    ):
        forecast_inputs(monthly.preprocessor, aware)


def test_packages_from_before_the_time_zone_compare_their_period_in_the_series_zone(tmp_path):
    # Their period was written without its offset ("2021-01-01" for a UTC midnight).
    utc = pd.date_range("2021-01-01", periods=80, freq="D", tz="UTC")
    data = prepare(load_spec(small_series(tmp_path / "utc.csv", utc.map(pd.Timestamp.isoformat))))
    first, last = data.schema.series.train_period
    old = (pd.Timestamp(first).strftime("%Y-%m-%d"), pd.Timestamp(last).strftime("%Y-%m-%d"))
    data.preprocessor.schema.series = dataclasses.replace(data.schema.series, time_zone=None, train_period=old)
    whole = RawData("series", "value", "utc.csv", frame=pd.read_csv(tmp_path / "utc.csv"))
    assert training_overlap(data.preprocessor, whole) == len(data.train.target) + 1


def test_times_whose_utc_offset_changes_are_read_as_instants(tmp_path):
    # Local hourly readings across the spring change of daylight saving time: +01:00, then +02:00.
    local = pd.date_range("2021-03-27 20:00", periods=80, freq="h", tz="Europe/Berlin")
    data = prepare(load_spec(small_series(tmp_path / "dst.csv", local.map(pd.Timestamp.isoformat))))
    cfg = data.schema.series
    assert cfg.time_zone == "UTC" and cfg.step == "h"
    raw = RawData("series", "value", "dst.csv", frame=pd.read_csv(tmp_path / "dst.csv"))
    table = forecast_table(data.preprocessor, raw, torch.zeros(1, 2))
    assert list(table["time"]) == list(pd.date_range(local[-1], periods=3, freq="h")[1:].tz_convert("UTC"))
    # An hour missing at the change is a gap in the instants.
    with pytest.raises(DataError, match=r"2021-03-27 23:00:00\+00:00 and 2021-03-28 01:00:00\+00:00 are 2 steps apart"):
        prepare(load_spec(small_series(tmp_path / "gap.csv", local.delete(5).map(pd.Timestamp.isoformat))))
    # Times with an offset mixed with times without one are not guessed.
    mixed = [t.isoformat() if i else t.strftime("%Y-%m-%d %H:%M") for i, t in enumerate(local)]
    with pytest.raises(DataError, match=r"column 't' mixes times with a UTC offset and times without one \('2021-03-27 20:00'\)"):
        prepare(load_spec(small_series(tmp_path / "mixed.csv", mixed)))


def test_fractional_numeric_steps_are_read_to_the_times_precision(tmp_path):
    # Seconds since the epoch every 0.1 s: float64 holds them to about 2e-7 s.
    epoch = 1.7e9 + np.arange(80) * 0.1
    data = prepare(load_spec(small_series(tmp_path / "epoch.csv", epoch, fmt="%.1f")))
    assert data.schema.series.step == 0.1
    assert prepare(load_spec(small_series(tmp_path / "declared.csv", epoch, fmt="%.1f", step=0.1))).schema.series.step == 0.1
    gap = np.delete(epoch, [40, 41])
    message = "'t': 1700000003.9 and 1700000004.2 are 3 steps apart; the model reads consecutive steps of 0.1 (2 missing)"
    with pytest.raises(DataError, match=re.escape(message)):
        prepare(load_spec(small_series(tmp_path / "gap.csv", gap, fmt="%.1f")))
    with pytest.raises(DataError, match=re.escape("'t': 1700000003.9 and 1700000004.05 are not a whole number of steps apart")):
        prepare(load_spec(small_series(tmp_path / "odd.csv", np.where(np.arange(80) == 40, epoch + 0.05, epoch), fmt="%.2f")))
    # float32 times near 1000 hold 0.1 s steps to about 6e-5; near 1e6 they cannot tell them apart.
    f32 = (1000 + np.arange(80) * 0.1).astype(np.float32)
    assert prepare(load_spec(small_series(tmp_path / "f32.parquet", f32))).schema.series.step == pytest.approx(0.1, abs=1e-3)
    coarse = (1e6 + np.arange(80) * 0.1).astype(np.float32)
    with pytest.raises(DataError, match=r"'t': its times \(float32, up to 1000007.9\d*\) are too coarse to tell steps of 0.1 apart"):
        prepare(load_spec(small_series(tmp_path / "coarse.parquet", coarse, step=0.1)))


def test_a_gap_of_many_steps_is_counted(monkeypatch):
    from trustforge.data import _series

    times = pd.Series(pd.to_datetime(["2020-01-01 00:00:00", "2020-01-01 00:00:01", "2020-01-03 00:00:01"]))
    with pytest.raises(DataError, match=r"00:00:01 and 2020-01-03 00:00:01 are 172800 steps apart; .* secondly steps \(172799 missing\)"):
        _series.check_steps(times, "s", column="t", where="x.csv", advice="")
    # Calendar steps are walked, up to a bound.
    monkeypatch.setattr(_series, "_MOST_WALKED", 10)
    months = pd.Series(pd.to_datetime(["2020-01-01", "2020-02-01", "2021-06-01"]))
    with pytest.raises(
        DataError, match=r"2020-02-01 and 2021-06-01 are more than 10 steps apart; the model reads consecutive monthly steps"
    ):
        _series.check_steps(months, "MS", column="t", where="x.csv", advice="")
