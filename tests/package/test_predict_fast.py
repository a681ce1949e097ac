"""The array core: `Model.predict_columns` predicts what `Model.predict` does, and the block
encoding (numeric columns standardised as one matrix) gives the tensors the column-by-column
encoding gives, bit for bit, with the same errors.

Each model is trained once per module (a few epochs: the predictions need not be good, only
the same both ways): breast cancer with a decision threshold, a regression, a table of every
tabular feature type (a date, categories, numbers, a yes/no column and free text) and digits images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trustforge.data.features import feature_type
from trustforge.errors import DataError
from trustforge.package import Model
from trustforge.pipeline import run
from trustforge.settings import Settings
from trustforge.testing import CASES

QUIET = {"speed": False, "corruptions": False, "explain": False, "robustness": False}
STRIKES = Path(__file__).resolve().parents[2] / "examples" / "data" / "strikes.csv"


def mixed_table(n: int = 300) -> pd.DataFrame:
    """Strike reports with a yes/no column added among the numbers: date, categorical, numeric,
    binary and text columns (the numeric block, met first, holds columns on both sides of it)."""
    frame = pd.read_csv(STRIKES).head(n)
    frame.insert(frame.columns.get_loc("height"), "at_night", np.where(frame["time_of_day"] == "Night", "yes", "no"))
    return frame


def specs(root: Path) -> dict[str, dict]:
    mixed = root / "mixed.csv"
    mixed_table().to_csv(mixed, index=False)
    reviews = root / "reviews.csv"
    mixed_table().dropna(subset=["remarks"])[["remarks", "disrupted"]].to_csv(reviews, index=False)
    return {
        "cancer": {
            "name": "cancer-fast",
            "data": {"source": "builtin:breast_cancer", "split": {"test": 0.2, "validation": 0.2}},
            "model": {"kind": "mlp", "hidden": [16]},
            "train": {"max_epochs": 3, "batch_size": 32},
            "evaluate": {**QUIET, "threshold": "precision@recall=0.98"},
        },
        "diabetes": {
            "name": "diabetes-fast",
            "task": "regression",
            "data": {"source": "builtin:diabetes"},
            "model": {"kind": "mlp", "hidden": [16]},
            "train": {"max_epochs": 2, "batch_size": 32},
            "evaluate": QUIET,
        },
        "mixed": {
            "name": "mixed-fast",
            "data": {"source": f"csv:{mixed}", "target": "disrupted", "features": {"remarks": "text"}},
            "model": {"kind": "mlp", "hidden": [16]},
            "train": {"max_epochs": 2},
            "evaluate": QUIET,
        },
        "review": {  # a text input (data.text): its one column read as predict reads it
            "name": "review-fast",
            "data": {"source": f"csv:{reviews}", "target": "disrupted", "text": {"column": "remarks", "max_length": 16}},
            "model": {"kind": "mlp", "hidden": [16]},
            "train": {"max_epochs": 1},
            "evaluate": QUIET,
        },
        "series": {**CASES["rnn-series"], "name": "series-fast"},  # a forecast: predictions built by predict
        "digits": {
            "name": "digits-fast",
            "data": {"source": "builtin:digits"},
            "model": {"kind": "cnn", "channels": [4], "hidden": [16]},
            "train": {"max_epochs": 1, "batch_size": 64},
            "evaluate": QUIET,
        },
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Model]:
    root = tmp_path_factory.mktemp("fast")
    settings = Settings.from_env(root / "ws")
    out = {}
    for key, spec in specs(root).items():
        result = run(spec, settings=settings, progress=False, register=False)
        out[key] = Model.load(result.package, keyring=_keyring(settings))
    return out


def _keyring(settings: Settings):
    from trustforge.secure import Keyring

    return Keyring.load_or_init(settings.keys_dir)


def cancer_rows(model: Model, n: int) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    return frame[model.schema.input_names].iloc[:n].reset_index(drop=True)


def columns_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {str(c): frame[c].to_numpy() for c in frame.columns}


def assert_same(table: pd.DataFrame, columns: dict[str, np.ndarray]) -> None:
    """`predict_columns`' arrays are `predict`'s table, column by column, exactly."""
    assert list(columns) == [str(c) for c in table.columns]
    for name, values in columns.items():
        expected = table[name].to_numpy()
        assert len(values) == len(expected)
        if expected.dtype.kind == "f":
            np.testing.assert_array_equal(values, expected)
        else:
            assert values.tolist() == expected.tolist(), name


def column_by_column(model: Model, frame: pd.DataFrame) -> tuple[torch.Tensor, ...]:
    """The table encoding as it was before blocks: each column through its type's `encode`, in order."""
    pre = model.preprocessor
    floats, indices, own = [], [], []
    for c in pre.schema.columns:
        t = feature_type(c.kind)
        x = t.encode(pre.features[c.name], frame[c.name], where="input")
        (own if t.slot in ("tokens", "grid") else floats if t.slot == "float" else indices).append(x)
    n = len(frame)
    x_num = torch.from_numpy(np.concatenate(floats, axis=1).astype(np.float32) if floats else np.zeros((n, 0), np.float32))
    x_cat = torch.from_numpy(np.stack(indices, axis=1) if indices else np.zeros((n, 0), np.int64))
    return (x_num, x_cat, *(torch.from_numpy(np.ascontiguousarray(x)) for x in own))


