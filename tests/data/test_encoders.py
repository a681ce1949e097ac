"""Tests for the encoders (`Preprocessor`) and for `prepare`, the data stage end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from trustforge.data import Preprocessor, RawData, infer_schema, label_strings, load_source, prepare, split_indices
from trustforge.errors import DataError
from trustforge.spec import TaskSpec


def table(frame: pd.DataFrame, target: str = "y") -> RawData:
    return RawData("table", target, "train.csv", frame=frame)


def fitted(frame: pd.DataFrame, *, task: str = "classification", numeric: str = "median", categorical: str = "category") -> Preprocessor:
    schema, cleaned = infer_schema(table(frame), task=task, features=None, drop=[], max_categories=50)
    return Preprocessor(schema, numeric_missing=numeric, categorical_missing=categorical).fit(cleaned)


def mixed(n: int = 40, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 12, n).round(1),
            "city": rng.choice(["paris", "rome", "oslo"], n),
            "smoker": rng.choice(["yes", "no"], n),
            "y": np.tile(["low", "high"], n // 2),
        }
    )


def round_trip(pre: Preprocessor) -> Preprocessor:
    """Through the package's forms: the meta as JSON text, the tensors as safetensors bytes."""
    meta, tensors = pre.state()
    text = json.dumps(meta)
    blob = save_tensors(tensors)
    return Preprocessor.from_state(json.loads(text), load_tensors(blob))


def spec(*, task: str = "classification", seed: int = 7, **data) -> TaskSpec:
    return TaskSpec.model_validate({"task": task, "data": data, "model": {"kind": "mlp"}, "train": {"seed": seed}})


# ---------------------------------------------------------------------------- tables


def test_table_encoding_shapes_and_values() -> None:
    frame = mixed()
    pre = fitted(frame)
    x_num, x_cat = pre.encode_frame(frame)
    assert x_num.dtype == torch.float32 and x_num.shape == (40, 2)  # age, smoker
    assert x_cat.dtype == torch.int64 and x_cat.shape == (40, 1)  # city
    np.testing.assert_allclose(x_num.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_num.std(0, unbiased=False).numpy(), 1.0, atol=1e-5)
    assert pre.vocabularies["city"] == ["<unknown>", "<missing>", "oslo", "paris", "rome"]
    assert x_cat[:, 0].tolist() == [pre.vocabularies["city"].index(c) for c in frame["city"]]
    # yes is the positive value of smoker: its rows encode above the no rows.
    smoker = x_num[:, 1].numpy()
    assert smoker[frame["smoker"] == "yes"].min() > smoker[frame["smoker"] == "no"].max()
    target = pre.encode_target(table(frame))
    assert target.dtype == torch.int64 and target.tolist() == [pre.schema.classes.index(v) for v in frame["y"]]


@pytest.mark.parametrize(("low", "high"), [(2, 10), (-1, 1), (False, True), ("no", "yes"), ("N", "Y")])
def test_binary_positive_value_is_the_larger_one(low, high) -> None:
    frame = mixed().assign(b=[low, high] * 10 + [high] * 20)
    pre = fitted(frame)
    assert pre.binary_values["b"] == [str(low), str(high)]
    x = pre.encode_frame(pd.DataFrame({"age": [1.0, 1.0], "city": ["rome"] * 2, "smoker": ["no"] * 2, "b": [low, high]}))[0]
    col = pre.schema.numeric.index("b")
    assert x[1, col] > x[0, col]


def test_unseen_category_is_index_zero_and_missing_its_own_index() -> None:
    pre = fitted(mixed())
    frame = pd.DataFrame({"age": [30.0, 31.0, 32.0], "city": ["tokyo", None, "rome"], "smoker": ["no", "yes", "no"]})
    x_cat = pre.encode_frame(frame)[1]
    assert x_cat[:, 0].tolist() == [0, 1, pre.vocabularies["city"].index("rome")]


def test_binary_column_with_an_unexpected_value_names_the_column() -> None:
    pre = fitted(mixed())
    frame = pd.DataFrame({"age": [30.0, 31.0], "city": ["rome", "oslo"], "smoker": ["yes", "sometimes"]})
    with pytest.raises(DataError, match=r"new\.csv: column 'smoker' is binary \('no'/'yes'\); got 'sometimes' in row 2"):
        pre.encode_frame(frame, where="new.csv")


