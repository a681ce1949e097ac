"""A spec of three lines (task, a CSV source, its target) trains on any table: numbers, categories
with missing values, free text, all of them mixed, and image and audio files named by path,
each through its inferred feature types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

import trustforge
from trustforge.data import load_source
from trustforge.spec import load_spec


def three_lines(tmp_path, frame: pd.DataFrame, target: str):
    frame.to_csv(tmp_path / "table.csv", index=False)
    path = tmp_path / "spec.yaml"
    path.write_text(f"task: classification\ndata:\n  source: csv:table.csv\n  target: {target}\n", encoding="utf-8")
    assert len(path.read_text().strip().splitlines()) == 4  # task, data:, source, target
    return path


def majority(frame: pd.DataFrame, target: str) -> float:
    return float(frame[target].value_counts(normalize=True).iloc[0])


def kinds(result) -> dict[str, str]:
    return {c.name: c.kind for c in result.load_model().schema.columns}


def birdstrikes(rows: int) -> pd.DataFrame:
    frame = load_source("builtin:birdstrikes", target="disrupted", image_size=(32, 32), channels=3, seed=0).frame
    # Every disrupted strike and enough others to keep the data's balance roughly (~25 % yes).
    yes = frame[frame.disrupted == "yes"]
    no = frame[frame.disrupted == "no"].sample(rows - min(len(yes), rows // 4), random_state=0)
    return pd.concat([yes.head(rows // 4), no]).sample(frac=1.0, random_state=1).reset_index(drop=True)


def test_the_default_model_follows_from_the_kind_of_input(tmp_path):
    path = three_lines(tmp_path, pd.DataFrame({"x": range(20), "y": ["a", "b"] * 10}), "y")
    assert load_spec(path).model.kind == "tabm"
    assert load_spec({"data": {"source": "builtin:digits"}}).model.kind == "cnn"
    assert load_spec({"data": {"source": "builtin:spoken_digits"}}).model.kind == "audio_cnn"
    assert load_spec({"task": "forecasting", "data": {"source": "builtin:air_passengers"}}).model.kind == "rnn"
    assert load_spec({"model": {"kind": "cnn"}}).model.kind == "cnn"  # a named kind is kept


def test_three_lines_train_on_a_numeric_table(tmp_path):
    frame = load_source("builtin:breast_cancer", target=None, image_size=(32, 32), channels=3, seed=0).frame
    result = trustforge.run(three_lines(tmp_path, frame, "target"), register=False, progress=False)
    assert set(kinds(result).values()) == {"numeric"}
    assert result.metrics["accuracy"] >= 0.95  # logistic regression scores ~0.97 on this split


def test_three_lines_train_on_categories_with_missing_values(tmp_path):
    frame = birdstrikes(2400).drop(columns=["remarks", "date"])
    assert frame.isna().any().sum() >= 4  # sky, phase of flight, time of day, speed ... have gaps
    result = trustforge.run(three_lines(tmp_path, frame, "disrupted"), register=False, progress=False)
    k = kinds(result)
    assert k["sky"] == "categorical" and k["speed"] == "numeric" and k["birds_struck"] == "categorical"
    assert result.metrics["roc_auc"] >= 0.70


def test_three_lines_train_on_a_text_csv(tmp_path):
    frame = load_source("builtin:reviews", target=None, image_size=(32, 32), channels=3, seed=0).frame
    frame = frame[["review", "score"]]
    result = trustforge.run(three_lines(tmp_path, frame, "score"), register=False, progress=False)
    assert kinds(result) == {"review": "text"}  # long, high-cardinality strings are text, not a category
    assert result.metrics["accuracy"] >= majority(frame, "score") + 0.08


def test_three_lines_train_on_a_mixed_table(tmp_path):
    frame = birdstrikes(3000)
    result = trustforge.run(three_lines(tmp_path, frame, "disrupted"), register=False, progress=False)
    assert kinds(result) == {
        "date": "datetime",
        "time_of_day": "categorical",
        "phase_of_flight": "categorical",
        "sky": "categorical",
        "aircraft_mass": "numeric",
        "engines": "numeric",
        "height": "numeric",
        "speed": "numeric",
        "birds_struck": "categorical",
        "remarks": "text",
    }
    assert result.metrics["roc_auc"] >= 0.85
    # Explanations attribute to whole columns, whatever their type; the remarks matter most.
    import json

    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    columns = evidence["explanations"]["feature_importance"]["columns"]
    assert {c["name"] for c in columns} == set(kinds(result))
    assert columns[0]["name"] == "remarks"
    model = result.load_model()
    reference = model.manifest["monitor"]["reference"]
    assert "date" not in reference["features"] and "later dates" in reference["skipped"]["date"]  # time moves on
    assert {"remarks", "sky", "speed"} <= set(reference["features"])  # the other types are watched
    sample = frame.drop(columns=["disrupted"]).head(5)
    assert list(model.predict(sample)["prediction"]) == list(model.predict(sample.iloc[::-1])["prediction"])[::-1]


def test_three_lines_train_on_a_table_of_image_and_audio_files(tmp_path):
    from trustforge.testing import write_media_table

    table = write_media_table(tmp_path, rows=120)  # photo (img/N.png), clip (snd/N.wav), size, label
    path = tmp_path / "spec.yaml"
    path.write_text("task: classification\ndata:\n  source: csv:table.csv\n  target: label\n", encoding="utf-8")
    result = trustforge.run(path, register=False, progress=False)
    assert kinds(result) == {"photo": "image", "clip": "audio", "size": "numeric"}
    model = result.load_model()
    assert [c.grid for c in model.schema.columns[:2]] == [[3, 32, 32], [1, 40, 101]]  # data.image and data.audio defaults
    assert result.metrics["accuracy"] >= 0.9  # a red square and a 440 Hz tone mark the positives; `size` is noise
    assert table.is_file()


def test_declared_types_override_inference(tmp_path):
    frame = birdstrikes(600)[["engines", "remarks", "disrupted"]]
    spec = yaml.safe_load(three_lines(tmp_path, frame, "disrupted").read_text())
    spec["data"]["features"] = {"engines": "categorical"}  # the other columns stay, inferred
    spec["train"] = {"max_epochs": 2}
    spec["evaluate"] = {"speed": False, "corruptions": False, "explain": False, "robustness": False}
    import os

    os.chdir(tmp_path)
    result = trustforge.run(spec, register=False, progress=False)
    assert kinds(result) == {"engines": "categorical", "remarks": "text"}


def test_an_unknown_feature_type_names_the_field(tmp_path):
    from trustforge.errors import SpecError

    with pytest.raises(SpecError, match=r"data\.features\.remarks must be a feature type \(.*text.*\); got 'txt'"):
        load_spec({"data": {"source": "csv:x.csv", "target": "y", "features": {"remarks": "txt"}}})


def test_an_id_column_is_refused_with_what_to_do(tmp_path):
    from trustforge.errors import DataError

    frame = pd.DataFrame({"id": [f"c{i:04d}" for i in range(200)], "x": np.arange(200.0), "y": ["a", "b"] * 100})
    with pytest.raises(DataError, match=r"column 'id' has 200 distinct short text values.*data\.drop.*data\.features"):
        trustforge.run(three_lines(tmp_path, frame, "y"), register=False, progress=False)


def test_a_column_declared_with_its_own_options_is_fitted_with_them(tmp_path):
    frame = birdstrikes(400)[["remarks", "speed", "disrupted"]]
    spec = yaml.safe_load(three_lines(tmp_path, frame, "disrupted").read_text())
    spec["data"]["features"] = {"remarks": {"type": "text", "tokenizer": "char", "max_length": 40}}
    spec["train"] = {"max_epochs": 1}
    spec["evaluate"] = {"speed": False, "corruptions": False, "explain": False, "robustness": False, "calibrate": False}
    import os

    os.chdir(tmp_path)
    result = trustforge.run(spec, register=False, progress=False)
    model = result.load_model()
    state = model.preprocessor.features["remarks"]
    assert (state.tokenizer, state.max_length) == ("char", 40) and len(state.vocabulary) < 200  # characters, not words
    assert kinds(result) == {"remarks": "text", "speed": "numeric"}


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"type": "text", "tokeniser": "char"}, r"data\.features\.remarks\.tokeniser.*is not an option of a text column"),
        ({"type": "text", "max_length": 1}, r"data\.features\.remarks\.max_length"),
        ({"type": "numeric", "size": [8, 8]}, r"data\.features\.remarks\.size is not an option of a numeric column \(scaling, clip\)"),
        ({"type": "binary", "size": [8, 8]}, r"data\.features\.remarks\.size.*a binary column takes no options"),
        ({"type": "txt"}, r"data\.features\.remarks\.type must be a feature type"),
        ({"tokenizer": "char"}, r"data\.features\.remarks\.type must be a feature type"),
    ],
)
def test_a_bad_column_option_names_its_field(entry, message):
    from trustforge.errors import SpecError

    with pytest.raises(SpecError, match=message):
        load_spec({"data": {"source": "csv:x.csv", "target": "y", "features": {"remarks": entry}}})
