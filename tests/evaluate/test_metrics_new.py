"""PR-AUC, MAPE, sMAPE and the forecasting metric set, against reference computations."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, mean_absolute_percentage_error

from trustforge.evaluate import compute_metrics, validation_metrics
from trustforge.evaluate._metrics import classification_metrics, forecasting_metrics, mape, smape
from trustforge.spec import load_spec


def binary_proba(score: np.ndarray) -> np.ndarray:
    return np.c_[1 - score, score]


@pytest.mark.parametrize("seed", range(25))
def test_pr_auc_matches_sklearn_average_precision(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = (rng.random(n) < rng.uniform(0.01, 0.6)).astype(np.int64)
    y[rng.integers(n)] = 1  # at least one positive
    # Rounded scores make many ties, where a careless implementation depends on row order.
    score = np.round(np.clip(rng.random(n) * 0.7 + y * rng.uniform(0, 0.3), 0, 1), int(rng.integers(1, 4)))
    ours = classification_metrics(y, binary_proba(score), ["neg", "pos"])["pr_auc"]
    assert ours == pytest.approx(average_precision_score(y, score), abs=1e-12)


def test_pr_auc_does_not_depend_on_the_order_of_tied_rows():
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    score = np.array([0.9, 0.9, 0.5, 0.5, 0.5, 0.2, 0.2, 0.1])
    perm = np.random.default_rng(0).permutation(len(y))
    a = classification_metrics(y, binary_proba(score), ["a", "b"])["pr_auc"]
    b = classification_metrics(y[perm], binary_proba(score[perm]), ["a", "b"])["pr_auc"]
    assert a == pytest.approx(b) == pytest.approx(average_precision_score(y, score))


def test_pr_auc_of_a_random_score_is_near_the_positive_rate_and_a_perfect_one_is_one():
    rng = np.random.default_rng(1)
    y = (rng.random(20_000) < 0.02).astype(np.int64)
    random = classification_metrics(y, binary_proba(rng.random(len(y))), ["legit", "fraud"])["pr_auc"]
    assert abs(random - y.mean()) < 0.01
    perfect = classification_metrics(y, binary_proba(y * 0.8 + 0.1), ["legit", "fraud"])["pr_auc"]
    assert perfect == 1.0


def test_multiclass_pr_auc_is_the_one_vs_rest_macro_average():
    rng = np.random.default_rng(2)
    k, n = 4, 300
    y = rng.integers(0, k, n)
    proba = rng.dirichlet(np.ones(k), n)
    proba[np.arange(n), y] += 0.3
    proba /= proba.sum(axis=1, keepdims=True)
    ours = classification_metrics(y, proba, list("abcd"))["pr_auc"]
    assert ours == pytest.approx(average_precision_score(np.eye(k)[y], proba, average="macro"), abs=1e-12)


def test_pr_auc_is_none_without_positives():
    y = np.zeros(10, dtype=np.int64)
    m = classification_metrics(y, binary_proba(np.linspace(0, 1, 10)), ["a", "b"])
    assert m["pr_auc"] is None
    json.dumps(m)


def test_pr_auc_is_a_classification_metric_of_the_spec():
    spec = load_spec({"evaluate": {"metrics": ["pr_auc"]}, "train": {"early_stopping": {"monitor": "val_pr_auc"}}})
    assert spec.evaluate.metrics == ["pr_auc"]


def test_validation_logs_pr_auc_when_early_stopping_watches_it():
    fn = validation_metrics("classification", ["a", "b"], names=("pr_auc",))
    out = torch.tensor([[2.0, -1.0], [-1.0, 2.0], [0.0, 0.5], [1.0, 0.0]])
    logs = fn(out, torch.tensor([0, 1, 1, 0]))
    assert logs["pr_auc"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------- MAPE, sMAPE


@pytest.mark.parametrize("seed", range(10))
def test_mape_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 50, 200)
    y[:3] = [0.0, 1e-9, -4.0]  # zero and tiny denominators are where definitions differ
    pred = y + rng.normal(0, 5, 200)
    assert mape(y, pred) == pytest.approx(mean_absolute_percentage_error(y, pred), rel=1e-12)


def smape_reference(y: np.ndarray, pred: np.ndarray) -> float:
    """The M4 competition's formula, term by term, with 0/0 counted as a perfect forecast."""
    terms = []
    for a, f in zip(y, pred):
        denom = abs(a) + abs(f)
        terms.append(0.0 if denom == 0 else 2 * abs(f - a) / denom)
    return sum(terms) / len(terms)


@pytest.mark.parametrize("seed", range(10))
def test_smape_matches_the_direct_formula(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(100, 30, 100)
    pred = y * rng.uniform(0.5, 1.5, 100)
    y[0] = pred[0] = 0.0
    y[1], pred[1] = 0.0, 3.0  # a zero truth: the term is 2, the maximum
    assert smape(y, pred) == pytest.approx(smape_reference(y, pred), rel=1e-12)
    assert 0 <= smape(y, pred) <= 2


def test_mape_and_smape_are_symmetric_where_they_should_be():
    y, pred = np.array([100.0, 200.0]), np.array([110.0, 180.0])
    assert mape(y, pred) == pytest.approx((0.1 + 0.1) / 2)
    assert smape(y, pred) == pytest.approx(smape(pred, y))  # sMAPE is symmetric, MAPE is not
    assert mape(y, pred) != pytest.approx(mape(pred, y))


# ---------------------------------------------------------------------------- forecasting set


def test_forecasting_metrics_report_the_baseline_on_the_same_windows():
    y = np.array([[10.0, 12.0], [11.0, 13.0], [12.0, 15.0]])
    pred = y + np.array([[1.0, -1.0], [0.0, 2.0], [-1.0, 0.0]])
    base = y + 4.0
    m = forecasting_metrics(y, pred, base)
    assert m["mae"] == pytest.approx(5 / 6)
    assert m["rmse"] == pytest.approx(np.sqrt(7 / 6))
    assert m["mae_by_step"] == pytest.approx([2 / 3, 1.0])
    assert m["baseline_seasonal_naive_mae"] == pytest.approx(4.0)
    assert m["baseline_seasonal_naive_rmse"] == pytest.approx(4.0)
    assert m["mae_ratio_to_baseline"] == pytest.approx((5 / 6) / 4)
    assert m["mape"] == pytest.approx(mape(y, pred)) and m["smape"] == pytest.approx(smape(y, pred))
    json.dumps(m)


def test_forecasting_metrics_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(N, H\)"):
        forecasting_metrics(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="baseline"):
        forecasting_metrics(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((2, 2)))


def test_compute_metrics_dispatches_forecasting():
    y = np.arange(6.0).reshape(3, 2) + 1
    m = compute_metrics("forecasting", y, y_pred=y, baseline=y + 1)
    assert m["mae"] == 0 and m["n"] == 3 and m["mae_ratio_to_baseline"] == 0


def test_validation_metrics_take_forecast_horizons_value_by_value():
    fn = validation_metrics("forecasting", None)
    out = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logs = fn(out, torch.tensor([[1.0, 1.0], [3.0, 6.0]]))
    assert logs["mae"] == pytest.approx(0.75)
    assert logs["rmse"] == pytest.approx(np.sqrt(5 / 4))