def test_text_in_a_numeric_column_names_the_column_and_row() -> None:
    pre = fitted(mixed())
    frame = pd.DataFrame({"age": ["30", "31.5", "forty"], "city": ["rome"] * 3, "smoker": ["no"] * 3})
    with pytest.raises(DataError, match=r"column 'age' must be numeric; got 'forty' in row 3"):
        pre.encode_frame(frame)
    # Numbers written as text are fine.
    assert pre.encode_frame(frame.iloc[:2])[0].shape == (2, 2)


def test_infinite_numbers_are_refused_with_column_and_row() -> None:
    pre = fitted(mixed())
    frame = pd.DataFrame({"age": [30.0, np.inf], "city": ["rome"] * 2, "smoker": ["no"] * 2})
    with pytest.raises(DataError, match=r"column 'age' holds inf in row 2"):
        pre.encode_frame(frame)


def test_columns_are_checked_against_the_schema() -> None:
    pre = fitted(mixed())
    with pytest.raises(DataError, match=r"missing columns \['smoker'\]"):
        pre.encode_frame(pd.DataFrame({"age": [1.0], "city": ["rome"]}))
    with pytest.raises(DataError, match=r"unexpected columns \['zip'\]"):
        pre.encode_frame(pd.DataFrame({"age": [1.0], "city": ["rome"], "smoker": ["no"], "zip": [1]}))
    # The target may come along; columns the spec dropped may too.
    pre.encode_frame(pd.DataFrame({"age": [1.0], "city": ["rome"], "smoker": ["no"], "y": ["low"]}))
    frame = mixed().assign(zip=range(40))
    schema, cleaned = infer_schema(table(frame), task="classification", features=None, drop=["zip"], max_categories=50)
    pre = Preprocessor(schema).fit(cleaned)
    assert pre.encode_frame(frame)[0].shape == (40, 2)


def test_unknown_target_class_is_refused() -> None:
    pre = fitted(mixed())
    with pytest.raises(DataError, match=r"target values \['medium'\]"):
        pre.encode_target(table(mixed().assign(y="medium")))


# ---------------------------------------------------------------------------- missing values


def with_gaps() -> pd.DataFrame:
    frame = mixed()
    frame.loc[[0, 1, 2], "age"] = np.nan
    frame["city"] = frame["city"].astype(object)
    frame.loc[[3, 4], "city"] = None
    # rome is the most frequent city by a clear margin.
    frame.loc[10:30, "city"] = "rome"
    return frame