def assert_same_tensors(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y)


# ---------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("rows", [1, 7, 200])
def test_breast_cancer_columns_predict_what_the_table_predicts(models, rows):
    model = models["cancer"]
    assert model.decision is not None  # the threshold decides, not the argmax
    frame = cancer_rows(model, rows)
    table = model.predict(frame)
    assert_same(table, model.predict_columns(columns_of(frame)))
    assert_same_tensors(model.preprocessor.encode_frame(frame), column_by_column(model, frame))
    # The decision is the threshold's: the positive class wherever its probability reaches it.
    pos, value = model.decision["positive_class"], model.decision["threshold"]["value"]
    np.testing.assert_array_equal(table["prediction"].to_numpy() == pos, table[f"proba_{pos}"].to_numpy() >= value)


def test_the_block_encoding_is_the_column_encoding_with_missing_values_and_mixed_number_types(models):
    model = models["cancer"]
    frame = cancer_rows(model, 50)
    names = model.schema.input_names
    frame[names[0]] = frame[names[0]].astype("float32")
    frame[names[1]] = (frame[names[1]] * 100).round().astype("int64")
    frame.loc[[3, 9], names[2]] = np.nan  # imputed with the training median
    frame[names[3]] = frame[names[3]].astype("Float64")
    frame.loc[4, names[3]] = pd.NA
    assert_same_tensors(model.preprocessor.encode_frame(frame), column_by_column(model, frame))
    assert_same(model.predict(frame), model.predict_columns({c: frame[c] for c in names}))
    assert model.imputed(frame) == {names[2]: 2, names[3]: 1}


def test_a_table_of_every_tabular_type_predicts_the_same_both_ways(models):
    model = models["mixed"]
    kinds = {c.kind for c in model.schema.columns}
    assert {"numeric", "categorical", "binary", "datetime", "text"} <= kinds, kinds
    frame = mixed_table(60).drop(columns=["disrupted"])
    frame.loc[[2, 5], "aircraft_mass"] = np.nan
    frame.loc[[1], "sky"] = None
    assert_same_tensors(model.preprocessor.encode_frame(frame), column_by_column(model, frame))
    table = model.predict(frame)
    assert_same(table, model.predict_columns(columns_of(frame)))
    assert_same(table, model.predict_columns({c: frame[c].tolist() for c in frame.columns}))  # lists, as a user may pass them


def test_regression_columns_predict_the_same_values(models):
    model = models["diabetes"]
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame[model.schema.input_names].iloc[:9]
    table = model.predict(frame)
    assert list(table.columns) == ["prediction"]
    assert_same(table, model.predict_columns(columns_of(frame)))


def test_digits_images_predict_the_same_as_an_array_and_as_columns(models):
    model = models["digits"]
    from sklearn.datasets import load_digits

    images = (load_digits().images[:16] / 16.0).astype(np.float32)[:, None]
    table = model.predict(images)
    columns = model.predict_columns({"image": images})
    assert_same(table, columns)
    assert columns["prediction"].tolist() == table["prediction"].tolist() and len(columns["prediction"]) == 16
    # a probe: no images raised IndexError; it is an empty table with the same columns
    empty = model.predict(images[:0])
    assert list(empty.columns) == list(table.columns) and len(empty) == 0


def test_a_forecast_from_columns_is_the_table_predict_builds(models):
    model = models["series"]
    values = 10 + np.sin(np.arange(48) / 12 * 2 * np.pi)
    table = model.predict(pd.DataFrame({"value": values}))
    assert "step" in table.columns and len(table) == model.spec.data.series.horizon
    assert_same(table, model.predict_columns({"value": values}))


def test_a_frame_with_its_own_index_is_encoded_the_same(models):
    model = models["cancer"]
    frame = cancer_rows(model, 5).set_axis([10, 11, 12, 13, 14], axis=0)
    assert_same_tensors(model.preprocessor.encode_frame(frame), column_by_column(model, frame))


# ---------------------------------------------------------------------------- the same checks, the same errors


def error_of(fn) -> str:
    with pytest.raises(DataError) as info:
        fn()
    return str(info.value)


