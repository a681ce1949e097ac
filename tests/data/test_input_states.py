"""Every kind of input's fitted state is a typed, frozen object that survives the package state:
fitted, written by `Preprocessor.state` (through JSON), read back by `Preprocessor.from_state`,
it is equal to what was fitted and encodes the same tensors. The schema's typed sections
write the JSON they always wrote, and refuse what they do not know, naming the field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from trustforge.data import INPUT_KINDS, Preprocessor, Schema, input_kind, prepare
from trustforge.data._audio import FrontEnd
from trustforge.data._interactions import InteractionsConfig
from trustforge.data._series import SeriesConfig
from trustforge.data._states import InputState
from trustforge.data._text import TextOptions
from trustforge.errors import DataError
from trustforge.spec import load_spec


def _table(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "city": rng.choice(["oslo", "rome", "paris"], size=n),
            "flag": rng.choice(["yes", "no"], size=n),
            "label": np.where(rng.random(n) < 0.5, "a", "b"),
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    return {"data": {"source": f"csv:{tmp_path / 't.csv'}", "target": "label"}}


def _text(tmp_path: Path) -> dict[str, Any]:
    words = ["good", "bad", "fine", "awful", "great", "poor"]
    rng = np.random.default_rng(1)
    rows = [(" ".join(rng.choice(words, size=4)), "pos" if i % 2 else "neg") for i in range(60)]
    pd.DataFrame(rows, columns=["body", "label"]).to_csv(tmp_path / "r.csv", index=False)
    return {
        "data": {"source": f"csv:{tmp_path / 'r.csv'}", "target": "label", "text": {"column": "body", "max_length": 8}},
        "model": {"kind": "transformer"},
    }


def _image(tmp_path: Path) -> dict[str, Any]:
    return {"data": {"source": "builtin:digits"}, "model": {"kind": "cnn"}}


def _audio(tmp_path: Path) -> dict[str, Any]:
    rate = 8000
    rng = np.random.default_rng(0)
    for name, freq in {"low": 300.0, "high": 2000.0}.items():
        (tmp_path / "clips" / name).mkdir(parents=True)
        for i in range(5):
            t = np.arange(int(rate * rng.uniform(0.2, 0.3))) / rate
            wave = (0.5 * np.sin(2 * np.pi * freq * rng.uniform(0.97, 1.03) * t)).astype(np.float32)
            sf.write(str(tmp_path / "clips" / name / f"{i}.wav"), wave, rate, subtype="PCM_16")
    return {
        "data": {
            "source": f"audio:{tmp_path / 'clips'}",
            "split": {"test": 0.2, "validation": 0.2},
            "audio": {"sample_rate": rate, "seconds": 0.25, "n_mels": 16, "n_fft": 256, "hop_length": 80},
        },
        "model": {"kind": "audio_cnn"},
    }


def _sequence(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6, 3)).astype(np.float32) * np.array([1.0, 5.0, 0.1], dtype=np.float32)
    np.savez(tmp_path / "s.npz", X=x, y=np.where(rng.random(40) < 0.5, "up", "down"))
    return {"data": {"source": f"npz:{tmp_path / 's.npz'}"}, "model": {"kind": "rnn"}}


def _series(tmp_path: Path) -> dict[str, Any]:
    return {
        "task": "forecasting",
        "data": {"source": "builtin:seasonal", "series": {"lookback": 24, "horizon": 3, "season": 12, "transform": "log"}},
    }


def _interactions(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"m{i}", float(rng.integers(1, 6)), 100 * u + t) for u in range(6) for t, i in enumerate(rng.choice(20, 8, False))]
    pd.DataFrame(rows, columns=["user", "item", "rating", "time"]).to_csv(tmp_path / "i.csv", index=False)
    roles = {"user": "user", "item": "item", "rating": "rating", "time": "time"}
    return {"task": "recommendation", "data": {"source": f"csv:{tmp_path / 'i.csv'}", "interactions": roles}, "model": {"kind": "mf"}}


# One small data set per registered kind of input: the spec that reads it.
CASES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "table": _table,
    "text": _text,
    "image": _image,
    "audio": _audio,
    "sequence": _sequence,
    "series": _series,
    "interactions": _interactions,
}


def test_every_registered_kind_of_input_has_a_case():
    assert set(CASES) == set(INPUT_KINDS), "add a case for each kind of input in data.inputs.INPUT_KINDS"


@pytest.mark.parametrize("kind", sorted(INPUT_KINDS))
def test_the_fitted_state_round_trips_through_the_package_state(tmp_path, kind):
    data = prepare(load_spec(CASES[kind](tmp_path)))
    pre = data.preprocessor
    assert pre.schema.modality == kind
    state_type = input_kind(kind).state_type
    if state_type is None:  # a table: its columns' feature types hold the state
        assert pre.input_state is None and pre.features
    else:
        assert isinstance(pre.input_state, state_type) and dataclasses.is_dataclass(pre.input_state)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(pre.input_state, dataclasses.fields(pre.input_state)[0].name, None)
    meta, tensors = pre.state()
    # The state's tensors keep the names packages have always used, beside the preprocessor's own.
    own = pre.input_state.tensors() if pre.input_state is not None else {}
    assert set(tensors) == set(pre.tensors) | set(own) and not set(pre.tensors) & set(own)
    again = Preprocessor.from_state(json.loads(json.dumps(meta)), {k: v.clone() for k, v in tensors.items()})
    assert again.input_state == pre.input_state
    assert again.schema == pre.schema and again.schema.to_dict() == pre.schema.to_dict()
    assert again.vocabularies == pre.vocabularies
    assert set(again.tensors) == set(pre.tensors) and all(torch.equal(again.tensors[k], v) for k, v in pre.tensors.items())
    ours, theirs = pre.encode_inputs(data.test_raw), again.encode_inputs(data.test_raw)
    assert len(ours) == len(theirs) and all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(ours, theirs))
    assert torch.equal(again.encode_target(data.test_raw), pre.encode_target(data.test_raw))
    # Written again, the state is the same: names, dtypes and values.
    meta2, tensors2 = again.state()
    assert json.dumps(meta2) == json.dumps(meta)
    assert set(tensors2) == set(tensors) and all(t.dtype == tensors[k].dtype and torch.equal(t, tensors[k]) for k, t in tensors2.items())


def test_input_states_compare_tensors_by_value_dtype_and_shape():
    from trustforge.data.inputs.image import ImageState

    a = ImageState(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 2.0]))
    assert a == ImageState(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 2.0]))
    assert a != ImageState(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 3.0]))
    assert a != ImageState(torch.tensor([0.5, 0.25], dtype=torch.float64), torch.tensor([1.0, 2.0]))
    assert isinstance(a, InputState) and a.tensors().keys() == {"image.mean", "image.std"}
    with pytest.raises(DataError, match=r"lack \['image.std'\]"):
        ImageState.from_saved(None, {}, {"image.mean": torch.zeros(2)})


# ---------------------------------------------------------------------------- the schema's sections

SERIES = {
    "time": "t",
    "time_kind": "numeric",
    "lookback": 24,
    "horizon": 3,
    "season": 12,
    "transform": "none",
    "level": "last",
    "step": 1.0,
    "train_period": [0, 263],
    "time_zone": None,
}
AUDIO = {"sample_rate": 16000, "samples": 8000, "n_fft": 512, "hop_length": 160, "n_mels": 40, "fmin": 20.0, "fmax": None}
INTERACTIONS = {
    "user": "userId",
    "item": "movieId",
    "rating": "rating",
    "time": "timestamp",
    "feedback": "explicit",
    "positive_threshold": None,
    "test": 1,
    "validation": 0.1,
    "below_threshold": 0,
    "duplicates": 2,
}
TEXT = {"column": "body", "tokenizer": "word", "max_length": 64, "min_freq": 1, "max_vocab": 20000, "lowercase": True, "ngrams": 2}


@pytest.mark.parametrize(
    ("field", "section", "value"),
    [
        ("series", SeriesConfig, SERIES),
        ("audio", FrontEnd, AUDIO),
        ("interactions", InteractionsConfig, INTERACTIONS),
        ("text", TextOptions, TEXT),
    ],
)
def test_schema_sections_are_typed_and_write_the_json_they_always_wrote(field, section, value):
    d = Schema("table", "classification", "y", **{field: value}).to_dict()
    schema = Schema.from_dict(json.loads(json.dumps(d)))
    typed = getattr(schema, field)
    assert isinstance(typed, section) and typed == section.from_json(value)
    assert json.dumps(schema.to_dict()[field]) == json.dumps(value)  # the same keys, in the same order
    assert json.dumps(schema.to_dict()) == json.dumps(d)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(typed, next(iter(value)), None)


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        (SeriesConfig, {**SERIES, "window": 3}, r"SeriesConfig: unknown field \['window'\]"),
        (SeriesConfig, {k: v for k, v in SERIES.items() if k != "horizon"}, r"SeriesConfig: missing field \['horizon'\]"),
        (SeriesConfig, {**SERIES, "lookback": "24"}, r"field 'lookback' must be an integer; got '24'"),
        (SeriesConfig, {**SERIES, "level": "median"}, r"field 'level' must be 'none' or 'last' or 'mean'; got 'median'"),
        (SeriesConfig, {**SERIES, "train_period": [0, None]}, r"field 'train_period' must be a list or null; got \(0, None\)"),
        (FrontEnd, {**AUDIO, "n_mels": True}, r"FrontEnd: field 'n_mels' must be an integer; got True"),
        (InteractionsConfig, {**INTERACTIONS, "feedback": "likes"}, r"field 'feedback' must be 'explicit' or 'implicit'"),
        (TextOptions, [1, 2], r"TextOptions: expected a JSON object; got list"),
    ],
)
def test_a_bad_schema_section_is_refused_naming_the_field(section, value, message):
    with pytest.raises(DataError, match=message):
        section.from_json(value)


def test_series_packages_from_before_level_time_kind_and_step_read_with_the_old_defaults():
    old = {k: v for k, v in SERIES.items() if k not in ("level", "time_kind", "step", "train_period", "time_zone")}
    cfg = Schema.from_dict({"modality": "series", "task": "forecasting", "target": "v", "series": old}).series
    assert cfg.level == "none" and cfg.time_kind is None and cfg.lookback == 24
    assert cfg.step is None and cfg.train_period is None  # rows read as steps, as trained; no overlap caveat
    assert cfg.time_zone is None  # dates with or without a zone are both taken