@pytest.mark.parametrize("policy", ["median", "mean", "zero"])
def test_numeric_missing_policies(policy: str) -> None:
    frame = with_gaps()
    pre = fitted(frame, numeric=policy)
    present = frame["age"].dropna()
    middle = np.sort(present.to_numpy())[(len(present) - 20) // 2 :][:20].mean()  # the median as stored: the mean of the 20 middle values
    want = {"median": middle, "mean": present.mean(), "zero": 0.0}[policy]
    assert policy != "median" or abs(middle - present.median()) < 0.1 * present.std()
    assert pre.features["age"].fill == pytest.approx(want)
    x = pre.encode_frame(pd.DataFrame({"age": [np.nan], "city": ["rome"], "smoker": ["no"]}))[0]
    mean, std = pre.features["age"].mean, pre.features["age"].std
    assert x[0, 0].item() == pytest.approx((want - mean) / std, rel=1e-5, abs=1e-6)
    assert not torch.isnan(pre.encode_frame(frame)[0]).any()


def test_numeric_missing_error_policy() -> None:
    with pytest.raises(DataError, match=r"column 'age' has 3 missing values \(data.missing.numeric: error\)"):
        fitted(with_gaps(), numeric="error")
    pre = fitted(mixed(), numeric="error")
    with pytest.raises(DataError, match=r"input\.csv: column 'age' has 1 missing values"):
        pre.encode_frame(pd.DataFrame({"age": [np.nan], "city": ["rome"], "smoker": ["no"]}), where="input.csv")


def test_categorical_missing_category_policy() -> None:
    pre = fitted(with_gaps(), categorical="category")
    x_cat = pre.encode_frame(with_gaps())[1][:, 0]
    assert x_cat[3].item() == x_cat[4].item() == 1  # <missing>, a category of its own
    assert (x_cat[5:] >= 2).all()


def test_categorical_missing_most_frequent_policy() -> None:
    pre = fitted(with_gaps(), categorical="most_frequent")
    rome = pre.vocabularies["city"].index("rome")
    x_cat = pre.encode_frame(with_gaps())[1][:, 0]
    assert x_cat[3].item() == x_cat[4].item() == rome
    unseen = pd.DataFrame({"age": [1.0, 2.0], "city": [None, np.nan], "smoker": ["no", "no"]})
    assert pre.encode_frame(unseen)[1][:, 0].tolist() == [rome, rome]
    # The imputed value is part of the saved state.
    assert round_trip(pre).encode_frame(unseen)[1][:, 0].tolist() == [rome, rome]


def test_categorical_missing_error_policy() -> None:
    pre = fitted(with_gaps(), categorical="error")
    with pytest.raises(DataError, match=r"column 'city' has 2 missing values \(data.missing.categorical: error\)"):
        pre.encode_frame(with_gaps())
    assert pre.encode_frame(mixed())[1].shape == (40, 1)


def test_missing_binary_values_take_the_most_frequent_value() -> None:
    frame = mixed()
    frame["smoker"] = ["yes"] * 30 + ["no"] * 10
    frame["smoker"] = frame["smoker"].astype(object)
    frame.loc[0, "smoker"] = None
    pre = fitted(frame)
    col = pre.schema.numeric.index("smoker")
    x = pre.encode_frame(pd.DataFrame({"age": [1.0, 1.0], "city": ["rome"] * 2, "smoker": [None, "yes"]}))[0]
    assert x[0, col] == x[1, col]


# ---------------------------------------------------------------------------- state


def test_state_round_trips_through_json_and_safetensors() -> None:
    frame = with_gaps().assign(member=[True, False] * 20)
    pre = fitted(frame, numeric="mean", categorical="most_frequent")
    back = round_trip(pre)
    assert back.schema == pre.schema
    probe = pd.DataFrame(
        {
            "age": [np.nan, 18.0, 90.0],
            "city": ["tokyo", None, "oslo"],
            "smoker": ["yes", None, "no"],
            "member": [True, False, None],
        }
    )
    for a, b in zip(pre.encode_frame(frame), back.encode_frame(frame)):
        assert torch.equal(a, b)
    for a, b in zip(pre.encode_frame(probe), back.encode_frame(probe)):
        assert torch.equal(a, b)
    assert torch.equal(pre.encode_target(table(frame)), back.encode_target(table(frame)))


def test_image_and_regression_state_round_trip() -> None:
    images = np.random.default_rng(0).random((20, 3, 5, 5), dtype=np.float32)
    raw = RawData("image", "label", "x", images=images, labels=np.array(["a", "b"] * 10))
    schema, _ = infer_schema(raw, task="classification", features=None, drop=[], max_categories=50)
    pre = Preprocessor(schema).fit(raw)
    assert torch.equal(round_trip(pre).encode_images(images), pre.encode_images(images))

    frame = mixed().assign(y=np.linspace(100.0, 300.0, 40))
    pre = fitted(frame, task="regression")
    back = round_trip(pre)
    assert torch.equal(back.encode_target(table(frame)), pre.encode_target(table(frame)))
    z = np.array([-1.0, 0.0, 2.5])
    np.testing.assert_array_equal(back.decode_regression(z), pre.decode_regression(z))


# ---------------------------------------------------------------------------- images and targets


def test_image_statistics_are_per_channel() -> None:
    rng = np.random.default_rng(0)
    images = np.stack(
        [
            rng.uniform(0.0, 0.2, (30, 6, 6)),  # dark red
            rng.uniform(0.4, 1.0, (30, 6, 6)),  # bright, spread green
            np.full((30, 6, 6), 0.5),  # constant blue
        ],
        axis=1,
    ).astype(np.float32)  # (N, C, H, W)
    raw = RawData("image", "label", "x", images=images, labels=np.array(["a", "b", "c"] * 10))
    schema, _ = infer_schema(raw, task="classification", features=None, drop=[], max_categories=50)
    pre = Preprocessor(schema).fit(raw)
    np.testing.assert_allclose(pre.input_state.mean.numpy(), images.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(pre.input_state.std.numpy()[:2], images.std(axis=(0, 2, 3), ddof=1)[:2], rtol=1e-4)
    assert pre.input_state.std[2].item() == 1.0  # a constant channel is not divided by zero
    x = pre.encode_images(images)
    assert x.shape == (30, 3, 6, 6) and x.dtype == torch.float32
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x[:, :2].std(dim=(0, 2, 3)).numpy(), 1.0, atol=1e-4)
    with pytest.raises(DataError, match=r"shape \(1, 6, 6\).*\(3, 6, 6\)"):
        pre.encode_images(images[:, :1])
    with pytest.raises(DataError, match=r"must be \(N, C, H, W\), N images of \(3, 6, 6\); got an array of shape \(3, 3\)"):
        pre.encode_images(np.zeros((3, 3), np.float32))  # it said "images have shape (3,)"


def test_regression_target_is_standardised_and_decoded_back() -> None:
    y = np.random.default_rng(3).normal(250.0, 40.0, 40)
    frame = mixed().assign(y=y)
    pre = fitted(frame, task="regression")
    z = pre.encode_target(table(frame))
    assert z.dtype == torch.float32
    assert z.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert z.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(pre.decode_regression(z.numpy().astype(np.float64)), y, rtol=1e-6)
    with pytest.raises(DataError, match="target 'y' has non-numeric or missing values"):
        pre.encode_target(table(frame.assign(y=["a"] * 40)))


# ---------------------------------------------------------------------------- prepare


def test_encoders_are_fitted_on_the_training_split_only(tmp_path: Path) -> None:
    n = 80
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rng.normal(0.0, 1.0, n),
            "color": rng.choice(["red", "green", "blue"], n),
            "y": np.tile(["a", "b"], n // 2),
        }
    )
    tr, va, te = split_indices(n, test=0.2, validation=0.1, stratify=label_strings(frame["y"]), seed=11)
    frame.loc[te, "x"] += 1000.0  # a training-only scaler cannot see these
    frame.loc[te[0], "color"] = "purple"  # a value only the test split holds
    frame.to_csv(tmp_path / "d.csv", index=False)
    p = prepare(spec(source=f"csv:{tmp_path / 'd.csv'}", target="y", drop=["id"], seed=11))

    assert sorted(p.test_raw.frame["id"]) == te.tolist()  # the same split as split_indices
    pre = p.preprocessor
    assert "purple" not in pre.vocabularies["color"]
    row = p.test_raw.frame["id"].tolist().index(te[0])
    assert p.test.inputs[1][row, 0].item() == 0
    assert (np.delete(p.test.inputs[1][:, 0].numpy(), row) >= 2).all()
    x_col = pre.schema.numeric.index("x")
    assert pre.features["x"].mean == pytest.approx(frame.loc[tr, "x"].mean())
    assert pre.features["x"].std == pytest.approx(frame.loc[tr, "x"].std(ddof=0))
    assert p.test.inputs[0][:, x_col].min() > 100  # the test rows stay far out


