"""Calibration error, temperature scaling and ROC/PR curves, checked by hand and against sklearn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trustforge.evaluate._calibration import (
    MIN_ROWS,
    T_MAX,
    _counts_at_thresholds,
    _pr_points,
    _roc_points,
    apply_temperature,
    calibration,
    choose_threshold,
    curves,
    fit_temperature,
    guarded_temperature,
)


def hand_ece(proba: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """ECE written out loop by loop from its definition, bins (lo, hi], 0 in the first bin."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            total += inside.sum() / len(y) * abs(correct[inside].mean() - conf[inside].mean())
    return total


@pytest.fixture(scope="module")
def digits_logits():
    """Logistic-regression logits on digits for train/validation/test, and the labels."""
    x, y = load_digits(return_X_y=True)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
    x_val, x_te, y_val, y_te = train_test_split(x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.05)).fit(x_tr, y_tr)
    return (
        torch.tensor(model.decision_function(x_val)),
        torch.tensor(y_val),
        torch.tensor(model.decision_function(x_te)),
        torch.tensor(y_te),
    )


@pytest.fixture(scope="module")
def cancer_logits():
    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
    x_val, x_te, y_val, y_te = train_test_split(x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.05)).fit(x_tr, y_tr)
    return (
        torch.tensor(model.decision_function(x_val)),
        torch.tensor(y_val),
        torch.tensor(model.decision_function(x_te)),
        torch.tensor(y_te),
    )


# --- expected calibration error ----------------------------------------------------------------


def test_ece_matches_hand_computation_on_a_real_model(digits_logits) -> None:
    _, _, logits, y = digits_logits
    proba = torch.softmax(logits * 3, dim=1).numpy()
    for n_bins in (1, 5, 15):
        result = calibration(proba, y.numpy(), n_bins=n_bins)
        assert result["ece"] == pytest.approx(hand_ece(proba, y.numpy(), n_bins), rel=1e-12, abs=1e-15)
    assert result["ece"] > 0.01  # scaled-up logits really are miscalibrated: the check is not 0 == 0


def test_ece_worked_example() -> None:
    # 4 bins of width 0.25; top-label confidences 0.7 (right), 0.35 (wrong: the tie goes to
    # class 1), 0.9 (right), 0.8 (wrong), 0.6 (right).
    # (0.25, 0.5]: {0.35}        accuracy 0,   confidence 0.35 -> 0.35 * 1/5
    # (0.5, 0.75]: {0.7, 0.6}    accuracy 1,   confidence 0.65 -> 0.35 * 2/5
    # (0.75, 1]:   {0.9, 0.8}    accuracy 0.5, confidence 0.85 -> 0.35 * 2/5
    proba = np.array([[0.7, 0.3, 0.0], [0.3, 0.35, 0.35], [0.05, 0.05, 0.9], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2]])
    y = np.array([0, 0, 2, 1, 1])
    expected = 0.35 / 5 + 0.35 * 2 / 5 + 0.35 * 2 / 5
    result = calibration(proba, y, n_bins=4)
    assert result["ece"] == pytest.approx(expected, rel=1e-12)
    assert [b["count"] for b in result["bins"]] == [0, 1, 2, 2]
    assert result["bins"][0]["confidence"] is None and result["bins"][0]["accuracy"] is None
    assert result["bins"][3]["accuracy"] == pytest.approx(0.5)
    assert result["bins"][3]["confidence"] == pytest.approx(0.85)
    assert [(b["lo"], b["hi"]) for b in result["bins"]] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    json.dumps(result)


def test_ece_is_zero_when_perfectly_calibrated() -> None:
    # Per confidence level c, a fraction c of the predictions is right: accuracy == confidence.
    rows, labels = [], []
    for conf, n_right, n in ((0.6, 6, 10), (0.75, 3, 4), (0.9, 9, 10), (1.0, 5, 5)):
        rows += [[1 - conf, conf]] * n
        labels += [1] * n_right + [0] * (n - n_right)
    result = calibration(np.array(rows), np.array(labels))
    assert result["ece"] == pytest.approx(0.0, abs=1e-12)
    assert sum(b["count"] for b in result["bins"]) == len(labels) == result["n"]


