"""Numeric sequences from `npz:PATH`: reading, refusing bad files, and an RNN that learns them."""

from __future__ import annotations

import json

import numpy as np
import pytest

import trustforge
from trustforge.data import load_source, prepare
from trustforge.errors import DataError, SpecError
from trustforge.spec import load_spec


def pattern_set(n: int = 500, t: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise sequences (N, T, 2); class "ramp" when a rising ramp of 5 steps appears in feature 0.

    The ramp starts anywhere, so the class is about a pattern in time, not about one position;
    the mean of a sequence hardly tells the classes apart.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, t, 2)).astype(np.float32)
    ramp = rng.random(n) < 0.5
    for i in np.flatnonzero(ramp):
        s = rng.integers(0, t - 5)
        x[i, s : s + 5, 0] += np.linspace(0.0, 3.0, 5, dtype=np.float32)
        x[i, :, 0] -= 1.5 * 5 / t  # keep the sequence mean of both classes alike
    return x, np.where(ramp, "ramp", "noise")


def write(tmp_path, name="seq.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def small_spec(path, **over) -> dict:
    spec = {
        "name": "seq",
        "task": "classification",
        "data": {"source": f"npz:{path}"},
        "model": {"kind": "rnn", "cell": "gru", "hidden_size": 24},
        "train": {"max_epochs": 15, "batch_size": 32, "optimizer": {"lr": 0.005}, "early_stopping": None, "seed": 1},
        "evaluate": {"speed": False, "explain": False, "calibrate": False},
    }
    for k, v in over.items():
        spec[k] = {**spec.get(k, {}), **v} if isinstance(v, dict) else v
    return spec


def test_npz_source_reads_sequences_and_labels(tmp_path):
    x, y = pattern_set(50)
    raw = load_source(f"npz:{write(tmp_path, X=x, y=y)}", target=None, image_size=(8, 8), channels=1, seed=0)
    assert raw.modality == "sequence" and raw.sequences.shape == (50, 24, 2) and raw.sequences.dtype == np.float32
    assert list(raw.labels) == list(y) and len(raw) == 50


def test_two_dimensional_x_is_one_feature_per_step(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 7))
    raw = load_source(f"npz:{write(tmp_path, X=x, y=np.arange(20) % 2)}", target=None, image_size=(8, 8), channels=1, seed=0)
    assert raw.sequences.shape == (20, 7, 1)


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"Y": np.zeros((4, 3, 1)), "y": np.zeros(4)}, r"no array 'X'"),
        ({"X": np.zeros((4, 3, 1))}, r"no array 'y'"),
        ({"X": np.zeros((4, 3, 1)), "y": np.zeros(5)}, r"array 'y' must have shape \(4,\)"),
        ({"X": np.zeros((4, 3, 1, 2)), "y": np.zeros(4)}, r"must have shape \(N, T, F\)"),
        ({"X": np.array([[[1.0], [np.nan]]] * 4), "y": np.zeros(4)}, r"NaN or infinite values in 4 sequence"),
        ({"X": np.array([["a", "b"]] * 4), "y": np.zeros(4)}, r"'X' must hold numbers"),
    ],
)
def test_bad_npz_files_are_data_errors_naming_the_file(tmp_path, arrays, message):
    path = write(tmp_path, **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_source(f"npz:{path}", target=None, image_size=(8, 8), channels=1, seed=0)
    assert str(path) in str(info.value)


def test_pickled_object_arrays_are_refused_not_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, X=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3))  # needs pickle to load
    with pytest.raises(DataError, match=r"evil.npz: not a readable .npz archive .*allow_pickle"):
        load_source(f"npz:{path}", target=None, image_size=(8, 8), channels=1, seed=0)


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04broken"])
def test_corrupt_files_are_data_errors(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="bad.npz"):
        load_source(f"npz:{path}", target=None, image_size=(8, 8), channels=1, seed=0)
    with pytest.raises(DataError, match="not found"):
        load_source(f"npz:{tmp_path / 'missing.npz'}", target=None, image_size=(8, 8), channels=1, seed=0)


