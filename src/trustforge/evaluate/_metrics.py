"""Classification, regression and ranking metrics implemented in plain numpy.

The definitions deliberately mirror scikit-learn's (``zero_division=0``,
``labels=range(K)``, ``force_finite=True``), which the test-suite uses as the
reference, so that reports produced by TrustForge can be compared with numbers
people compute themselves. One departure: a per-class figure whose rows are not there
(the recall and F1 of a class with no labelled row, the precision of a class never
predicted) is undefined, None with its reason, not 0, and the macro averages are over
the classes the labels hold. Every function returns plain Python floats and lists so
the result can be written to JSON as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "classification_metrics",
    "binary_predictions",
    "regression_metrics",
    "forecasting_metrics",
    "mape",
    "smape",
    "ranking_metrics",
    "ranking_rows",
    "Metric",
    "METRICS",
]


def binary_predictions(proba: np.ndarray, positive: int, threshold: float) -> np.ndarray:
    """Class indices of a binary model deciding by threshold: ``positive`` where
    ``proba[:, positive] >= threshold``, the other class elsewhere."""
    proba = np.asarray(proba)
    return np.where(proba[:, positive] >= threshold, positive, 1 - positive).astype(np.int64)


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, labels: Sequence[str], *, positive: int | None = None, threshold: float | None = None
) -> dict[str, object]:
    """Compute classification metrics from predicted class probabilities.

    Predictions are the argmax of ``proba``, or, for a binary model given a ``threshold``,
    ``positive`` where ``proba[:, positive] >= threshold``. The macro averages are over the
    classes ``y_true`` holds (a class with no row has no recall or F1; sklearn counts it 0),
    and the weighted ones weigh each class by its rows; in both, a class the labels hold but
    the model never predicts counts precision 0 (sklearn's ``zero_division=0``).

    Args:
        y_true: Integer class indices in ``0..K-1``, shape ``(N,)``.
        proba: Class probabilities, shape ``(N, K)``, rows summing to 1.
        labels: The ``K`` class names; only their number is used.
        positive: For ``K == 2``, the index of the positive class (default 1).
        threshold: For ``K == 2``, the decision threshold on the positive class's
            probability (default: the argmax).

    Returns:
        A dict with ``accuracy``, ``precision_macro``, ``recall_macro``,
        ``f1_macro``, ``precision_weighted``, ``recall_weighted``,
        ``f1_weighted``, ``roc_auc``, ``log_loss``, ``confusion_matrix``
        (``K x K`` list of lists, rows = true class, columns = predicted) and
        ``support`` (true count per class). For ``K == 2`` also ``precision``,
        ``recall`` and ``f1`` of the positive class (index ``positive``): ``recall`` and
        ``f1`` are None when ``y_true`` holds no row of it, ``precision`` when no row is
        predicted it.

        ``notes`` (present when needed) maps each None figure above to why it is undefined,
        and ``macro`` to the classes the macro averages leave out.

        ``roc_auc`` is the binary AUC of ``proba[:, positive]`` for ``K == 2`` and the
        one-vs-rest macro average for ``K > 2``. It is ``None`` when it is
        undefined: ``y_true`` holds a single class or, for ``K > 2``, some
        class has no positive sample.

        ``pr_auc`` is the area under the precision-recall curve as average
        precision (sklearn's ``average_precision_score``: no interpolation),
        of ``proba[:, positive]`` for ``K == 2`` and the one-vs-rest macro average
        for ``K > 2``; ``None`` when the (or some) class has no positive
        sample. Unlike ROC-AUC it moves with the positive rate, which makes
        it the honest summary for rare positives (fraud): a random score
        gets the positive rate, not 0.5.

    Raises:
        ValueError: If the shapes are inconsistent, ``N == 0``, ``K < 2``,
            ``y_true`` holds an index outside ``0..K-1``, or ``positive`` or
            ``threshold`` is given for ``K > 2`` or out of range.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    if not np.issubdtype(proba.dtype, np.floating):
        proba = proba.astype(np.float64)
    k = len(labels)
    if k < 2:
        raise ValueError(f"need at least 2 labels, got {k}")
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y_true.shape}")
    if proba.ndim != 2 or proba.shape[1] != k:
        raise ValueError(f"proba must have shape (N, {k}) for {k} labels, got {proba.shape}")
    if len(y_true) != len(proba):
        raise ValueError(f"y_true has {len(y_true)} samples but proba has {len(proba)}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on 0 samples")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {y_true.dtype}")
    if y_true.min() < 0 or y_true.max() >= k:
        raise ValueError(f"y_true must hold class indices in 0..{k - 1}")
    y_true = y_true.astype(np.int64)
    if (positive is not None or threshold is not None) and k != 2:
        raise ValueError(f"a positive class and a threshold apply to 2 labels; got {k}")
    pos = 1 if positive is None else int(positive)
    if pos not in (0, 1):
        raise ValueError(f"positive must be 0 or 1; got {positive}")
    if threshold is not None and not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1); got {threshold}")

    y_pred = proba.argmax(axis=1) if threshold is None else binary_predictions(proba, pos, threshold)
    confusion = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    # F1 from counts rather than from p and r, as sklearn does: it is 0 (not NaN)
    # exactly when tp == 0, with no rounding through the two ratios.
    f1 = _safe_divide(2 * tp, 2 * tp + (predicted - tp) + (support - tp))
    present = support > 0

    result: dict[str, object] = {"accuracy": float(np.mean(y_pred == y_true))}
    for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
        result[f"{name}_macro"] = float(per_class[present].mean())
        result[f"{name}_weighted"] = float(np.average(per_class, weights=support))
    notes: dict[str, str] = {}
    if not present.all():
        absent = ", ".join(str(labels[c]) for c in np.flatnonzero(~present))
        notes["macro"] = f"the macro averages are over the {int(present.sum())} of {k} classes the labels hold (no row of {absent})"
    if k == 2:
        n, name = f"{len(y_true)} labelled row{'s' if len(y_true) != 1 else ''}", labels[pos]
        result.update(precision=float(precision[pos]), recall=float(recall[pos]), f1=float(f1[pos]))
        if not present[pos]:
            for metric in ("recall", "f1"):
                result[metric] = None
                notes[metric] = f"undefined: none of the {n} is of the positive class {name}"
        if predicted[pos] == 0:
            result["precision"] = None
            notes["precision"] = f"undefined: the model predicted the positive class {name} for none of the {n}"
    result["roc_auc"] = _roc_auc(y_true, proba, pos)
    result["pr_auc"] = _pr_auc(y_true, proba, pos)
    for metric in ("roc_auc", "pr_auc"):
        if result[metric] is None:
            notes[metric] = (
                "undefined: the labels hold one class only (it ranks rows of one class against the other)"
                if k == 2
                else "undefined: some class has no labelled row (the one-vs-rest average needs rows of every class)"
            )
    result["log_loss"] = _log_loss(y_true, proba)
    result["confusion_matrix"] = confusion.tolist()
    result["support"] = support.tolist()
    if notes:
        result["notes"] = notes
    return result


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Compute regression metrics.

    Args:
        y_true: Targets, shape ``(N,)``.
        y_pred: Predictions, shape ``(N,)``.

    Returns:
        A dict with ``mae``, ``rmse`` and ``r2``. For a constant ``y_true`` the
        R^2 is undefined; like sklearn's ``force_finite=True`` it is then 1.0
        for perfect predictions and 0.0 otherwise.

    Raises:
        ValueError: If the inputs are not 1-D of the same non-zero length.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 1 or y_pred.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D, got {y_true.shape} and {y_pred.shape}")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} samples but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on 0 samples")

    error = y_true - y_pred
    ss_res = np.sum(error**2)
    ss_tot = np.sum((y_true - y_true.mean()) ** 2)
    if ss_tot != 0:
        r2 = 1.0 - ss_res / ss_tot
    else:
        r2 = 1.0 if ss_res == 0 else 0.0
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(r2),
    }