def test_columns_are_checked_as_a_table_is(models):
    model = models["cancer"]
    frame = cancer_rows(model, 3)
    names = model.schema.input_names
    missing = {c: frame[c].to_numpy() for c in names[1:]}
    assert error_of(lambda: model.predict_columns(missing)) == error_of(lambda: model.predict(frame[names[1:]]))
    assert "missing columns" in error_of(lambda: model.predict_columns(missing))
    extra = {**columns_of(frame), "surprise": np.zeros(3)}
    assert error_of(lambda: model.predict_columns(extra)) == error_of(lambda: model.predict(frame.assign(surprise=0.0)))
    uneven = {**columns_of(frame), names[0]: np.zeros(2)}
    assert "different numbers of rows" in error_of(lambda: model.predict_columns(uneven))
    flat = {**columns_of(frame), names[0]: np.zeros((3, 2))}
    assert f"column {names[0]!r} must hold one value per row" in error_of(lambda: model.predict_columns(flat))


@pytest.mark.parametrize(
    "bad",
    [
        {"col": 2, "row": 1, "value": np.inf},  # refused: not finite
        {"col": 5, "row": 0, "value": -np.inf},
        {"col": 0, "row": 2, "value": 1e308},  # too far from the training values for float32
        {"col": 4, "row": 1, "value": "12,5"},  # text in a numeric column
        {"col": 3, "row": 0, "value": True},  # a boolean is not a number
    ],
)
def test_a_refused_value_gets_the_column_by_column_error(models, bad):
    model = models["cancer"]
    frame = cancer_rows(model, 3)
    name = model.schema.input_names[bad["col"]]
    if isinstance(bad["value"], (str, bool)):
        frame[name] = frame[name].astype(object)
    frame.loc[bad["row"], name] = bad["value"]
    with pytest.raises(DataError) as expected:
        column_by_column(model, frame)
    assert name in str(expected.value)
    assert error_of(lambda: model.predict(frame)) == str(expected.value)
    assert error_of(lambda: model.predict_columns(columns_of(frame))) == str(expected.value)


def test_the_first_refused_column_in_schema_order_is_the_one_named(models):
    # Two bad columns of different types: the error is the first column's, as one column at a time
    # gives it, although the numeric block (which holds the later bad column) is encoded first.
    model = models["mixed"]
    names = model.schema.input_names
    assert names.index("at_night") < names.index("height") and names.index("aircraft_mass") < names.index("at_night")
    frame = mixed_table(5).drop(columns=["disrupted"])
    frame["at_night"] = frame["at_night"].astype(object)
    frame.loc[1, "at_night"] = "maybe"
    frame.loc[2, "height"] = np.inf
    with pytest.raises(DataError) as expected:
        column_by_column(model, frame)
    assert "at_night" in str(expected.value)
    assert error_of(lambda: model.predict(frame)) == str(expected.value)
    assert error_of(lambda: model.predict_columns(columns_of(frame))) == str(expected.value)


def test_a_missing_value_under_the_error_policy_is_refused_both_ways(tmp_path):
    from sklearn.datasets import load_breast_cancer

    spec = {
        "name": "cancer-strict",
        "data": {"source": "builtin:breast_cancer", "missing": {"numeric": "error"}},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 1},
        "evaluate": QUIET,
    }
    settings = Settings.from_env(tmp_path / "ws")
    model = Model.load(run(spec, settings=settings, progress=False, register=False).package, keyring=_keyring(settings))
    frame = load_breast_cancer(as_frame=True).frame[model.schema.input_names].iloc[:4].reset_index(drop=True)
    frame.loc[2, model.schema.input_names[6]] = np.nan
    message = error_of(lambda: model.predict(frame))
    assert "data.missing.numeric: error" in message and model.schema.input_names[6] in message
    assert error_of(lambda: model.predict_columns(columns_of(frame))) == message


def test_predict_reads_a_mapping_of_columns_as_a_table(models):
    """`Model.predict({column: values})` predicts as the DataFrame of those columns does; columns
    of unequal lengths are one error naming the odd column."""
    model = models["cancer"]
    rows = cancer_rows(model, 4)
    columns = {c: rows[c].tolist() for c in rows.columns}
    assert model.predict(columns).equals(model.predict(rows))
    columns["mean area"] = columns["mean area"][:2]
    with pytest.raises(DataError, match="'mean area' has 2 values where the other columns have 4"):
        model.predict(columns)


def test_a_text_input_from_columns_predicts_what_the_table_predicts(models):
    """The server's path failed with KeyError for every text model trained with `data.text` (the
    table's column-by-column encoding knows no text input's state): no such model could be served."""
    model = models["review"]
    frame = mixed_table().dropna(subset=["remarks"]).head(25)[["remarks"]]
    assert_same(model.predict(frame), model.predict_columns(columns_of(frame)))
