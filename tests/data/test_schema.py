"""Tests for schema inference: column kinds, target cleaning, classes and the saved form."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from trustforge.data import Preprocessor, RawData, Schema, infer_schema, label_strings, load_source
from trustforge.errors import DataError


def table(frame: pd.DataFrame, target: str = "y") -> RawData:
    return RawData("table", target, "t.csv", frame=frame)


def infer(frame: pd.DataFrame, *, task: str = "classification", features=None, drop=(), max_categories: int = 50, target: str = "y"):
    return infer_schema(table(frame, target), task=task, features=features, drop=list(drop), max_categories=max_categories)


def mixed(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 12, n).round(1),
            "visits": rng.integers(0, 9, n),
            "city": rng.choice(["paris", "rome", "oslo", "lima"], n),
            "smoker": rng.choice(["yes", "no"], n),
            "member": rng.choice([True, False], n),
            "flag": rng.choice([0, 1], n),
            "y": rng.choice(["low", "high"], n),
        }
    )


def kinds(schema: Schema) -> dict[str, str]:
    return {c.name: c.kind for c in schema.columns}


def test_column_kinds_are_inferred() -> None:
    schema, _ = infer(mixed())
    assert kinds(schema) == {
        "age": "numeric",
        "visits": "numeric",
        "city": "categorical",
        "smoker": "binary",
        "member": "binary",
        "flag": "binary",
    }
    assert schema.modality == "table" and schema.task == "classification" and schema.target == "y"
    assert schema.numeric == ["age", "visits", "smoker", "member", "flag"]
    assert schema.categorical == ["city"]
    assert schema.classes == ["high", "low"] and schema.rows == 40 and schema.dropped_rows == 0


def test_binary_columns_with_missing_values_stay_binary() -> None:
    frame = mixed()
    frame["smoker"] = frame["smoker"].astype(object)
    frame.loc[[1, 2], "smoker"] = None
    frame["member"] = frame["member"].astype(object)
    frame.loc[3, "member"] = None
    schema, _ = infer(frame)
    assert kinds(schema)["smoker"] == "binary" and kinds(schema)["member"] == "binary"
    assert {c.name: c.missing for c in schema.columns}["smoker"] == 2


def test_text_column_with_too_many_values_is_refused_by_name() -> None:
    frame = mixed()
    frame["name"] = [f"person-{i}" for i in range(len(frame))]
    with pytest.raises(DataError, match=r"column 'name' has 40 distinct short text values.*max_categories 30.*data.features"):
        infer(frame, max_categories=30)
    schema, _ = infer(frame, max_categories=40)
    assert kinds(schema)["name"] == "categorical"
    schema, _ = infer(frame, drop=["name"], max_categories=30)
    assert "name" not in schema.input_names and schema.ignored == ["name"]


def test_rows_without_a_target_are_dropped_and_counted(caplog) -> None:
    frame = mixed()
    frame.loc[[0, 5, 6], "y"] = None
    frame.loc[[2, 5], "age"] = np.nan
    with caplog.at_level(logging.WARNING, logger="trustforge.data"):
        schema, cleaned = infer(frame)
    assert schema.dropped_rows == 3 and schema.rows == 37
    assert [r.getMessage() for r in caplog.records] == ["data: 3 rows have no value of the target 'y'; left out"]  # said at train
    assert len(cleaned) == 37 and cleaned.frame["y"].notna().all()
    assert cleaned.frame.index.tolist() == list(range(37))
    assert cleaned.rows.tolist() == [i for i in range(40) if i not in (0, 5, 6)]  # each row's place in the file, for messages
    # Missing inputs are counted after the target-less rows are gone (row 5 went with its target).
    assert {c.name: c.missing for c in schema.columns}["age"] == 1


def test_features_and_drop_choose_the_inputs() -> None:
    frame = mixed()
    schema, cleaned = infer(frame, features=["city", "age"])
    assert schema.input_names == ["city", "age"]
    assert schema.ignored == ["visits", "smoker", "member", "flag"]
    assert list(cleaned.frame.columns) == list(frame.columns)
    schema, _ = infer(frame, drop=["visits", "flag"])
    assert schema.input_names == ["age", "city", "smoker", "member"] and schema.ignored == ["visits", "flag"]
    with pytest.raises(DataError, match="nope"):
        infer(frame, drop=["nope"])
    with pytest.raises(DataError, match=r"data\.features\.y names the target 'y' \(data\.target\); the target is not a feature"):
        infer(frame, features=["age", "y"])
    with pytest.raises(DataError, match="no feature columns"):
        infer(frame[["y"]])


def test_unusable_tables_are_refused() -> None:
    frame = mixed()
    frame["empty"] = np.nan
    with pytest.raises(DataError, match="column 'empty' has no values"):
        infer(frame)
    with pytest.raises(DataError, match="only 9 rows"):
        infer(mixed(9))
    one_class = mixed().assign(y="same")
    with pytest.raises(DataError, match="has 1 class"):
        infer(one_class)
    with pytest.raises(DataError, match="regression target 'y' must be numeric"):
        infer(mixed(), task="regression")


def test_classes_sort_naturally_and_keep_a_source_order() -> None:
    frame = mixed(60)
    frame["y"] = np.tile([2, 10, 1], 20)
    schema, _ = infer(frame)
    assert schema.classes == ["1", "2", "10"]
    raw = load_source("builtin:breast_cancer", target=None, image_size=(8, 8), channels=1, seed=0)
    schema, _ = infer_schema(raw, task="classification", features=None, drop=[], max_categories=50)
    assert schema.classes == ["malignant", "benign"]
    assert len(schema.columns) == 30 and all(c.kind == "numeric" for c in schema.columns)


def test_regression_schema_has_no_classes() -> None:
    frame = mixed().assign(y=np.linspace(0, 1, 40))
    schema, _ = infer(frame, task="regression")
    assert schema.task == "regression" and schema.classes is None


def test_label_strings_name_one_class_one_way() -> None:
    assert label_strings(pd.Series([1.0, 0.0, np.nan])).tolist()[:2] == ["1", "0"]
    assert label_strings(np.array([1, 0])).tolist() == ["1", "0"]
    assert label_strings(pd.Series(["1", "0"])).tolist() == ["1", "0"]
    assert label_strings(pd.Series([0.5, 1.0])).tolist() == ["0.5", "1.0"]


def test_image_schema() -> None:
    raw = load_source("builtin:digits", target=None, image_size=(8, 8), channels=1, seed=0)
    schema, same = infer_schema(raw, task="classification", features=None, drop=[], max_categories=50)
    assert same is raw
    assert schema.modality == "image" and schema.image_shape == (1, 8, 8)
    assert schema.classes == [str(i) for i in range(10)] and schema.rows == 1797
    with pytest.raises(DataError, match="classification"):
        infer_schema(raw, task="regression", features=None, drop=[], max_categories=50)


def test_fitted_schema_round_trips_through_json() -> None:
    frame = mixed()
    frame.loc[[4, 8], "y"] = None
    frame.loc[3, "city"] = None
    schema, cleaned = infer(frame, drop=["visits"])
    Preprocessor(schema).fit(cleaned)  # fills in the vocabulary sizes
    assert schema.columns[1].vocabulary == 6  # <unknown>, <missing> and four cities
    d = json.loads(json.dumps(schema.to_dict()))
    back = Schema.from_dict(d)
    assert back == schema
    assert back.dropped_rows == 2 and back.ignored == ["visits"]
    assert Schema.from_dict(back.to_dict()).to_dict() == d

    raw = load_source("builtin:digits", target=None, image_size=(8, 8), channels=1, seed=0)
    image_schema, _ = infer_schema(raw, task="classification", features=None, drop=[], max_categories=50)
    back = Schema.from_dict(json.loads(json.dumps(image_schema.to_dict())))
    assert back == image_schema and back.image_shape == (1, 8, 8)