def test_a_text_file_or_a_folder_named_as_npz_says_what_it_is(tmp_path):
    # Found by a probe: `npz:bc.csv` spoke of pickled data, and `csv:.` said "data file not found".
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"t\.csv: not an \.npz archive \(an \.npz file is a zip") as info:
        load_source(f"npz:{tmp_path / 't.csv'}", target=None, image_size=(8, 8), channels=1, seed=0)
    assert "pickle" not in str(info.value)
    for source in (f"npz:{tmp_path}", f"csv:{tmp_path}"):
        with pytest.raises(DataError, match="is a folder, not a data file"):
            load_source(source, target="b", image_size=(8, 8), channels=1, seed=0)


def test_targets_may_be_named_by_data_target(tmp_path):
    x, y = pattern_set(40)
    path = write(tmp_path, X=x, label=y)
    data = prepare(load_spec(small_spec(path, data={"source": f"npz:{path}", "target": "label"})))
    assert data.schema.modality == "sequence" and data.schema.classes == ["noise", "ramp"]
    assert data.schema.sequence_shape == (24, 2)
    # Standardised per feature on the training split.
    x_train = data.train.inputs[0]
    assert abs(float(x_train.mean())) < 0.05 and abs(float(x_train.std()) - 1) < 0.05


def test_a_gru_learns_whether_the_pattern_appears_and_its_package_predicts_arrays(tmp_path):
    x, y = pattern_set(400)
    path = write(tmp_path, X=x, y=y)
    result = trustforge.run(small_spec(path), register=False, progress=False)
    assert result.metrics["accuracy"] > 0.8, result.metrics  # chance: about 0.5
    model = result.load_model()
    fresh_x, fresh_y = pattern_set(200, seed=5)
    pred = model.predict(fresh_x)
    assert list(pred.columns) == ["prediction", "proba_noise", "proba_ramp"]
    assert (pred["prediction"].to_numpy() == fresh_y).mean() > 0.75
    # The same from a file without targets, and evaluation from a file with them.
    unlabelled = write(tmp_path, "fresh.npz", X=fresh_x)
    np.testing.assert_allclose(model.predict(unlabelled)["proba_ramp"], pred["proba_ramp"], rtol=1e-6)
    with pytest.raises(DataError, match="needs targets"):
        model.evaluate(unlabelled)
    assert model.evaluate(write(tmp_path, "fresh_y.npz", X=fresh_x, y=fresh_y))["accuracy"] > 0.75
    with pytest.raises(DataError, match=r"shape \(T, F\) \(24, 1\); the model expects \(24, 2\)"):
        model.predict(fresh_x[:, :, :1])
    manifest = json.loads((result.package / "manifest.json").read_text())
    assert manifest["signature"]["inputs"] == [{"name": "sequence", "datatype": "FP32", "shape": [-1, 24, 2]}]
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    assert [r["severity"] for r in evidence["corruptions"]["rows"]] == [1, 2, 3]


def test_sequence_regression_with_an_mlp(tmp_path):
    x, _ = pattern_set(400)
    target = x[:, -6:, 1].mean(axis=1).astype(np.float64) * 10 + 50  # recent level of feature 1, in its own units
    path = write(tmp_path, X=x, y=target)
    spec = small_spec(path, task="regression", train={"max_epochs": 40, "optimizer": {"lr": 0.003}})
    spec["model"] = {"kind": "mlp", "hidden": [32]}
    result = trustforge.run(spec, register=False, progress=False)
    assert result.metrics["r2"] > 0.8, result.metrics  # predicting the mean gives 0
    pred = result.load_model().predict(x[:5])["prediction"].to_numpy()
    np.testing.assert_allclose(pred, target[:5], atol=0.5 * float(np.std(target)))


def test_npz_is_a_source_scheme_of_the_spec(tmp_path):
    assert load_spec({"data": {"source": "npz:x.npz"}}).data.source == "npz:x.npz"
    with pytest.raises(SpecError, match="npz:PATH"):
        load_spec({"data": {"source": "npy:x.npy"}})
