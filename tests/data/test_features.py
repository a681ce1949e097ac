"""Feature types against data as it comes: the wrong results a user met are refused, naming the row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trustforge.data import RawData, infer_schema
from trustforge.data.features import FEATURE_TYPES, FeatureOptions, infer_type
from trustforge.errors import DataError

OPTIONS = FeatureOptions()


def fitted(name: str, values: list) -> tuple:
    t = FEATURE_TYPES[name]
    return t, t.fit(pd.Series(values, name="c"), OPTIONS, where="train.csv")


def test_a_date_that_does_not_exist_is_refused_not_imputed():
    t, state = fitted("datetime", ["2024-01-01", "2024-03-05T10:00"])
    for bad in ("2024-02-30", "2024-13-01", "2024-03-01T25:00"):
        with pytest.raises(DataError, match=rf"new\.csv: column 'c' holds '{bad}' in row 2, which is not a date that exists"):
            t.encode(state, pd.Series(["2024-02-01", bad], name="c"), where="new.csv")
    assert np.isfinite(t.encode(state, pd.Series(["2024-02-01", None], name="c"), where="new.csv")).all()  # a blank is imputed


def test_a_number_too_large_for_the_model_is_refused_with_its_row():
    t, state = fitted("numeric", [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match=r"column 'c' holds 1e\+308 in row 2, too far from the training values"):
        t.encode(state, pd.Series([2.0, 1e308], name="c"), where="new.csv")
    with pytest.raises(DataError, match=r"column 'c' holds 1e\+308 in row 1; values this large cannot be scaled"):
        fitted("numeric", [1e308, 1e308, 1.0])


def test_numbers_with_stray_text_name_the_first_stray_value():
    col = pd.Series([str(1.5 * i) for i in range(100)] + ["n/a", "12 kts"], name="speed")
    with pytest.raises(DataError, match=r"column 'speed' holds numbers but for 2 value\(s\) such as 'n/a' \(row 101\)"):
        infer_type(col, OPTIONS, where="t.csv")


@pytest.mark.parametrize(
    "values", [[f"{1013 * i:,}.5" for i in range(100)], [f"{m:02d}/{d:02d}/2024" for m in range(1, 13) for d in range(1, 10)]]
)
def test_numbers_and_dates_in_a_form_not_read_are_refused_not_read_as_text(values):
    with pytest.raises(DataError, match=r"looks like numbers or dates in a form not read .*2024-03-01"):
        infer_type(pd.Series(values, name="c"), OPTIONS, where="t.csv")


def test_text_needs_letters_and_length():
    prose = pd.Series([f"the strike damaged engine {i} on approach" for i in range(100)], name="r")
    chinese = pd.Series([f"这个产品很好用我非常喜欢它的设计第{i}次购买" for i in range(100)], name="r")
    codes = pd.Series([f"A{i:05d}-B{i:03d}" for i in range(100)], name="r")
    assert infer_type(prose, OPTIONS, where="t").name == "text"
    assert infer_type(chinese, OPTIONS, where="t").name == "text"
    with pytest.raises(DataError, match="like an id"):
        infer_type(codes, OPTIONS, where="t")


def test_a_binary_value_never_seen_names_its_row_and_the_signature_says_text():
    t, state = fitted("binary", ["no", "yes", "no"])
    with pytest.raises(DataError, match=r"column 'c' is binary \('no'/'yes'\); got 'maybe' in row 3"):
        t.encode(state, pd.Series(["yes", None, "maybe"], name="c"), where="new.csv")
    assert t.signature("c", state)["datatype"] == "BYTES"
    assert FEATURE_TYPES["binary"].signature("c", fitted("binary", [0, 1, 1])[1])["datatype"] == "FP64"


def frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.choice(["x", "y", "z"], n), "y": rng.normal(size=n).round(3)})


def test_a_mapping_of_types_keeps_the_other_columns():
    raw = RawData("table", "y", "t.csv", frame=frame())
    schema, _ = infer_schema(raw, task="regression", features={"b": "text"})
    assert {c.name: c.kind for c in schema.columns} == {"a": "numeric", "b": "text"}
    schema, _ = infer_schema(raw, task="regression", features=["a"])  # a list still selects
    assert [c.name for c in schema.columns] == ["a"]


def test_a_continuous_target_under_classification_suggests_regression():
    raw = RawData("table", "y", "t.csv", frame=frame())
    with pytest.raises(DataError, match=r"target 'y' has \d+ distinct values; is this a regression task\? \(task: regression\)"):
        infer_schema(raw, task="classification")


def test_a_regression_target_with_text_names_its_row():
    f = frame()
    f["y"] = f["y"].astype(object)
    f.loc[4, "y"] = "unknown"
    with pytest.raises(DataError, match=r"regression target 'y' must be numeric; got 'unknown' in row 5"):
        infer_schema(RawData("table", "y", "t.csv", frame=f), task="regression")