def test_edges_fall_in_the_lower_bin_and_one_in_the_last() -> None:
    proba = np.array([0.5, 0.75, 1.0, 0.0])  # P(class 1): confidences 0.5, 0.75, 1.0, 1.0
    result = calibration(proba, np.array([1, 1, 1, 0]), n_bins=4)
    assert [b["count"] for b in result["bins"]] == [0, 1, 1, 2]


@pytest.mark.parametrize(
    "proba, y, match",
    [
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "0 samples"),
        (np.full((2, 2), 0.5), np.array([0, 2]), "0..1"),
        (np.full((2, 2), 0.5), np.array([0, 1, 1]), "shape"),
        (np.array([[np.nan, 1.0]]), np.array([0]), "finite"),
        (np.full((2, 2), 0.5), np.array([0.5, 1.0]), "integer"),
    ],
)
def test_calibration_rejects_bad_input(proba, y, match) -> None:
    with pytest.raises(ValueError, match=match):
        calibration(proba, y)


# --- temperature scaling -----------------------------------------------------------------------


def test_temperature_fixes_an_over_confident_model(digits_logits) -> None:
    val_logits, y_val, test_logits, y_test = digits_logits
    val_logits, test_logits = val_logits * 5, test_logits * 5  # over-confident on purpose
    t = fit_temperature(val_logits, y_val)
    assert t > 1.0
    assert F.cross_entropy(apply_temperature(val_logits, t), y_val) < F.cross_entropy(val_logits, y_val)
    before = calibration(torch.softmax(test_logits, 1).numpy(), y_test.numpy())["ece"]
    scaled = torch.softmax(apply_temperature(test_logits, t), 1)
    after = calibration(scaled.numpy(), y_test.numpy())["ece"]
    assert after < before
    assert torch.equal(scaled.argmax(1), test_logits.argmax(1))  # accuracy untouched
    # NLL at the fitted T is a minimum: no better a little either side.
    nll = [float(F.cross_entropy(val_logits / s, y_val)) for s in (t * 0.97, t, t * 1.03)]
    assert nll[1] <= min(nll[0], nll[2])


def test_temperature_below_one_for_an_under_confident_model(digits_logits) -> None:
    val_logits, y_val, _, _ = digits_logits
    assert fit_temperature(val_logits * 0.2, y_val) < 1.0


def test_one_logit_binary_matches_the_two_logit_softmax(cancer_logits) -> None:
    val_logits, y_val, test_logits, y_test = cancer_logits
    z = val_logits * 5
    t_one = fit_temperature(z.reshape(-1, 1), y_val)
    # softmax([0, z / T]) == sigmoid(z / T): both fits must find the same T.
    t_two = fit_temperature(torch.stack([torch.zeros_like(z), z], dim=1), y_val)
    assert t_one > 1.0
    assert t_one == pytest.approx(t_two, rel=1e-4)
    bce = F.binary_cross_entropy_with_logits
    assert bce(apply_temperature(z, t_one), y_val.double()) < bce(z, y_val.double())
    p_before = torch.sigmoid(test_logits * 5).numpy()
    p_after = torch.sigmoid(apply_temperature(test_logits * 5, t_one)).numpy()
    assert calibration(p_after, y_test.numpy())["ece"] < calibration(p_before, y_test.numpy())["ece"]


def test_temperature_is_clamped_on_separable_data() -> None:
    # Every validation sample right: the NLL keeps falling as T -> 0, so the fit stops at the bound.
    logits = torch.tensor([[2.0, -1.0], [-1.0, 3.0], [1.5, 0.0], [0.0, 1.0]])
    assert fit_temperature(logits, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.05)
    # All wrong: the NLL falls as T grows.
    assert fit_temperature(logits, torch.tensor([1, 0, 1, 0])) == pytest.approx(20.0)