def mape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute percentage error, as a fraction (0.05 is 5 %), as sklearn defines it.

    Each error is divided by ``max(|y_true|, eps)`` (float64 machine epsilon), so a true
    value of 0 gives a huge but finite term, as in ``mean_absolute_percentage_error``.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    eps = np.finfo(np.float64).eps
    return float(np.mean(np.abs(y_pred - y_true) / np.maximum(np.abs(y_true), eps)))


def smape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Symmetric MAPE as a fraction in [0, 2]: mean of ``2 |y - ŷ| / (|y| + |ŷ|)``.

    The M3/M4 competitions' definition (there × 100). A term whose true and predicted
    values are both 0 is a perfect forecast and counts 0.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    denom = np.abs(y_true) + np.abs(y_pred)
    return float(np.mean(_safe_divide(2.0 * np.abs(y_pred - y_true), denom)))


def forecasting_metrics(y_true: np.ndarray, y_pred: np.ndarray, baseline: np.ndarray | None = None) -> dict[str, object]:
    """Forecast errors over windows and horizon steps, beside a baseline's on the same windows.

    Args:
        y_true: true future values, shape ``(N, H)`` (N windows, H horizon steps).
        y_pred: the model's forecasts, same shape.
        baseline: a reference forecaster's, same shape (e.g. seasonal naive), or None.

    Returns:
        ``mae``, ``rmse``, ``mape``, ``smape`` over all N·H forecast values (MAPE and sMAPE as
        fractions); ``mae_by_step`` (one MAE per horizon step, a list); with a baseline also
        ``baseline_seasonal_naive_<metric>`` for the four metrics and
        ``mae_ratio_to_baseline`` (model MAE / baseline MAE: below 1 beats the baseline,
        None when the baseline is perfect).

    Raises:
        ValueError: shapes differ, are not 2-D, or hold no value.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must both have shape (N, H); got {y_true.shape} and {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("cannot compute metrics on 0 forecasts")

    def errors(pred: np.ndarray) -> dict[str, float]:
        e = y_true - pred
        return {
            "mae": float(np.mean(np.abs(e))),
            "rmse": float(np.sqrt(np.mean(e**2))),
            "mape": mape(y_true, pred),
            "smape": smape(y_true, pred),
        }

    result: dict[str, object] = dict(errors(y_pred))
    result["mae_by_step"] = [float(v) for v in np.mean(np.abs(y_true - y_pred), axis=0)]
    if baseline is not None:
        baseline = np.asarray(baseline, dtype=np.float64)
        if baseline.shape != y_true.shape:
            raise ValueError(f"baseline must have shape {y_true.shape}; got {baseline.shape}")
        base = errors(baseline)
        result.update({f"baseline_seasonal_naive_{k}": v for k, v in base.items()})
        result["mae_ratio_to_baseline"] = float(result["mae"] / base["mae"]) if base["mae"] > 0 else None
    return result


def ranking_metrics(
    higher: np.ndarray, ties: np.ndarray, candidates: np.ndarray, ks: Sequence[int] = (10,)
) -> dict[str, float | int | None]:
    """Hit rate, NDCG and AUC of held-out items, each ranked among its own candidate items.

    Each held-out item competes with `candidates` other items (for a recommender: the items its
    user has not interacted with); it is a hit at K when it ranks in the top K. This is the
    leave-one-out protocol (He et al., 2017) over the full candidate set, with one relevant item
    per ranking, so NDCG@K is 1 / log2(rank + 1) for a hit and 0 otherwise (IDCG = 1).

    Ties count as if ordered at random: an item tied with t others at ranks r+1..r+t+1 scores
    the mean over those ranks. For NDCG this is what sklearn's `ndcg_score` computes (it
    averages the discount over tied positions); for HR it is the probability of landing in
    the top K. A constant scorer so earns chance, not luck from the order of the catalogue.

    Args:
        higher: per held-out item, how many candidates score strictly higher, shape (N,).
        ties: per held-out item, how many candidates score exactly the same, shape (N,).
        candidates: per held-out item, the number of competing candidates, shape (N,).
        ks: the cut-offs K.

    Returns:
        `hr@K` and `ndcg@K` for each K, `auc` (the mean share of candidates ranked below the
        held-out item, ties counting half) and `n`; the metrics are None when N is 0.

    Raises:
        ValueError: shapes differ, counts are negative, or higher + ties exceeds candidates.
    """
    higher = np.asarray(higher, dtype=np.int64)
    ties = np.asarray(ties, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    if not (higher.shape == ties.shape == candidates.shape) or higher.ndim != 1:
        raise ValueError(f"higher, ties and candidates must be 1-D of one length; got {higher.shape}, {ties.shape}, {candidates.shape}")
    if (higher < 0).any() or (ties < 0).any() or (higher + ties > candidates).any():
        raise ValueError("counts must be >= 0 with higher + ties <= candidates")
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"cut-offs must be >= 1; got {list(ks)}")
    n = len(higher)
    result: dict[str, float | int | None] = {
        k: float(np.mean(v)) if n else None for k, v in ranking_rows(higher, ties, candidates, ks).items()
    }
    result["n"] = n
    return result


def ranking_rows(higher: np.ndarray, ties: np.ndarray, candidates: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, np.ndarray]:
    """Each held-out item's `hr@K`, `ndcg@K` and `auc` (N,), whose means `ranking_metrics` reports
    (the bootstrap draws these rows); the arguments as there, already checked."""
    higher, ties, candidates = (np.asarray(a, dtype=np.int64) for a in (higher, ties, candidates))
    rows: dict[str, np.ndarray] = {}
    group = ties + 1  # the held-out item and the candidates tied with it share ranks higher+1 .. higher+group
    for k in ks:
        k = int(k)
        # cumulative discount: D[m] = sum over ranks 1..m of 1/log2(rank + 1)
        cum = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))]
        first, last = np.minimum(higher, k), np.minimum(higher + group, k)
        rows[f"hr@{k}"] = (last - first) / group
        rows[f"ndcg@{k}"] = (cum[last] - cum[first]) / group
    below = candidates - higher - ties
    rows["auc"] = _safe_divide((below + 0.5 * ties).astype(np.float64), candidates.astype(np.float64))
    return rows


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ``numerator / denominator``, with 0 where the denominator is 0."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve via the Mann-Whitney U statistic.

    Tied scores get their average rank, which counts each positive/negative tie
    as half a correct ordering -- the same area the trapezoidal ROC gives.
    Returns ``None`` if either class is empty.
    """
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    # The tied group occupying 1-based ranks end-count+1 .. end has mean rank
    # end - (count - 1) / 2.
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse.ravel()]
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, positive: int = 1) -> float | None:
    """Binary AUC of the positive class, or the one-vs-rest macro AUC for more classes."""
    k = proba.shape[1]
    if k == 2:
        return _binary_auc(y_true == positive, proba[:, positive])
    aucs = [_binary_auc(y_true == c, proba[:, c]) for c in range(k)]
    if any(auc is None for auc in aucs):
        return None
    return float(np.mean(aucs))