def test_prepare_a_csv_with_mixed_types_and_missing_values(tmp_path: Path) -> None:
    n = 120
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "id": [f"c{i:04d}" for i in range(n)],
            "age": rng.normal(45.0, 15.0, n).round(1),
            "income": rng.integers(1000, 9000, n),
            "city": rng.choice(["paris", "rome", "oslo", "lima"], n).astype(object),
            "smoker": rng.choice(["yes", "no"], n).astype(object),
            "member": rng.choice([True, False], n),
            "risk": rng.choice(["low", "mid", "high"], n).astype(object),
        }
    )
    frame.loc[rng.choice(n, 9, replace=False), "age"] = np.nan
    frame.loc[rng.choice(n, 7, replace=False), "city"] = None
    frame.loc[rng.choice(n, 5, replace=False), "smoker"] = None
    frame.loc[[3, 50], "risk"] = None
    frame.to_csv(tmp_path / "customers.csv", index=False)

    p = prepare(spec(source=f"csv:{tmp_path / 'customers.csv'}", target="risk", drop=["id"]))
    s = p.schema
    assert {c.name: c.kind for c in s.columns} == {
        "age": "numeric",
        "income": "numeric",
        "city": "categorical",
        "smoker": "binary",
        "member": "binary",
    }
    assert s.dropped_rows == 2 and s.rows == 118 and s.classes == ["high", "low", "mid"] and s.ignored == ["id"]
    assert (len(p.train), len(p.validation), len(p.test)) == (82, 12, 24)
    for part in (p.train, p.validation, p.test):
        x_num, x_cat = part.inputs
        assert x_num.dtype == torch.float32 and x_num.shape == (len(part), 4) and torch.isfinite(x_num).all()
        assert x_cat.dtype == torch.int64 and x_cat.shape == (len(part), 1)
        assert ((x_cat >= 0) & (x_cat < s.columns[2].vocabulary)).all()
        assert part.target.dtype == torch.int64 and part.target.shape == (len(part),)
        assert set(part.target.tolist()) == {0, 1, 2}
    all_cats = torch.cat([p.train.inputs[1], p.validation.inputs[1], p.test.inputs[1]])
    kept = frame[frame["risk"].notna()]
    assert (all_cats == 1).sum().item() == kept["city"].isna().sum() > 0  # every missing city is <missing>
    assert len(p.data_digest) == 64 and len(p.test_raw) == 24
    assert not p.augment  # tables are never augmented