def test_temperature_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="samples"):
        fit_temperature(torch.zeros(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="finite"):
        fit_temperature(torch.tensor([[float("inf"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="0..1"):
        fit_temperature(torch.zeros(2, 1), torch.tensor([0, 2]))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            apply_temperature(torch.zeros(2, 2), bad)


# --- guards: a temperature is served only when the validation split identifies it -------------


def test_a_separable_validation_split_keeps_t_1(digits_logits) -> None:
    """The digits failure: every validation row right, so the bare fit runs to T = 0.05 and
    sharpens test predictions until a wrong one gives its true class almost nothing."""
    val_logits, y_val, test_logits, y_test = digits_logits
    right = val_logits.argmax(1) == y_val
    z, y = val_logits[right] * 3, y_val[right]  # synthetic: the correctly classified rows, confident
    assert len(z) >= MIN_ROWS
    assert fit_temperature(z, y) == pytest.approx(0.05)  # what the unguarded fit would serve
    t, reason = guarded_temperature(z, y)
    assert t is None and "separable" in reason
    # What T = 0.05 would have done to the test split's wrong rows, which T = 1 leaves alone.
    wrong = (test_logits * 3).argmax(1) != y_test
    assert wrong.any()
    sharp = torch.softmax(test_logits[wrong] * 3 / 0.05, 1)[torch.arange(int(wrong.sum())), y_test[wrong]]
    raw = torch.softmax(test_logits[wrong] * 3, 1)[torch.arange(int(wrong.sum())), y_test[wrong]]
    assert float(sharp.min()) < 1e-6 < float(raw.min())


def test_a_one_logit_separable_split_keeps_t_1() -> None:
    z = torch.linspace(-4, 4, 60)
    y = (z > 0).long()
    t, reason = guarded_temperature(z.reshape(-1, 1), y)
    assert t is None and "separable" in reason


def test_too_few_validation_rows_keep_t_1(digits_logits) -> None:
    val_logits, y_val, _, _ = digits_logits
    t, reason = guarded_temperature(val_logits[: MIN_ROWS - 1] * 5, y_val[: MIN_ROWS - 1])
    assert t is None and f"{MIN_ROWS - 1} rows" in reason


def test_a_fit_at_its_bound_keeps_t_1() -> None:
    # Confident logits unrelated to the labels: the likelihood is best at T -> infinity.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 3, generator=g, dtype=torch.float64) * 20
    y = torch.randint(0, 3, (200,), generator=g)
    assert fit_temperature(z, y) == pytest.approx(T_MAX)
    t, reason = guarded_temperature(z, y)
    assert t is None and "bound" in reason


def test_one_error_does_not_identify_a_temperature(digits_logits) -> None:
    """One wrong row among 80: the half without it is separable, and its fit ruins the other half."""
    val_logits, y_val, _, _ = digits_logits
    right = torch.nonzero(val_logits.argmax(1) == y_val).reshape(-1)[:79]
    wrong = torch.nonzero(val_logits.argmax(1) != y_val).reshape(-1)[:1]
    rows = torch.cat([right, wrong])
    z, y = val_logits[rows] * 2, y_val[rows]
    t_bare = fit_temperature(z, y)
    assert 0.05 < t_bare < 1  # the bare fit would sharpen, inside its bounds
    t, reason = guarded_temperature(z, y)
    assert t is None and "half" in reason


def test_an_over_confident_model_gets_its_temperature(digits_logits) -> None:
    val_logits, y_val, test_logits, y_test = digits_logits
    t, reason = guarded_temperature(val_logits * 5, y_val)
    assert reason is None and t == pytest.approx(fit_temperature(val_logits * 5, y_val))
    assert t > 1
    nll = F.cross_entropy
    assert nll(test_logits * 5 / t, y_test) < nll(test_logits * 5, y_test)  # it carries to the test split


# --- decision thresholds, against a brute force over sklearn's precision-recall curve -----------


def _sklearn_choice(score: np.ndarray, positive: np.ndarray, objective) -> float:
    """The highest of sklearn's thresholds that maximises `objective(precision, recall, fp, fn)`."""
    precision, recall, thresholds = skm.precision_recall_curve(positive, score)
    best, best_t = -np.inf, -np.inf
    for p, r, t in zip(precision[:-1], recall[:-1], thresholds):
        pred = score >= t
        fp, fn = int((pred & ~positive).sum()), int((~pred & positive).sum())
        value = objective(p, r, fp, fn)
        if value > best or (value == best and t > best_t):
            best, best_t = value, t
    return best_t


@pytest.mark.parametrize(
    "rule, objective",
    [
        ("f1", lambda p, r, fp, fn: 2 * p * r / (p + r) if p + r else 0.0),
        ("precision@recall=0.98", lambda p, r, fp, fn: p if r >= 0.98 else -np.inf),
        ("recall@precision=0.95", lambda p, r, fp, fn: r if p >= 0.95 else -np.inf),
        ({"cost": {"fp": 1.0, "fn": 5.0}}, lambda p, r, fp, fn: -(1.0 * fp + 5.0 * fn)),
    ],
    ids=["f1", "precision@recall", "recall@precision", "cost"],
)
def test_threshold_rules_classify_validation_as_sklearns_best(cancer_logits, rule, objective) -> None:
    val_logits, y_val, _, _ = cancer_logits
    score = torch.sigmoid(val_logits * 0.5).numpy()  # softened, so the rules have choices to make
    positive = y_val.numpy() == 0  # malignant, the minority, is class 0 in sklearn's data
    score = 1 - score  # P(malignant)
    chosen = choose_threshold(score, positive, rule)
    assert chosen["chosen_on"] == "validation" and chosen["note"].startswith("chosen on")
    expected = _sklearn_choice(score, positive, objective)
    np.testing.assert_array_equal(score >= chosen["value"], score >= expected)
    assert chosen["value"] <= expected  # the midpoint below the chosen score
    if rule == "precision@recall=0.98":
        assert skm.recall_score(positive, score >= chosen["value"]) >= 0.98
        assert chosen["rule"] == "precision@recall=0.98"


def test_thresholds_fall_back_to_0_5_with_a_note() -> None:
    score, positive = np.array([0.1, 0.4, 0.6, 0.9]), np.array([True, True, False, False])
    assert choose_threshold(None, None, "f1") == {
        "value": 0.5,
        "rule": "f1",
        "chosen_on": "default",
        "note": "no validation split to choose the threshold on by f1; the threshold is 0.5",
    }
    infeasible = choose_threshold(score, positive, "recall@precision=0.99")
    assert infeasible["value"] == 0.5 and infeasible["chosen_on"] == "default" and "precision 0.99" in infeasible["note"]
    one_class = choose_threshold(score, np.zeros(4, dtype=bool), "f1")
    assert one_class["chosen_on"] == "default" and "no positive" in one_class["note"]
    assert choose_threshold(score, positive, None) == {
        "value": 0.5,
        "rule": "0.5",
        "chosen_on": "default",
        "note": "the default (evaluate.threshold is not set)",
    }
    assert "no validation split" in choose_threshold(None, None, None)["note"]
    assert choose_threshold(score, positive, 0.3)["value"] == 0.3


# --- ROC and PR curves -------------------------------------------------------------------------


def test_curves_match_sklearn_per_class(digits_logits) -> None:
    _, _, logits, y = digits_logits
    proba = torch.softmax(logits, 1).numpy()
    y = y.numpy()
    # Rounding makes ties, which the threshold grouping must handle as sklearn does.
    for p in (proba, proba.round(2)):
        labels = [f"digit {i}" for i in range(10)]
        result = curves(y, p, labels, max_points=50)
        json.dumps(result)
        assert set(result["roc"]["per_class"]) == set(labels) == set(result["pr"]["per_class"])
        for c, label in enumerate(labels):
            roc, pr = result["roc"]["per_class"][label], result["pr"]["per_class"][label]
            assert roc["auc"] == pytest.approx(skm.roc_auc_score(y == c, p[:, c]), rel=1e-12)
            assert pr["ap"] == pytest.approx(skm.average_precision_score(y == c, p[:, c]), rel=1e-12)
            assert 2 <= len(roc["fpr"]) == len(roc["tpr"]) <= 50
            assert len(pr["precision"]) == len(pr["recall"]) <= 50
            assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
            assert (pr["recall"][-1], pr["precision"][-1]) == (0.0, 1.0)
            assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)


def test_full_curves_equal_sklearns_points(cancer_logits) -> None:
    _, _, logits, y = cancer_logits
    score, positive = torch.sigmoid(logits).numpy().round(2), y.numpy() == 1
    fps, tps = _counts_at_thresholds(positive, score)
    fpr, tpr = _roc_points(fps, tps)
    sk_fpr, sk_tpr, _ = skm.roc_curve(positive, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=1e-12)
    precision, recall = _pr_points(fps, tps)
    sk_p, sk_r, _ = skm.precision_recall_curve(positive, score)
    np.testing.assert_allclose(precision, sk_p, rtol=1e-12)
    np.testing.assert_allclose(recall, sk_r, rtol=1e-12)


def test_binary_curves_give_the_positive_class_only(cancer_logits) -> None:
    _, _, logits, y = cancer_logits
    p1 = torch.sigmoid(logits).numpy()
    proba = np.stack([1 - p1, p1], axis=1)
    result = curves(y.numpy(), proba, ["malignant", "benign"], max_points=1000)
    assert list(result["roc"]["per_class"]) == ["benign"] == list(result["pr"]["per_class"])
    benign = result["roc"]["per_class"]["benign"]
    assert benign["auc"] == pytest.approx(skm.roc_auc_score(y.numpy(), p1), rel=1e-12)
    assert result["pr"]["per_class"]["benign"]["ap"] == pytest.approx(skm.average_precision_score(y.numpy(), p1), rel=1e-12)
    # Not thinned below max_points: the points are sklearn's full curve.
    assert len(benign["fpr"]) == len(skm.roc_curve(y.numpy(), p1, drop_intermediate=False)[0])


def test_absent_classes_give_empty_curves() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    result = curves(np.array([0, 1, 0]), proba, ["a", "b", "c"])
    assert result["roc"]["per_class"]["c"] == {"fpr": [], "tpr": [], "auc": None}
    assert result["pr"]["per_class"]["c"] == {"precision": [], "recall": [], "ap": None}
    assert result["roc"]["per_class"]["a"]["auc"] == pytest.approx(1.0)
    only_positive = curves(np.array([1, 1]), np.array([[0.3, 0.7], [0.4, 0.6]]), ["n", "p"])
    assert only_positive["roc"]["per_class"]["p"]["auc"] is None
    assert only_positive["pr"]["per_class"]["p"]["ap"] == pytest.approx(1.0)


def test_curves_reject_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="labels"):
        curves(np.array([0, 1]), np.full((2, 3), 1 / 3), ["a", "b"])


def test_binary_curves_follow_the_positive_class(cancer_logits) -> None:
    _, _, logits, y = cancer_logits
    p1 = torch.sigmoid(logits).numpy()
    proba = np.stack([1 - p1, p1], axis=1)
    out = curves(y.numpy(), proba, ["malignant", "benign"], positive=0)
    assert list(out["pr"]["per_class"]) == ["malignant"]
    assert out["pr"]["per_class"]["malignant"]["ap"] == pytest.approx(skm.average_precision_score(y.numpy() == 0, proba[:, 0]))
    assert out["roc"]["per_class"]["malignant"]["auc"] == pytest.approx(skm.roc_auc_score(y.numpy() == 0, proba[:, 0]))