def _average_precision(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Average precision: the sum over thresholds of (R_n - R_{n-1}) · P_n.

    Thresholds are the distinct scores, highest first; tied scores form one threshold, so
    the result does not depend on the order of ties (as in sklearn). No interpolation: the
    trapezoidal area under the PR curve is optimistic (Davis & Goadrich, 2006). Returns
    ``None`` when there is no positive sample.
    """
    n_pos = int(positive.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-score, kind="mergesort")
    s, hit = score[order], positive[order]
    tp = np.cumsum(hit)
    seen = np.arange(1, len(s) + 1)
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp, seen = tp[last_of_tie], seen[last_of_tie]
    precision = tp / seen
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _pr_auc(y_true: np.ndarray, proba: np.ndarray, positive: int = 1) -> float | None:
    """Average precision of the positive class, or the one-vs-rest macro average for more classes."""
    k = proba.shape[1]
    if k == 2:
        is_positive = y_true == positive
        if is_positive.all():  # every ranking scores 1: it ranks no row of the other class
            return None
        return _average_precision(is_positive, proba[:, positive])
    aps = [_average_precision(y_true == c, proba[:, c]) for c in range(k)]
    if any(ap is None for ap in aps):
        return None
    return float(np.mean(aps))


def _log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class.

    Probabilities are clipped to ``[eps, 1 - eps]`` with the machine epsilon of
    their dtype, as sklearn does, so a confident wrong prediction gives a large
    finite loss instead of infinity.
    """
    eps = np.finfo(proba.dtype).eps
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1 - eps)
    return float(np.mean(-np.log(p_true)))