def test_prepare_regression_standardises_the_target() -> None:
    p = prepare(spec(source="builtin:diabetes", target="target", task="regression"))
    assert p.schema.task == "regression" and p.train.target.dtype == torch.float32
    assert p.train.target.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert p.train.target.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    decoded = p.preprocessor.decode_regression(p.test.target.numpy().astype(np.float64))
    np.testing.assert_allclose(decoded, p.test_raw.frame["target"].to_numpy(), rtol=1e-5)


def test_prepare_builtin_digits_and_its_augmentation() -> None:
    p = prepare(spec(source="builtin:digits", augment={"shift": 2, "hflip": True}))
    (x,) = p.train.inputs
    assert x.dtype == torch.float32 and x.shape == (len(p.train), 1, 8, 8)
    assert p.train.target.dtype == torch.int64 and set(p.train.target.tolist()) == set(range(10))
    assert len(p.train) + len(p.validation) + len(p.test) == 1797
    assert p.augment.shift == 2 and p.augment.hflip


def test_prepare_an_image_folder_with_the_spec_size_and_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("ok", "defect"):
        (tmp_path / "parts" / cls).mkdir(parents=True)
        for i in range(10):  # 20 images: the 10 % validation split holds a row of each class
            pixels = rng.integers(0, 255, (9 + i, 7, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "parts" / cls / f"{i}.png")
    p = prepare(spec(source=f"images:{tmp_path / 'parts'}", image={"size": [10, 12], "channels": 1}))
    assert p.schema.image_shape == (1, 10, 12) and p.schema.classes == ["defect", "ok"]
    for part in (p.train, p.validation, p.test):
        assert part.inputs[0].shape == (len(part), 1, 10, 12) and part.inputs[0].dtype == torch.float32
    assert len(p.train) + len(p.validation) + len(p.test) == 20


def test_prepare_names_a_missing_target_column(tmp_path: Path) -> None:
    mixed().to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"d\.csv: no column 'label'"):
        prepare(spec(source=f"csv:{tmp_path / 'd.csv'}", target="label"))


def test_load_source_and_prepare_agree_on_builtin_tables() -> None:
    raw = load_source("builtin:iris", target=None, image_size=(8, 8), channels=1, seed=0)
    p = prepare(spec(source="builtin:iris", target="target"), raw=raw)
    assert p.schema.classes == ["setosa", "versicolor", "virginica"]
    assert p.train.inputs[0].shape[1] == 4 and p.train.inputs[1].shape[1] == 0
