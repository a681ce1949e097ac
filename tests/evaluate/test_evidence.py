"""Evidence gathering (`evaluate.gather`): one class per kind of input, and nothing that
compares a modality or task string. End-to-end runs are in test_pipeline and the scenario tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import trustforge.evaluate as evaluate
from trustforge.data import INPUT_KINDS, RawData
from trustforge.evaluate._kind_evidence import KIND_EVIDENCE
from trustforge.spec import load_spec


def test_the_evidence_is_evaluates_api():
    assert {"gather", "calibrate", "EVIDENCE", "EXPLANATIONS"} <= set(evaluate.__all__)
    assert (evaluate.EVIDENCE, evaluate.EXPLANATIONS) == ("evidence.json", "explanations.safetensors")


def test_every_kind_of_input_has_its_evidence():
    assert set(KIND_EVIDENCE) == set(INPUT_KINDS)
    for name, kind in KIND_EVIDENCE.items():
        assert kind.name == name


@pytest.mark.parametrize(
    ("name", "spec", "skipped"),
    [
        ("table", {"data": {"source": "builtin:iris"}, "model": {"kind": "mlp"}}, set()),
        (
            "series",
            {"task": "forecasting", "data": {"source": "builtin:air_passengers"}, "model": {"kind": "mlp"}},
            {"calibration", "explanations"},
        ),
        (
            "interactions",
            {"task": "recommendation", "data": {"source": "builtin:movielens_small"}},
            {"calibration", "corruptions", "explanations"},
        ),
    ],
)
def test_what_does_not_apply_is_said_with_its_reason(name, spec, skipped):
    spec, kind = load_spec(spec), KIND_EVIDENCE[name]
    reasons = kind.not_applicable(spec)
    assert set(reasons) == skipped and all(isinstance(r, str) and len(r) > 20 for r in reasons.values())
    quiet = spec.model_copy(update={"evaluate": spec.evaluate.model_copy(update={"explain": False, "corruptions": False})})
    assert set(kind.not_applicable(quiet)) == skipped - {"explanations", "corruptions"}


def test_a_csv_shift_set_of_a_forecaster_reads_as_a_series(tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"passengers": np.arange(40.0)}).to_csv(path, index=False)
    spec = load_spec(
        {
            "task": "forecasting",
            "data": {"source": "builtin:air_passengers"},
            "model": {"kind": "mlp"},
            "evaluate": {"shift": f"csv:{path}"},
        }
    )
    model = SimpleNamespace(schema=SimpleNamespace(target="passengers"))
    shifted = KIND_EVIDENCE["series"].read_shift(spec, model)
    assert isinstance(shifted, RawData) and shifted.modality == "series" and len(shifted) == 40
    assert KIND_EVIDENCE["table"].read_shift(spec, model).modality == "table"  # a table model reads it as it is


def test_a_kind_without_a_noise_model_gives_no_corruption_table():
    spec = load_spec({"task": "recommendation", "data": {"source": "builtin:movielens_small"}})
    assert KIND_EVIDENCE["interactions"].corruptions(spec, model=None, raw=None, metric="rmse") is None
