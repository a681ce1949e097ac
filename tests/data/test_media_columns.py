"""Image and audio columns of a table: files named by path, read next to the table, confined to its folder."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pandas as pd
import pytest

from trustforge.data import RawData, load_source
from trustforge.data._files import read_linked_files
from trustforge.data.features import FEATURE_TYPES, FeatureOptions, infer_type
from trustforge.errors import DataError
from trustforge.package import Model
from trustforge.testing import write_media_table

SETTINGS = {"image": {"size": [16, 16]}, "audio": {"sample_rate": 8000, "seconds": 0.5, "n_fft": 256, "hop_length": 200, "n_mels": 20}}


def _spec(table, **data):
    return {
        "name": "media",
        "task": "classification",
        "data": {"source": f"csv:{table}", "target": "label", **SETTINGS, **data},
        "model": {"kind": "mlp", "hidden": [32]},
        "train": {"max_epochs": 15, "batch_size": 16, "seed": 1},
        "evaluate": {"speed": False, "calibrate": False},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from trustforge.pipeline import run
    from trustforge.settings import Settings

    root = tmp_path_factory.mktemp("media")
    table = write_media_table(root / "data", rows=160, seed=0)
    result = run(_spec(table), settings=Settings.from_env(root / "ws"), progress=False, register=False)
    model = Model.load(result.package, keyring=result.keyring)
    return table, result, model


def test_a_table_of_image_and_audio_files_trains_one_model(trained):
    table, result, model = trained
    kinds = {c.name: c.kind for c in model.schema.columns}
    assert kinds == {"photo": "image", "clip": "audio", "size": "numeric"}  # inferred from the file names
    assert result.metrics["accuracy"] >= 0.9  # the label is in the files only: `size` is noise
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    importance = {c["name"]: c["permutation"] for c in evidence["explanations"]["feature_importance"]["columns"]}
    assert max(importance, key=importance.get) in ("photo", "clip") and importance["size"] < max(importance.values())
    rows = evidence["corruptions"]["rows"]
    noise = [r for r in rows if r["corruption"] == "noise"]
    assert "image: pixel noise" in noise[0]["parameter"] and "audio: white noise" in noise[0]["parameter"]
    missing = [r for r in rows if r["corruption"] == "missing"]
    assert missing[-1]["value"] < evidence["corruptions"]["clean"] - 0.05  # half the files gone costs accuracy
    # The package holds contents' statistics, never the table's folder.
    for f in result.package.rglob("*"):
        if f.is_file():
            assert str(table.parent).encode() not in f.read_bytes(), f.name


def test_predicting_a_table_file_reads_its_files_and_a_frame_takes_contents(trained):
    table, result, model = trained
    from_file = model.predict(table).head(10)
    frame = pd.read_csv(table).head(10)
    for col in ("photo", "clip"):
        frame[col] = [(table.parent / p).read_bytes() for p in frame[col]]
    assert np.allclose(model.predict(frame)["proba_pos"], from_file["proba_pos"], atol=1e-6)
    as_text = frame.assign(photo=[base64.b64encode(b).decode() for b in frame["photo"]])
    assert np.allclose(model.predict(as_text)["proba_pos"], from_file["proba_pos"], atol=1e-6)
    # A DataFrame's paths are never opened (the server builds one from each request).
    paths = pd.read_csv(table).head(3)
    with pytest.raises(DataError, match=r"column 'photo', row 1: expected the file's contents as base64"):
        model.predict(paths)
    # A missing file is the training mean: the row is predicted from its other columns.
    gaps = frame.assign(photo=[None] * 10, clip=[None] * 10)
    assert model.predict(gaps)["prediction"].nunique() == 1


@pytest.mark.parametrize(
    "path, message",
    [
        ("../outside.png", "leaves the table's folder"),
        ("img/../../outside.png", "leaves the table's folder"),
        ("ABSOLUTE", "is an absolute path"),
        ("img/escape.png", "leaves the table's folder"),  # a link inside the folder to a file outside it
        ("img/nothing.png", "not found next to the table"),
        ("img/0.txt", "is not a PNG or JPEG image file name"),
    ],
)
def test_a_table_cannot_make_us_read_a_file_outside_its_folder(tmp_path, path, message):
    table = write_media_table(tmp_path / "data", rows=4)
    outside = tmp_path / "outside.png"
    outside.write_bytes((table.parent / "img" / "0.png").read_bytes())
    os.symlink(outside, table.parent / "img" / "escape.png")
    value = str(outside) if path == "ABSOLUTE" else path
    col = pd.Series(["img/1.png", value], name="photo")
    with pytest.raises(DataError, match=rf"t.csv: column 'photo', row 2: .*{message}"):
        read_linked_files(col, table.parent, FEATURE_TYPES["image"].files, where="t.csv", kinds="PNG or JPEG image")


def test_training_refuses_a_path_outside_the_folder_naming_file_column_and_row(tmp_path):
    from trustforge.data import prepare
    from trustforge.spec import load_spec

    table = write_media_table(tmp_path / "data", rows=40)
    frame = pd.read_csv(table)
    frame.loc[7, "clip"] = "../../etc/passwd.wav"
    frame.to_csv(table, index=False)
    with pytest.raises(DataError, match=r"column 'clip', row 8: '../../etc/passwd.wav' leaves the table's folder"):
        prepare(load_spec(_spec(table)))


def test_file_columns_are_inferred_from_names_or_contents(tmp_path):
    table = write_media_table(tmp_path, rows=6)
    raw = load_source(f"csv:{table}", target="label", image_size=(16, 16), channels=3, seed=0)
    assert isinstance(raw, RawData) and raw.root == str(table.parent)
    options = FeatureOptions()
    assert infer_type(raw.frame["photo"], options, where="t").name == "image"
    assert infer_type(raw.frame["clip"], options, where="t").name == "audio"
    contents = pd.Series([(table.parent / p).read_bytes() for p in raw.frame["photo"]], name="photo")
    assert infer_type(contents, options, where="t").name == "image"


def test_corruptions_change_the_files_more_with_the_level(tmp_path):
    table = write_media_table(tmp_path, rows=8)
    for name, folder, suffix in (("image", "img", "png"), ("audio", "snd", "wav")):
        t = FEATURE_TYPES[name]
        col = pd.Series([(table.parent / f"{folder}/{i}.{suffix}").read_bytes() for i in range(8)], name="c")
        state = t.fit(col, FeatureOptions(column=SETTINGS[name] if name == "image" else {"sample_rate": 8000, "samples": 4000}), where="t")
        clean = t.encode(state, col, where="t")
        change = [
            np.abs(t.encode(state, t.corrupt(state, col, level, np.random.default_rng(0)), where="t") - clean).mean()
            for level in (0.1, 0.5)
        ]
        assert 0 < change[0] < change[1], (name, change)


def test_drift_values_follow_brightness_and_loudness(tmp_path):
    from trustforge.data import encode_png

    image = FEATURE_TYPES["image"]
    rng = np.random.default_rng(0)
    bright = pd.Series([encode_png(0.5 + 0.5 * rng.random((3, 8, 8))) for _ in range(20)], name="p")
    dark = pd.Series([encode_png(0.3 * rng.random((3, 8, 8))) for _ in range(20)], name="p")
    assert image.monitor_values(bright).min() > image.monitor_values(dark).max()
    audio = FEATURE_TYPES["audio"]
    table = write_media_table(tmp_path, rows=4)
    clips = pd.Series([(table.parent / f"snd/{i}.wav").read_bytes() for i in range(4)], name="c")
    loud = audio.monitor_values(clips)
    assert np.all((loud > -20) & (loud < 0))  # a 0.3-amplitude tone: about -13 dBFS
    assert np.isnan(audio.monitor_values(pd.Series([None, b"RIFF-not-a-wav"], name="c"))).all()


def test_a_column_declared_with_its_own_size_and_front_end(tmp_path):
    from trustforge.data import Preprocessor, infer_schema
    from trustforge.spec import load_spec

    table = write_media_table(tmp_path, rows=12)
    features = {"photo": {"type": "image", "size": [8, 6], "channels": 1}, "clip": {"type": "audio", "sample_rate": 8000, "seconds": 0.25}}
    spec = load_spec({"data": {"source": f"csv:{table}", "target": "label", "features": features}})
    raw = load_source(spec.data.source, target="label", image_size=(16, 16), channels=3, seed=0)
    schema, raw = infer_schema(raw, task="classification", features=spec.data.features)
    pre = Preprocessor(schema).fit(raw)
    grids = {c.name: c.grid for c in schema.columns if c.grid}
    assert grids == {"photo": [1, 8, 6], "clip": [1, 40, 1 + 2000 // 160]}
    x = pre.encode_inputs(raw)
    assert [tuple(t.shape[1:]) for t in x[2:]] == [(1, 8, 6), (1, 40, 13)]


def test_an_error_in_training_names_the_row_of_the_file_not_of_the_split(tmp_path):
    from trustforge.data import prepare
    from trustforge.spec import load_spec

    table = write_media_table(tmp_path / "data", rows=40)
    (table.parent / "img" / "30.png").write_bytes(b"not an image")  # data row 31 of the file
    with pytest.raises(DataError, match=r"column 'photo', row 31: not a readable image"):
        prepare(load_spec(_spec(table)))
    frame = pd.read_csv(table)
    (table.parent / "img" / "30.png").write_bytes((table.parent / "img" / "0.png").read_bytes())
    frame["size"] = frame["size"].astype(object)
    frame.loc[33, "size"] = "abc"  # data row 34; declared numeric, so fit reads it
    frame.to_csv(table, index=False)
    with pytest.raises(DataError, match=r"column 'size' must be numeric; got 'abc' in row 34"):
        prepare(load_spec(_spec(table, features={"size": "numeric"})))
