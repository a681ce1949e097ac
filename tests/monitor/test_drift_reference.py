"""Reference statistics: computed from the training split, saved in the signed package, no rows."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

import trustforge
from trustforge.data import RawData, Schema, infer_schema, prepare
from trustforge.errors import DataError, IntegrityError
from trustforge.evaluate import outputs_to_proba
from trustforge.monitor import DriftMonitor, check_drift, featurize, reference_statistics
from trustforge.monitor._reference import MIN_ROWS
from trustforge.package import Model
from trustforge.package._format import encode_manifest

QUICK = {"speed": False, "corruptions": False, "explain": False, "robustness": False}


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    """A breast-cancer MLP (3 epochs) and its prepared data, trained once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRUSTFORGE_HOME", str(tmp_path_factory.mktemp("ws")))
        r = trustforge.run(
            {
                "name": "cancer",
                "data": {"source": "builtin:breast_cancer", "target": "target"},
                "model": {"kind": "mlp"},
                "train": {"max_epochs": 3},
                "evaluate": QUICK,
            },
            progress=False,
            register=False,
        )
        return r, prepare(r.spec)


def test_the_package_holds_statistics_of_the_training_split_and_validation_predictions(cancer):
    result, data = cancer
    model = result.load_model()
    ref = model.manifest["monitor"]["reference"]
    train = data.train_raw.frame
    assert list(ref["features"]) == model.schema.input_names  # all 30 columns, in model order
    # The predictions are the validation split's only: the test split, which users check for drift, never.
    assert ref["rows"] == {"inputs": len(train), "predictions": len(data.validation)}
    assert ref["predictions_from"] == "validation" and "notes" not in ref
    for name, stats in ref["features"].items():
        assert stats["kind"] == "numeric" and stats["count"] == len(train) and stats["missing"] == 0
        assert "quantiles" not in stats and "min" not in stats and "max" not in stats  # no training value kept
        v = np.sort(train[name].to_numpy())
        # Blocks of at least k rows; each cut lies strictly between two neighbouring training
        # values, and the counts are exact.
        assert sum(stats["counts"]) == len(v) and min(stats["counts"]) >= MIN_ROWS
        below = np.searchsorted(v, stats["cuts"], side="right")
        assert below.tolist() == np.cumsum(stats["counts"])[:-1].tolist()
        assert not np.isin(stats["cuts"], v).any()
        assert len(stats["centres"]) == len(stats["counts"]) == len(stats["cuts"]) + 1
        assert stats["mean"] == pytest.approx(train[name].mean(), rel=1e-6)
        assert sum(stats["bins"]["fractions"]) == pytest.approx(1.0, abs=1e-5)
        assert 7 <= len(stats["bins"]["edges"]) <= 9 and set(stats["bins"]["edges"]) <= set(stats["cuts"])
    pred = ref["prediction"]
    assert pred["kind"] == "categorical" and set(pred["counts"]) == {"malignant", "benign"}
    assert sum(pred["counts"].values()) == ref["rows"]["predictions"]
    # They are the packaged model's predictions on the validation split.
    with torch.no_grad():
        out = model.module(*data.validation.inputs)
    labels = np.array(model.classes)[outputs_to_proba(out, 2).argmax(axis=1)]
    assert pred["counts"] == dict(Counter(labels.tolist()))
    size = len(json.dumps(ref))
    assert size < 40_000, size  # 30 columns x ~22 blocks: ~25 KB of JSON (was ~107 KB with every value)


def test_without_a_validation_split_the_predictions_are_the_training_splits_and_say_so(tmp_path, monkeypatch):
    """The breast-cancer example has no validation split: the reference's predictions were the
    test split's own, so test windows were compared with themselves. Now they are the training
    split's, marked optimistic."""
    monkeypatch.setenv("TRUSTFORGE_HOME", str(tmp_path / "ws"))
    spec = {
        "name": "cancer-noval",
        "data": {"source": "builtin:breast_cancer", "target": "target", "split": {"test": 0.2, "validation": 0.0}},
        "model": {"kind": "mlp"},
        "train": {"max_epochs": 2, "early_stopping": None},
        "evaluate": QUICK,
    }
    result = trustforge.run(spec, progress=False, register=False)
    data = prepare(result.spec)
    model = result.load_model()
    ref = model.manifest["monitor"]["reference"]
    assert data.validation is None and ref["predictions_from"] == "train"
    assert ref["rows"]["predictions"] == len(data.train) and "optimistic" in ref["notes"]["prediction"]
    with torch.no_grad():
        out = model.module(*data.train.inputs)
    labels = np.array(model.classes)[outputs_to_proba(out, 2).argmax(axis=1)]
    assert ref["prediction"]["counts"] == dict(Counter(labels.tolist()))
    assert DriftMonitor.for_model(model).status()["reference"]["predictions_from"] == "train"
    check = check_drift(model, data.test_raw.frame.drop(columns=["target"]))
    assert "own training rows" in check.explanation[-1] and "optimistic" in check.explanation[-1]


