"""Generalisation: corruptions, the corruption table and shift-set evaluation on trained models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import trustforge
from trustforge.data import RawData, load_source, prepare
from trustforge.errors import DataError
from trustforge.evaluate._shift import CORRUPTIONS, corrupt, corruption_table, shift_evaluation


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A digits CNN (1x8x8 images) trained once for the module, with its test split."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRUSTFORGE_HOME", str(tmp_path_factory.mktemp("ws")))
        r = trustforge.run(
            {"name": "d", "model": {"kind": "cnn", "channels": [8, 16]}, "train": {"max_epochs": 5}}, progress=False, register=False
        )
        return r.load_model(), prepare(r.spec).test_raw


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    """A breast-cancer MLP (30 numeric columns) trained once for the module, with its test split."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRUSTFORGE_HOME", str(tmp_path_factory.mktemp("ws")))
        r = trustforge.run(
            {"name": "b", "data": {"source": "builtin:breast_cancer", "target": "target"}, "model": {"kind": "mlp"}},
            progress=False,
            register=False,
        )
        return r.load_model(), prepare(r.spec).test_raw


def _image_raw(seed=0, n=20):
    rng = np.random.default_rng(seed)
    # Smooth-ish images with structure, so blur has something to remove.
    images = rng.random((n, 3, 12, 10)).astype(np.float32)
    return RawData("image", "label", "test", images=images, labels=np.array(["a", "b"] * (n // 2)), classes=["a", "b"])


def _table_raw(n=1000):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "x": rng.normal(5.0, 2.0, n),
            "k": rng.integers(0, 100, n),
            "flag": rng.integers(0, 2, n),
            "color": rng.choice(["red", "green", "blue"], n),
            "y": rng.choice(["yes", "no"], n),
        }
    )
    return RawData("table", "y", "test", frame=frame)


# ---------------------------------------------------------------------------- corruptions


@pytest.mark.parametrize("name", sorted(CORRUPTIONS["image"]))
def test_image_corruptions_change_inputs_keep_the_rest_and_grow_with_severity(name):
    raw = _image_raw()
    before = raw.images.copy()
    changes = []
    for severity in (1, 2, 3):
        out = corrupt(raw, name, severity, seed=3)
        assert out.images.shape == raw.images.shape and out.images.dtype == np.float32
        assert out.images.min() >= 0.0 and out.images.max() <= 1.0
        assert np.array_equal(out.labels, raw.labels) and out.classes == raw.classes
        assert np.array_equal(corrupt(raw, name, severity, seed=3).images, out.images), "deterministic by seed"
        changes.append(float(np.abs(out.images - before).mean()))
    assert np.array_equal(raw.images, before), "the input must not be mutated"
    assert changes[0] > 0 and changes[0] < changes[1] < changes[2], changes
    if name != "blur":  # blur has no randomness; the others differ by seed
        assert not np.array_equal(corrupt(raw, name, 2, seed=3).images, corrupt(raw, name, 2, seed=4).images)


def test_occlusion_patch_is_a_square_of_the_image_mean():
    raw = _image_raw(n=4)
    out = corrupt(raw, "occlusion", 2, seed=0)  # side round(0.4 * 10) = 4
    for i in range(4):
        changed = np.argwhere((out.images[i] != raw.images[i]).any(axis=0))
        (top, left), (bottom, right) = changed.min(0), changed.max(0)
        assert (bottom - top + 1, right - left + 1) == (4, 4)
        patch = out.images[i, :, top : bottom + 1, left : right + 1]
        assert np.allclose(patch, raw.images[i].mean(axis=(1, 2))[:, None, None])


def test_blur_keeps_a_constant_image_and_smooths_an_impulse():
    images = np.full((1, 1, 9, 9), 0.5, dtype=np.float32)
    raw = RawData("image", "label", "t", images=images, labels=np.array(["a"]))
    assert np.allclose(corrupt(raw, "blur", 3, seed=0).images, 0.5, atol=1e-6)
    images[0, 0, 4, 4] = 1.0
    out = corrupt(RawData("image", "label", "t", images=images, labels=np.array(["a"])), "blur", 1, seed=0).images[0, 0]
    assert out[4, 4] < 1.0 and out[4, 5] > 0.5 and np.isclose(out[4, 5], out[5, 4])


@pytest.mark.parametrize("name", sorted(CORRUPTIONS["table"]))
def test_table_corruptions_change_inputs_never_the_target(name):
    raw = _table_raw()
    before = raw.frame.copy()
    amounts = []
    for severity in (1, 2, 3):
        out = corrupt(raw, name, severity, seed=5)
        assert out.frame.shape == raw.frame.shape and list(out.frame.columns) == list(raw.frame.columns)
        assert out.frame["y"].equals(raw.frame["y"]), "the target must not change"
        pd.testing.assert_frame_equal(out.frame, corrupt(raw, name, severity, seed=5).frame)
        if name == "noise":
            assert out.frame["x"].dtype == np.float64
            assert out.frame["flag"].equals(raw.frame["flag"]), "binary columns keep their two values"
            assert out.frame["color"].equals(raw.frame["color"])
            amounts.append(float((out.frame["x"] - raw.frame["x"]).abs().mean()))
        else:
            inputs = out.frame.drop(columns="y")
            assert out.frame["y"].notna().all()
            amounts.append(float(inputs.isna().to_numpy().mean()))
    pd.testing.assert_frame_equal(raw.frame, before)
    assert 0 < amounts[0] < amounts[1] < amounts[2], amounts
    if name == "missing":  # close to the documented fractions 0.10, 0.25, 0.50
        assert np.allclose(amounts, [0.10, 0.25, 0.50], atol=0.03)
    else:  # the noise std is the documented fraction of the column's std (2.0)
        assert np.isclose(amounts[2] / amounts[0], 5.0, rtol=0.2)
    assert not corrupt(raw, name, 2, seed=5).frame.equals(corrupt(raw, name, 2, seed=6).frame)


def test_corrupt_refuses_unknown_names_and_severities():
    with pytest.raises(ValueError, match="gaussian_noise"):
        corrupt(_table_raw(), "gaussian_noise", 1, seed=0)
    with pytest.raises(ValueError, match="severity"):
        corrupt(_image_raw(), "blur", 4, seed=0)


# ---------------------------------------------------------------------------- trained models


def test_noise_lowers_digits_accuracy_and_the_table_reports_it(digits):
    model, test = digits
    clean = model.evaluate(test)["accuracy"]
    noisy = model.evaluate(corrupt(test, "gaussian_noise", 3, seed=0))["accuracy"]
    assert noisy < clean - 0.05, (clean, noisy)

    table = corruption_table(model.evaluate, test, metric="accuracy", seed=0)
    assert set(table) == {"metric", "lower_is_better", "clean", "rows"}
    assert table["metric"] == "accuracy" and table["lower_is_better"] is False
    assert table["clean"] == pytest.approx(clean)
    assert [(r["corruption"], r["severity"]) for r in table["rows"]] == [
        (n, s) for n in ("gaussian_noise", "blur", "occlusion") for s in (1, 2, 3)
    ]
    for row in table["rows"]:
        assert set(row) == {"corruption", "severity", "parameter", "level", "value", "drop"}
        assert row["drop"] == pytest.approx(table["clean"] - row["value"])
    noise3 = next(r for r in table["rows"] if r["corruption"] == "gaussian_noise" and r["severity"] == 3)
    assert noise3["value"] == pytest.approx(noisy) and noise3["drop"] > 0.05
    json.dumps(table)


def test_error_metrics_report_a_positive_drop_when_worse(cancer):
    model, test = cancer
    table = corruption_table(model.evaluate, test, metric="log_loss", severities=(3,), seed=0, corruptions=["noise"])
    (row,) = table["rows"]
    assert table["lower_is_better"] is True
    assert row["value"] > table["clean"] and row["drop"] == pytest.approx(row["value"] - table["clean"]) and row["drop"] > 0


def test_missing_cells_are_imputed_by_the_model(cancer):
    model, test = cancer
    table = corruption_table(model.evaluate, test, metric="accuracy", seed=1, corruptions=["missing"])
    assert [r["severity"] for r in table["rows"]] == [1, 2, 3]
    assert all(0.0 <= r["value"] <= 1.0 for r in table["rows"])
    assert table["rows"][2]["value"] < table["clean"]


def test_shift_evaluation_reports_both_sets(cancer):
    model, test = cancer
    # The "shift" is a real second set: the test rows measured with much noisier instruments.
    shifted = corrupt(test, "noise", 3, seed=7)
    shifted.origin = "csv:/home/someone/data/shift.csv"
    result = shift_evaluation(model.evaluate, shifted, test, model.schema)
    assert set(result) == {"source", "n", "in_distribution", "shifted", "delta"}
    assert result["source"] == "csv:shift.csv" and result["n"] == len(test)  # no local path in the evidence
    ind, sh = result["in_distribution"], result["shifted"]
    assert ind["accuracy"] == pytest.approx(model.evaluate(test)["accuracy"])
    assert sh["accuracy"] == pytest.approx(model.evaluate(shifted)["accuracy"])
    assert "confusion_matrix" not in sh and "labels" not in sh
    assert {"accuracy", "f1", "roc_auc", "log_loss"} <= set(result["delta"]) and "n" not in result["delta"]
    for k, d in result["delta"].items():
        assert d == pytest.approx(sh[k] - ind[k])
    assert result["delta"]["log_loss"] > 0 and sh["accuracy"] < ind["accuracy"]
    json.dumps(result)


def test_shift_set_from_a_csv_with_a_renamed_column_names_the_columns(cancer, tmp_path):
    model, test = cancer
    frame = test.frame.rename(columns={"mean radius": "radius_mean"})
    path = tmp_path / "shift.csv"
    frame.to_csv(path, index=False)
    raw = load_source(f"csv:{path}", target="target", image_size=(8, 8), channels=1, seed=0)
    with pytest.raises(DataError) as err:
        shift_evaluation(model.evaluate, raw, test, model.schema)
    msg = str(err.value)
    assert str(path) in msg and "missing columns ['mean radius']" in msg and "unexpected columns ['radius_mean']" in msg

    raw.frame = raw.frame.drop(columns=["target"]).rename(columns={"radius_mean": "mean radius"})
    with pytest.raises(DataError, match=r"missing columns \['target'\]"):
        shift_evaluation(model.evaluate, raw, test, model.schema)


def test_shift_images_of_another_shape_name_both_shapes(digits):
    model, test = digits
    raw = RawData("image", "label", "images:other", images=np.zeros((4, 3, 8, 8), np.float32), labels=np.array(["0", "1", "2", "3"]))
    with pytest.raises(DataError, match=r"shift set other: images have shape \(C, H, W\) \(3, 8, 8\); the model expects \(1, 8, 8\)"):
        shift_evaluation(model.evaluate, raw, test, model.schema)
    raw = RawData("image", "label", "x", images=np.zeros((2, 1, 8, 8), np.float32), labels=np.array(["0", "cat"]))
    with pytest.raises(DataError, match="'cat'"):
        shift_evaluation(model.evaluate, raw, test, model.schema)
    with pytest.raises(DataError, match="table data"):
        shift_evaluation(model.evaluate, _table_raw(), test, model.schema)


def test_shift_evaluation_on_images(digits):
    model, test = digits
    blurred = corrupt(test, "blur", 2, seed=0)
    result = shift_evaluation(model.evaluate, blurred, test, model.schema)
    assert result["delta"]["accuracy"] == pytest.approx(result["shifted"]["accuracy"] - result["in_distribution"]["accuracy"])
    assert result["delta"]["accuracy"] < 0


def test_every_kind_with_corruptions_says_which_of_its_fields_they_change():
    from trustforge.evaluate._shift import _CORRUPTED_INPUTS

    assert set(_CORRUPTED_INPUTS) == set(CORRUPTIONS)
    raw = RawData("text", "y", "t", frame=pd.DataFrame({"review": ["a fine film indeed", "dull"], "y": ["p", "n"]}), text="review")
    worse = corrupt(raw, "dropped_words", 3, seed=0)
    assert worse.text == "review" and worse.frame["y"].tolist() == ["p", "n"] and worse.origin == "t [dropped_words@3]"


def test_a_sequence_shift_set_is_checked_by_its_shape_and_labels():
    from trustforge.data import Schema

    schema = Schema("sequence", "classification", "y", classes=["0", "1"], sequence_shape=(6, 2))
    x = np.zeros((4, 6, 2), dtype=np.float32)
    report = shift_evaluation(
        lambda raw: {"accuracy": 1.0},
        RawData("sequence", "y", "t", sequences=x, labels=np.array(["0", "1"] * 2)),
        RawData("sequence", "y", "t", sequences=x, labels=np.array(["0"] * 4)),
        schema,
    )
    assert report["n"] == 4 and report["delta"]["accuracy"] == 0.0
    with pytest.raises(DataError, match=r"sequences have shape \(T, F\) \(5, 2\); the model expects \(6, 2\)"):
        shift_evaluation(lambda raw: {}, RawData("sequence", "y", "t", sequences=x[:, :5], labels=np.array(["0"] * 4)), None, schema)
    with pytest.raises(DataError, match=r"labels \['7'\] are not classes"):
        shift_evaluation(lambda raw: {}, RawData("sequence", "y", "t", sequences=x, labels=np.array(["7"] * 4)), None, schema)
