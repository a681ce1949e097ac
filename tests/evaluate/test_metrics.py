"""Check trustforge's numpy metrics against sklearn.metrics, the reference."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trustforge.evaluate._metrics import classification_metrics, regression_metrics

REL = 1e-9

CLASSIFICATION_KEYS = {
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "pr_auc",  # checked against sklearn in test_metrics_new.py
    "log_loss",
    "confusion_matrix",
    "support",
}
BINARY_KEYS = {"precision", "recall", "f1"}


def sklearn_roc_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """sklearn's AUC, or None where sklearn calls it undefined (NaN or an error)."""
    k = proba.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if k == 2:
                value = skm.roc_auc_score(y, proba[:, 1])
            else:
                value = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(k)))
        except ValueError:
            return None
    return None if math.isnan(value) else float(value)


def assert_matches_sklearn(y: np.ndarray, proba: np.ndarray) -> dict[str, object]:
    """Compare every key of classification_metrics with sklearn; return ours.

    Where sklearn counts an undefined ratio as 0, ours is None with a note: the positive class's
    recall and F1 with no row of it, its precision with none predicted; and the macro averages
    are over the classes y holds (sklearn's `labels` set to those)."""
    k = proba.shape[1]
    labels = [f"class_{i}" for i in range(k)]
    ours = classification_metrics(y, proba, labels)
    json.dumps(ours)  # plain Python types only

    expected_keys = CLASSIFICATION_KEYS | (BINARY_KEYS if k == 2 else set())
    assert set(ours) - {"notes"} == expected_keys

    pred = proba.argmax(axis=1)
    idx = list(range(k))
    present = sorted(set(y.tolist()))
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), rel=REL)
    for average, over in (("macro", present), ("weighted", idx)):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=over, average=average, zero_division=0)
        assert ours[f"precision_{average}"] == pytest.approx(p, rel=REL, abs=1e-15)
        assert ours[f"recall_{average}"] == pytest.approx(r, rel=REL, abs=1e-15)
        assert ours[f"f1_{average}"] == pytest.approx(f, rel=REL, abs=1e-15)
    notes = ours.get("notes", {})
    assert ("macro" in notes) == (len(present) < k)
    if k == 2:
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=idx, average=None, zero_division=0)
        for name, value, defined in (("precision", p[1], 1 in pred), ("recall", r[1], 1 in y), ("f1", f[1], 1 in y)):
            if defined:
                assert ours[name] == pytest.approx(value, rel=REL, abs=1e-15)
            else:
                assert ours[name] is None and notes[name].startswith("undefined: "), name
    for name in ("roc_auc", "pr_auc"):
        assert (ours[name] is None) == (name in notes)

    expected_auc = sklearn_roc_auc(y, proba)
    if expected_auc is None:
        assert ours["roc_auc"] is None
    else:
        assert ours["roc_auc"] == pytest.approx(expected_auc, rel=REL)
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=idx), rel=REL)
    assert ours["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=idx).tolist()
    assert ours["support"] == np.bincount(y, minlength=k).tolist()
    return ours


def fitted_proba(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Held-out labels and predict_proba of a logistic regression."""
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x_train, y_train)
    return y_test.astype(np.int64), model.predict_proba(x_test)


# --- real fitted models -------------------------------------------------------


@pytest.mark.parametrize("loader", [load_breast_cancer, load_iris, load_digits])
def test_fitted_model_matches_sklearn(loader) -> None:
    x, y = loader(return_X_y=True)
    y_test, proba = fitted_proba(x, y)
    ours = assert_matches_sklearn(y_test, proba)
    assert ours["roc_auc"] is not None
    assert len(ours["confusion_matrix"]) == proba.shape[1]


def test_binary_positive_class_matches_sklearn_binary_average() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    y_test, proba = fitted_proba(x, y)
    ours = classification_metrics(y_test, proba, ["malignant", "benign"])
    pred = proba.argmax(axis=1)
    assert ours["precision"] == pytest.approx(skm.precision_score(y_test, pred), rel=REL)
    assert ours["recall"] == pytest.approx(skm.recall_score(y_test, pred), rel=REL)
    assert ours["f1"] == pytest.approx(skm.f1_score(y_test, pred), rel=REL)


@pytest.mark.parametrize("threshold", [0.5, 0.05, 0.9])
def test_a_positive_class_and_threshold_match_sklearn(threshold) -> None:
    """Malignant (class 0) positive, predicted when P(malignant) >= threshold: sklearn with pos_label=0."""
    x, y = load_breast_cancer(return_X_y=True)
    y_test, proba = fitted_proba(x, y)
    ours = classification_metrics(y_test, proba, ["malignant", "benign"], positive=0, threshold=threshold)
    pred = np.where(proba[:, 0] >= threshold, 0, 1)
    assert ours["precision"] == pytest.approx(skm.precision_score(y_test, pred, pos_label=0), rel=REL)
    assert ours["recall"] == pytest.approx(skm.recall_score(y_test, pred, pos_label=0), rel=REL)
    assert ours["f1"] == pytest.approx(skm.f1_score(y_test, pred, pos_label=0), rel=REL)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_test, pred), rel=REL)
    assert ours["confusion_matrix"] == skm.confusion_matrix(y_test, pred, labels=[0, 1]).tolist()  # both classes kept
    assert ours["f1_macro"] == pytest.approx(skm.f1_score(y_test, pred, average="macro"), rel=REL)
    assert ours["roc_auc"] == pytest.approx(skm.roc_auc_score(y_test == 0, proba[:, 0]), rel=REL)
    assert ours["pr_auc"] == pytest.approx(skm.average_precision_score(y_test == 0, proba[:, 0]), rel=REL)
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y_test, proba), rel=1e-6)
    if threshold == 0.05:  # a low threshold finds more malignant cases than the argmax
        argmax = classification_metrics(y_test, proba, ["malignant", "benign"], positive=0)
        assert ours["recall"] > argmax["recall"] and ours["precision"] < argmax["precision"]


def test_a_threshold_applies_to_two_classes_only() -> None:
    proba = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="2 labels"):
        classification_metrics(np.array([0, 1, 2]), proba, ["a", "b", "c"], threshold=0.5)


def test_float32_proba_log_loss_uses_float32_eps() -> None:
    x, y = load_digits(return_X_y=True)
    y_test, proba = fitted_proba(x, y)
    proba32 = proba.astype(np.float32)
    proba32[0] = 0.0
    proba32[0, (y_test[0] + 1) % 10] = 1.0  # confidently wrong: hits the clip
    assert_matches_sklearn(y_test, proba32)


# --- adversarial cases ----------------------------------------------------------


def one_hot(index: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[index]


def test_binary_tied_scores() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=500)
    # Scores on a coarse grid, correlated with y: many ties across classes.
    p1 = np.clip(np.round(0.3 * y + rng.uniform(0, 0.7, size=500), 1), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    assert_matches_sklearn(y, proba)


def test_binary_all_scores_tied() -> None:
    y = np.array([0, 1, 1, 0, 1, 0, 0])
    proba = np.full((7, 2), 0.5)
    ours = assert_matches_sklearn(y, proba)
    assert ours["roc_auc"] == pytest.approx(0.5, rel=REL)


def test_multiclass_tied_scores() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=400)
    raw = np.round(rng.uniform(size=(400, 3)) + one_hot(y, 3) * 0.4, 1)
    proba = raw / raw.sum(axis=1, keepdims=True)
    assert_matches_sklearn(y, proba)


def test_class_never_predicted() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, size=200)
    raw = rng.uniform(size=(200, 3))
    raw[:, 2] *= 0.01  # class 2 occurs in y but never wins the argmax
    proba = raw / raw.sum(axis=1, keepdims=True)
    assert 2 not in proba.argmax(axis=1) and 2 in y
    ours = assert_matches_sklearn(y, proba)
    assert ours["roc_auc"] is not None


def test_class_absent_from_y_true_multiclass() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice([0, 1, 3], size=300)  # class 2 of 4 never occurs
    proba = rng.dirichlet(np.ones(4), size=300)
    assert 2 in proba.argmax(axis=1)
    ours = assert_matches_sklearn(y, proba)
    assert ours["roc_auc"] is None  # OvR AUC of class 2 is undefined
    assert ours["support"][2] == 0


def test_class_absent_from_y_true_and_predictions() -> None:
    y = np.array([0, 1, 1, 0, 1])
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    ours = assert_matches_sklearn(y, proba)
    assert ours["confusion_matrix"][2] == [0, 0, 0]
    assert [row[2] for row in ours["confusion_matrix"]] == [0, 0, 0]


@pytest.mark.parametrize("k", [2, 3, 10])
def test_perfect_predictions(k: int) -> None:
    y = np.arange(5 * k) % k
    ours = assert_matches_sklearn(y, one_hot(y, k))  # exact 0/1: log_loss clips
    assert ours["accuracy"] == 1.0
    assert ours["f1_macro"] == 1.0
    assert ours["roc_auc"] == 1.0


def test_worst_predictions_binary() -> None:
    y = np.array([0, 1, 0, 1])
    ours = assert_matches_sklearn(y, one_hot(1 - y, 2))
    assert ours["accuracy"] == 0.0
    assert ours["roc_auc"] == 0.0


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("only", [0, 1])
def test_single_class_y_true_roc_auc_is_none(k: int, only: int) -> None:
    rng = np.random.default_rng(4)
    y = np.full(50, only)
    proba = rng.dirichlet(np.ones(k), size=50)
    ours = assert_matches_sklearn(y, proba)
    assert ours["roc_auc"] is None


def test_no_row_of_the_positive_class_leaves_recall_and_f1_undefined() -> None:
    """Recall of a class with no labelled row is 0/0: None with the reason (as the AUCs), not 0;
    the macro averages are over the class the labels hold, not counting the absent one as 0."""
    y = np.zeros(4, dtype=np.int64)  # benign (0) only; malignant (1) is the positive class
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    ours = classification_metrics(y, proba, ["benign", "malignant"])
    assert ours["recall"] is None and ours["f1"] is None and ours["precision"] == 0.0  # 1 row predicted malignant, wrongly
    assert "none of the 4 labelled rows is of the positive class malignant" in ours["notes"]["recall"]
    assert ours["recall_macro"] == 0.75 and ours["f1_macro"] == pytest.approx(2 * 3 / (2 * 3 + 1))
    assert ours["precision_macro"] == 1.0
    assert "over the 1 of 2 classes the labels hold (no row of malignant)" in ours["notes"]["macro"]
    one = classification_metrics(np.array([0]), np.array([[0.9, 0.1]]), ["benign", "malignant"])
    assert one["recall_macro"] == 1.0 and one["precision"] is None  # not 0.5: the absent class does not count as 0
    assert "predicted the positive class malignant for none of the 1 labelled row" in one["notes"]["precision"]


# --- validation -------------------------------------------------------------------


def test_length_mismatch_raises() -> None:
    proba = np.full((4, 2), 0.5)
    with pytest.raises(ValueError, match="samples"):
        classification_metrics(np.array([0, 1, 0]), proba, ["a", "b"])
    with pytest.raises(ValueError, match="samples"):
        regression_metrics(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize(
    "proba",
    [np.full(4, 0.5), np.full((4, 3), 1 / 3), np.full((4, 2, 1), 0.5)],
    ids=["1-D", "wrong-K", "3-D"],
)
def test_bad_proba_shape_raises(proba: np.ndarray) -> None:
    with pytest.raises(ValueError, match="proba must have shape"):
        classification_metrics(np.array([0, 1, 0, 1]), proba, ["a", "b"])


def test_label_out_of_range_raises() -> None:
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics(np.array([0, 2]), np.full((2, 2), 0.5), ["a", "b"])


# --- regression ---------------------------------------------------------------------


def assert_regression_matches_sklearn(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    ours = regression_metrics(y, pred)
    json.dumps(ours)
    assert set(ours) == {"mae", "rmse", "r2"}
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=REL)
    assert ours["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), rel=REL)
    assert ours["r2"] == pytest.approx(skm.r2_score(y, pred), rel=REL)
    return ours


def test_regression_fitted_model() -> None:
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)
    pred = Ridge(alpha=1.0).fit(x_train, y_train).predict(x_test)
    ours = assert_regression_matches_sklearn(y_test, pred)
    assert 0 < ours["r2"] < 1


def test_regression_constant_target() -> None:
    y = np.full(10, 0.1)  # 0.1 is inexact in binary: mean must still match
    assert assert_regression_matches_sklearn(y, y.copy())["r2"] == 1.0
    assert assert_regression_matches_sklearn(y, y + 0.5)["r2"] == 0.0


def test_regression_perfect_and_worse_than_mean() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert assert_regression_matches_sklearn(y, y.copy())["r2"] == 1.0
    assert assert_regression_matches_sklearn(y, y[::-1].copy())["r2"] < 0


@pytest.mark.parametrize("label", [0, 1])
def test_pr_auc_on_labels_of_one_class_is_undefined_whichever_class_it_is(label):
    # A probe: all-positive labels gave pr_auc 1.0 (every ranking scores 1 there) while
    # all-negative ones gave n/a, and the README says both are n/a.
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    ours = classification_metrics(np.full(4, label), proba, ["a", "b"])
    assert ours["pr_auc"] is None and ours["notes"]["pr_auc"].startswith("undefined: the labels hold one class only"), ours