def test_the_reference_keeps_no_row_and_no_category_it_was_not_given():
    """Each column is summarised on its own (sorted), so rows cannot be put back together."""
    frame = pd.DataFrame({"a": np.arange(50.0)[::-1], "b": np.arange(50.0), "c": ["x", "y"] * 25, "t": [0, 1] * 25})
    schema, raw = infer_schema(RawData("table", "t", "t", frame=frame), task="classification", features=None, drop=[], max_categories=50)
    ref = reference_statistics(schema, raw, None)
    a, b = ref["features"]["a"], ref["features"]["b"]
    assert a == b  # row pairing is gone
    # 50 rows: blocks of 20 and 30 (the last block never holds fewer than k = 20), one cut at 19.5.
    assert (a["cuts"], a["counts"], a["centres"]) == ([19.5], [20, 30], [9.5, 34.5])
    assert ref["features"]["c"] == {"kind": "categorical", "count": 50, "counts": {"x": 25, "y": 25}}
    assert ref["prediction"] is None and "prediction" in ref["skipped"]
    json.dumps(ref, allow_nan=False)


def test_a_changed_reference_fails_the_package_signature(cancer, tmp_path):
    import shutil

    result, _ = cancer
    pkg = tmp_path / "pkg"
    shutil.copytree(result.package, pkg)
    manifest = json.loads((pkg / "manifest.json").read_text())
    # Hide a drift: widen the reference of one feature. The manifest's own checksum is
    # recomputed, so only the signature can notice.
    manifest["monitor"]["reference"]["features"]["mean radius"]["std"] *= 10
    (pkg / "manifest.json").write_bytes(encode_manifest(manifest))
    with pytest.raises(IntegrityError) as info:
        Model.load(pkg, keyring=result.keyring)
    assert "manifest.json" in str(info.value)


def test_monitor_reference_false_leaves_it_out_and_the_monitor_says_none(tmp_path):
    r = trustforge.run(
        {
            "name": "iris",
            "data": {"source": "builtin:iris"},
            "model": {"kind": "mlp", "hidden": [8]},
            "train": {"max_epochs": 2},
            "evaluate": QUICK,
            "monitor": {"reference": False},
        },
        progress=False,
        register=False,
    )
    model = r.load_model()
    assert "reference" not in (model.manifest.get("monitor") or {})  # the OOD guard may still live there
    assert DriftMonitor.for_model(model) is None


def _digits() -> tuple[Schema, RawData]:
    d = load_digits()
    images = (d.images.astype(np.float32) / 16.0)[:, None]
    raw = RawData("image", "label", "digits", images=images, labels=d.target.astype(str))
    schema, raw = infer_schema(raw, task="classification", features=None, drop=[], max_categories=50)
    return schema, raw


def test_image_features_are_brightness_contrast_and_sharpness():
    schema, raw = _digits()
    f = featurize(schema, raw)
    assert list(f) == ["brightness", "contrast", "sharpness"]
    x = raw.images.astype(np.float64)
    assert f["brightness"] == pytest.approx(x.mean(axis=(1, 2, 3)))
    assert f["contrast"] == pytest.approx(x.std(axis=(1, 2, 3)))
    # Darker images are less bright, flatter ones have less contrast, blurred ones are less sharp.
    dim = featurize(schema, RawData("image", "label", "t", images=raw.images * 0.5, labels=raw.labels))
    assert dim["brightness"] == pytest.approx(f["brightness"] * 0.5)
    assert dim["contrast"] == pytest.approx(f["contrast"] * 0.5)
    blurred = (raw.images + np.roll(raw.images, 1, axis=3) + np.roll(raw.images, 1, axis=2)) / 3
    assert featurize(schema, RawData("image", "label", "t", images=blurred, labels=raw.labels))["sharpness"].mean() < f["sharpness"].mean()
    rgb = Schema("image", "classification", "label", classes=["a"], image_shape=(3, 8, 8))
    assert list(featurize(rgb, RawData("image", "label", "t", images=np.zeros((2, 3, 8, 8), np.float32)))) == [
        "mean_red",
        "mean_green",
        "mean_blue",
        "contrast",
        "sharpness",
    ]
    with pytest.raises(DataError, match=r"\(3, 8, 8\)"):
        featurize(rgb, raw)


def test_an_image_brightness_shift_is_flagged_and_held_out_images_are_not():
    schema, raw = _digits()
    # A random split: the file is ordered by writer, and its last writers do differ (real drift).
    order = np.random.default_rng(0).permutation(len(raw))
    images, labels = raw.images[order], raw.labels[order]
    train, held = images[:1200], images[1200:]
    ref = reference_statistics(schema, RawData("image", "label", "t", images=train, labels=labels[:1200]), None)
    mon = DriftMonitor(ref, schema, trustforge.spec.MonitorSpec(window=100))
    quiet = [w.drift for w in mon.observe(RawData("image", "label", "t", images=held, labels=labels[1200:]))]
    assert sum(quiet) <= 1, quiet  # 5 windows of 100 held-out digits
    mon = DriftMonitor(ref, schema, trustforge.spec.MonitorSpec(window=100))
    darker = mon.observe(RawData("image", "label", "t", images=held[:200] * 0.8, labels=labels[1200:1400]))
    assert all("brightness" in w.drifted for w in darker), [w.drifted for w in darker]


