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


def _digits_split(scale: float):
    """(spec, data, validation logits, test logits): logistic regression on digits, logits scaled."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
    x_val, x_te, y_val, y_te = train_test_split(x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    lr = LogisticRegression(max_iter=3000).fit(x_tr / 16, y_tr)
    data = SimpleNamespace(
        schema=SimpleNamespace(classes=[str(i) for i in range(10)]),
        validation=SimpleNamespace(target=torch.tensor(y_val)),
        test=SimpleNamespace(target=torch.tensor(y_te)),
    )
    val = torch.tensor(lr.decision_function(x_val / 16) * scale, dtype=torch.float32)
    test = torch.tensor(lr.decision_function(x_te / 16) * scale, dtype=torch.float32)
    return load_spec({"data": {"source": "builtin:digits"}}), data, val, test


def test_calibrate_keeps_t_1_on_a_separable_validation_split_and_says_why():
    from sklearn.metrics import log_loss

    spec, data, val, test = _digits_split(3.0)
    right = val.argmax(1) == data.validation.target
    data.validation.target = data.validation.target[right]  # only the rows the model gets right: separable
    cal = evaluate.calibrate(spec, data, val[right], test)
    assert cal["method"] == "temperature" and cal["served"] == "raw" and cal["temperature"] is None
    assert "separable" in cal["reason"]
    assert cal["ece_after"] is None and cal["log_loss_after"] is None and cal["bins_after"] is None
    proba = torch_softmax(test)
    assert cal["log_loss_before"] == pytest.approx(log_loss(data.test.target.numpy(), proba, labels=range(10)), rel=1e-6)
    assert len(cal["bins_before"]) == 15


def test_calibrate_serves_a_temperature_that_helps_and_reports_both_sides():
    spec, data, val, test = _digits_split(4.0)  # over-confident on purpose
    cal = evaluate.calibrate(spec, data, val, test)
    assert cal["served"] == "temperature" and cal["reason"] is None and cal["temperature"] > 1
    assert cal["log_loss_after"] < cal["log_loss_before"] and cal["ece_after"] < cal["ece_before"]
    none = evaluate.calibrate(load_spec({"evaluate": {"calibrate": "none"}}), data, val, test)
    assert none["served"] == "raw" and none["method"] == "none" and none["reason"] == "evaluate.calibrate is none"
    assert none["ece_before"] == cal["ece_before"]
    metrics = evaluate.Evaluation({}, cal, []).with_evidence({}, {})
    assert metrics["ece"] == cal["ece_after"]  # the served model's


def torch_softmax(logits):
    import torch

    return torch.softmax(logits.double(), 1).numpy()