# ---------------------------------------------------------------------------- the metrics table


@dataclass(frozen=True)
class Metric:
    """One named metric: how to compute it, which way is better, whether validation logs it.

    `fn` takes the inputs of its family's function above: ``(y_true, proba)`` for the
    ``"class"`` family, ``(y_true, y_pred)`` for the ``"error"`` family (any shape; every value
    counts), ``(higher, ties, candidates)`` for the ``"ranking"`` family. `validation` says
    whether the Trainer can log it on the validation split each epoch, so that
    `train.early_stopping.monitor` may name it as `val_<name>` (where its task has it).
    """

    name: str
    family: str
    fn: Callable[..., float | None]
    higher_is_better: bool
    validation: bool


def _class_metric(name: str) -> Metric:
    def fn(y_true: np.ndarray, proba: np.ndarray) -> float | None:
        return classification_metrics(y_true, proba, range(np.asarray(proba).shape[1])).get(name)

    return Metric(name, "class", fn, higher_is_better=name != "log_loss", validation=True)


def _error_metric(name: str, validation: bool = True) -> Metric:
    def fn(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        t = np.asarray(y_true, dtype=np.float64).ravel()
        p = np.asarray(y_pred, dtype=np.float64).ravel()
        if name == "mape":
            return mape(t, p)
        if name == "smape":
            return smape(t, p)
        return regression_metrics(t, p)[name]

    return Metric(name, "error", fn, higher_is_better=name == "r2", validation=validation)


def _ranking_metric(name: str) -> Metric:
    k = int(name.split("@")[1]) if "@" in name else 10

    def fn(higher: np.ndarray, ties: np.ndarray, candidates: np.ndarray) -> float | None:
        return ranking_metrics(higher, ties, candidates, ks=(k,))[name]

    # Validation ranks each held-out item against one sampled negative: that is an AUC; the
    # top-K metrics need the whole catalogue ranked, which only the test does.
    return Metric(name, "ranking", fn, higher_is_better=True, validation=name == "auc")


# The one table of metric names. The tasks (evaluate._tasks) pick theirs from it, and the spec's
# validators accept only names their task picked. Insertion order is the order messages list.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        *(
            _class_metric(n)
            for n in (
                "accuracy",
                "precision",
                "recall",
                "f1",
                "precision_macro",
                "recall_macro",
                "f1_macro",
                "precision_weighted",
                "recall_weighted",
                "f1_weighted",
                "roc_auc",
                "pr_auc",
                "log_loss",
            )
        ),
        *(_error_metric(n) for n in ("mae", "rmse", "r2")),
        *(_error_metric(n, validation=False) for n in ("mape", "smape")),
        *(_ranking_metric(n) for n in (*(f"{m}@{k}" for k in (5, 10, 20) for m in ("hr", "ndcg")), "auc")),
    )
}