def test_audio_features_follow_loudness_noise_and_silence():
    rng = np.random.default_rng(4)
    t = np.arange(8000) / 8000
    clips = (0.1 * np.sin(2 * np.pi * 220 * t)[None] * rng.uniform(0.5, 1.5, (60, 1))).astype(np.float32)  # (N, T)
    schema = Schema("audio", "classification", "label", classes=["a"])
    f = featurize(schema, RawData("audio", "label", "t", waveforms=clips))
    assert list(f) == ["loudness_db", "peak", "zero_crossing_rate", "silence"]
    rms = np.sqrt((clips.astype(np.float64) ** 2).mean(axis=1))
    assert f["loudness_db"] == pytest.approx(20 * np.log10(rms + 1e-6))
    assert f["zero_crossing_rate"] == pytest.approx(2 * 220 / 8000, rel=0.02)  # a 220 Hz tone
    louder = featurize(schema, RawData("audio", "label", "t", waveforms=clips * 2))
    assert louder["loudness_db"] - f["loudness_db"] == pytest.approx(20 * np.log10(2), abs=1e-3)
    noisy = featurize(schema, RawData("audio", "label", "t", waveforms=clips + rng.normal(0, 0.05, clips.shape)))
    assert (noisy["zero_crossing_rate"] > 2 * f["zero_crossing_rate"]).all()
    cut = clips.copy()
    cut[:, 4000:] = 0  # half of every clip padded with silence
    assert featurize(schema, RawData("audio", "label", "t", waveforms=cut))["silence"] == pytest.approx(0.5, abs=0.01)


def test_sequence_features_are_each_inputs_mean_and_the_spread():
    x = np.random.default_rng(5).normal(size=(30, 12, 3))
    f = featurize(Schema("sequence", "classification", "label", classes=["a"]), RawData("sequence", "label", "t", sequences=x))
    assert list(f) == ["mean_0", "mean_1", "mean_2", "std"]
    assert f["mean_2"] == pytest.approx(x[:, :, 2].mean(axis=1)) and f["std"] == pytest.approx(x.std(axis=(1, 2)))


def test_a_modality_without_features_is_skipped_with_its_reason():
    schema = Schema("interactions", "recommendation", "rating")  # type: ignore[arg-type]
    raw = RawData("interactions", "rating", "t", frame=pd.DataFrame({"user": ["u"], "item": ["i"]}))
    ref = reference_statistics(schema, raw, pd.DataFrame({"score": [0.3]}))
    assert ref["features"] == {} and ref["prediction"] is None
    assert "interactions" in ref["skipped"]["inputs"] and "prediction" in ref["skipped"]
    assert DriftMonitor(ref, schema).monitored == []
    # A model whose inputs have no features still has its class predictions monitored.
    ref = reference_statistics(
        Schema("interactions", "classification", "y", classes=["a", "b"]),
        raw,  # type: ignore[arg-type]
        pd.DataFrame({"prediction": ["a", "b", "b"]}),
    )
    assert ref["prediction"]["counts"] == {"a": 1, "b": 2}


def test_the_task_says_whether_its_prediction_is_watched_as_a_number():
    from trustforge.monitor._reference import prediction_values

    served = pd.DataFrame({"prediction": [1.5, None, 2.0]})
    assert prediction_values("regression", served).dtype == np.float64
    assert prediction_values("classification", served).tolist() == ["1.5", "<missing>", "2.0"]
    assert prediction_values("regression", pd.DataFrame({"score": [1.0]})) is None


def test_a_column_with_fewer_than_k_rows_keeps_only_its_counts_and_is_not_tested():
    frame = pd.DataFrame({"a": np.arange(19.0), "t": [0, 1] * 9 + [0]})
    schema, raw = infer_schema(RawData("table", "t", "t", frame=frame), task="classification", features=None, drop=[], max_categories=50)
    ref = reference_statistics(schema, raw, None)
    assert ref["features"]["a"] == {"kind": "numeric", "count": 19, "missing": 0}
    (w,) = DriftMonitor(ref, schema, trustforge.spec.MonitorSpec(window=20)).observe(
        RawData("table", "t", "t", frame=pd.DataFrame({"a": np.arange(20.0) + 100, "t": [0] * 20}))
    )
    assert w.features["a"]["test"] is None and not w.drift


def test_ties_are_never_split_and_a_value_shared_by_k_rows_may_be_a_centre():
    values = np.array([0.0] * 30 + list(np.linspace(1, 2, 40)))
    frame = pd.DataFrame({"a": values, "t": [0, 1] * 35})
    schema, raw = infer_schema(RawData("table", "t", "t", frame=frame), task="classification", features=None, drop=[], max_categories=50)
    a = reference_statistics(schema, raw, None)["features"]["a"]
    assert a["counts"][0] == 30 and a["centres"][0] == 0.0  # 30 rows share 0.0: a bin shared by many rows
    assert 0.0 < a["cuts"][0] < 1.0
