"""How sure a classifier is, and whether it should be: calibration, temperature scaling, ROC and PR curves.

A model is calibrated when, of the predictions it makes with confidence 0.8, about 80 % are
right. The expected calibration error (ECE) measures the gap, binned by confidence (Naeini
et al., 2015; Guo et al., 2017, "On Calibration of Modern Neural Networks"), and the
reliability diagram draws it. Temperature scaling (Guo et al.) fixes the most common fault,
over-confidence, with one number fitted on the validation split: dividing the logits by
``T > 1`` softens every prediction without changing which class wins, so accuracy is
unchanged.

The curves are computed here in numpy, with the same conventions as scikit-learn's
``roc_curve``, ``precision_recall_curve``, ``roc_auc_score`` and ``average_precision_score``
(which the tests use as the reference): the ``evaluate`` stage keeps scikit-learn out of the
run path, as the metrics module does, and the report needs the points thinned anyway.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["calibration", "fit_temperature", "guarded_temperature", "apply_temperature", "curves", "choose_threshold", "rule_name"]

T_MIN, T_MAX = 0.05, 20.0
# Fewest validation rows a temperature is fitted on. Guo et al. fit on thousands; one number
# from a few dozen rows is mostly noise, and the guards below need rows to split in two.
MIN_ROWS = 50


def calibration(proba: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, Any]:
    """Expected calibration error of the top label, and the reliability-diagram bins.

    Each sample's confidence is its largest class probability, and it is correct when that
    class is the true one. Samples fall into ``n_bins`` equal-width bins of confidence,
    ``(lo, hi]`` (a confidence of exactly 0 goes to the first bin). Then
    ``ECE = sum_b (count_b / N) * |accuracy_b - confidence_b|``.

    Args:
        proba: Class probabilities, shape ``(N, K)`` with ``K >= 2``; for a binary model a
            1-D array is read as the probability of class 1.
        y: True class indices in ``0..K-1``, shape ``(N,)``.
        n_bins: Number of confidence bins (15 as in Guo et al.).

    Returns:
        ``{"ece": float, "n": N, "bins": [...]}``, one bin per interval, empty ones included
        so a diagram keeps its axis: ``{"lo", "hi", "confidence", "accuracy", "count"}``
        where ``confidence`` and ``accuracy`` are the bin's means, ``None`` for an empty bin.

    Raises:
        ValueError: If the shapes disagree, ``N == 0``, ``proba`` is not finite, a label is
            out of range or ``n_bins < 1``.
    """
    proba = _as_proba(proba)
    y = _as_labels(y, len(proba), proba.shape[1])
    if n_bins < 1:
        raise ValueError(f"`n_bins` must be an int >= 1; got {n_bins}")
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(..., "left") on the inner edges puts a value equal to an edge in the bin
    # below it: bins are (lo, hi], as in Guo et al., and 0 falls in the first bin.
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(which, weights=correct, minlength=n_bins)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        count = int(counts[b])
        conf = float(conf_sum[b] / count) if count else None
        acc = float(acc_sum[b] / count) if count else None
        if count:
            ece += count / len(y) * abs(acc - conf)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "confidence": conf, "accuracy": acc, "count": count})
    return {"ece": float(ece), "n": int(len(y)), "bins": bins}


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, *, max_iter: int = 100) -> float:
    """The temperature ``T`` minimising the negative log-likelihood of ``softmax(logits / T)``.

    Fit it on the validation split, never the test split, or the test figures stop being an
    estimate. The optimisation runs over ``log T`` (so ``T`` stays positive) with L-BFGS in
    float64, starting from ``T = 1``. The NLL is unimodal in ``log T`` (it is convex in
    ``1 / T``), so the clamped optimum is the best ``T`` in ``[0.05, 20]``; the result is the
    best of that, the two bounds and ``T = 1`` (which wins ties and any optimiser failure).

    Args:
        logits: Raw model outputs, shape ``(N, K)`` for a softmax head, or ``(N, 1)`` / ``(N,)``
            for a one-logit binary head, where the probability of class 1 is
            ``sigmoid(logit / T)``.
        y: True class indices, shape ``(N,)`` (0 or 1 for a one-logit head).
        max_iter: L-BFGS iterations.

    Returns:
        ``T`` in ``[0.05, 20]``; ``T > 1`` means the model was over-confident.

    Raises:
        ValueError: If the shapes disagree, ``N == 0``, a logit is not finite or a label is
            out of range.
    """
    z, target, binary = _logits_and_target(logits, y)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = _nll(z, target, binary, torch.exp(log_t))
        loss.backward()
        return loss

    optimiser.step(closure)
    fitted = float(torch.exp(log_t.detach()))
    # L-BFGS stops where the gradient is tiny, which on (nearly) separable data is a flat tail
    # short of the bound it is heading for; and it can fail outright. Unimodality makes the best
    # of these candidates the constrained optimum whenever the optimiser got anywhere near it.
    # np.argmin takes the first of equal losses: T = 1 (no change) wins a tie, e.g. all-zero logits.
    candidates = [1.0] + ([min(max(fitted, T_MIN), T_MAX)] if np.isfinite(fitted) else []) + [T_MIN, T_MAX]
    with torch.no_grad():
        losses = [float(_nll(z, target, binary, torch.tensor(t, dtype=torch.float64))) for t in candidates]
    return float(candidates[int(np.argmin(losses))])


def guarded_temperature(logits: torch.Tensor, y: torch.Tensor) -> tuple[float | None, str | None]:
    """The temperature to serve when the validation split identifies one, else None and why.

    Temperature scaling is only as good as the likelihood it maximises. When the validation
    split is classified without an error, the likelihood keeps rising as ``T`` shrinks, so the
    fit runs to its lower bound and sharpens every prediction (on digits: T = 0.05, a test
    log loss six times the raw one, a misclassified image's true class at 5e-27). So ``T = 1``
    is kept, with the reason, when:

    - the split has fewer than ``MIN_ROWS`` rows;
    - every row is classified correctly (the split is separable);
    - the fit reaches a bound of ``[T_MIN, T_MAX]`` (the optimum is not inside: not identified);
    - a temperature fitted on either half of the split (alternate rows) makes the other half's
      log loss worse than ``T = 1`` does: the fit does not carry to rows it did not see, which
      is what happens when a handful of errors decides it.

    Args:
        logits: validation outputs, as `fit_temperature` takes them.
        y: validation class indices.

    Returns:
        ``(T, None)`` for a temperature to serve, or ``(None, reason)``.
    """
    z, target, binary = _logits_and_target(logits, y)
    n = len(z)
    if n < MIN_ROWS:
        return None, f"the validation split has {n} rows; a temperature is fitted on at least {MIN_ROWS}"
    predicted = (z > 0).to(torch.float64) if binary else z.argmax(dim=1)
    if bool((predicted == target).all()):
        return None, (
            f"all {n} validation rows are classified correctly (the split is separable): the likelihood keeps "
            "improving as T shrinks, so no temperature is identified"
        )
    t = fit_temperature(z, target.to(torch.int64))
    if t <= T_MIN or t >= T_MAX:
        return None, f"the fit ran to its bound T = {t:g}: the validation split does not identify a temperature"
    rows = torch.arange(n)
    halves = (rows % 2 == 0, rows % 2 == 1)
    for fit_on, check_on in (halves, halves[::-1]):
        t_half = fit_temperature(z[fit_on], target[fit_on].to(torch.int64))
        with torch.no_grad():
            worse = float(_nll(z[check_on], target[check_on], binary, torch.tensor(t_half, dtype=torch.float64)))
            raw = float(_nll(z[check_on], target[check_on], binary, torch.tensor(1.0, dtype=torch.float64)))
        if worse > raw:
            return None, (
                f"a temperature fitted on half of the validation split (T = {t_half:.3g}) makes the other half's log loss "
                f"worse ({worse:.4f} against {raw:.4f} at T = 1): the fit does not carry to rows it did not see"
            )
    return t, None


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / T``: feed the result to the usual softmax (or sigmoid for a one-logit head).

    Dividing by a positive ``T`` keeps every logit's order, so the predicted class (and
    accuracy) is unchanged; only the confidence moves.

    Raises:
        ValueError: If ``temperature`` is not a finite positive number.
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"`temperature` must be a finite float > 0; got {temperature}")
    return logits / temperature


def curves(y: np.ndarray, proba: np.ndarray, labels: list[str], max_points: int = 200, positive: int | None = None) -> dict[str, Any]:
    """ROC and precision-recall curves per class, one-vs-rest, thinned for a report.

    For ``K == 2`` only the positive class (``labels[positive]``, scored by
    ``proba[:, positive]``; ``positive`` defaults to 1) is given;
    for ``K > 2`` every class ``c`` against the rest, scored by ``proba[:, c]``. The areas are
    computed on the full curves, before thinning: ``auc`` equals scikit-learn's
    ``roc_auc_score`` and ``ap`` its ``average_precision_score``.

    Args:
        y: True class indices, shape ``(N,)``.
        proba: Class probabilities, shape ``(N, K)``.
        labels: The ``K`` class names, used as the keys.
        max_points: Most points kept per curve (first and last always kept).

    Returns:
        ``{"roc": {"per_class": {label: {"fpr", "tpr", "auc"}}},
        "pr": {"per_class": {label: {"precision", "recall", "ap"}}}}``. ROC points run from
        (0, 0) to (1, 1); PR points run, as in scikit-learn, from full recall to
        ``(recall 0, precision 1)``. A class with no positive sample in ``y`` has no curves
        (empty lists) and ``None`` areas; one with no negative sample has ``auc`` ``None``
        and no ROC points (its PR curve is still defined).

    Raises:
        ValueError: If the shapes disagree, ``len(labels) != K``, a label is out of range
            or ``max_points < 2``.
    """
    proba = _as_proba(proba)
    k = proba.shape[1]
    if len(labels) != k:
        raise ValueError(f"`labels` must name the {k} columns of `proba`; got {len(labels)} labels")
    y = _as_labels(y, len(proba), k)
    if max_points < 2:
        raise ValueError(f"`max_points` must be an int >= 2; got {max_points}")
    roc: dict[str, Any] = {}
    pr: dict[str, Any] = {}
    if positive is not None and not (k == 2 and positive in (0, 1)):
        raise ValueError(f"`positive` must be 0 or 1 for a binary model; got {positive} with {k} classes")
    for c in [1 if positive is None else positive] if k == 2 else range(k):
        positive = y == c
        label = str(labels[c])
        if not positive.any():
            roc[label] = {"fpr": [], "tpr": [], "auc": None}
            pr[label] = {"precision": [], "recall": [], "ap": None}
            continue
        fps, tps = _counts_at_thresholds(positive, proba[:, c])
        precision, recall = _pr_points(fps, tps)
        pr[label] = {**_thin({"precision": precision, "recall": recall}, max_points), "ap": float(_average_precision(precision, recall))}
        if positive.all():
            roc[label] = {"fpr": [], "tpr": [], "auc": None}
            continue
        fpr, tpr = _roc_points(fps, tps)
        roc[label] = {**_thin({"fpr": fpr, "tpr": tpr}, max_points), "auc": _trapezoid(fpr, tpr)}
    return {"roc": {"per_class": roc}, "pr": {"per_class": pr}}


def rule_name(rule: float | str | dict[str, Any] | None) -> str:
    """The name a threshold rule is reported by: "0.5" (or the fixed number), "f1",
    "recall@precision=P", "precision@recall=R" or "cost"."""
    if rule is None:
        return "0.5"
    if isinstance(rule, dict):
        return "cost"
    if isinstance(rule, (int, float)):
        return f"{float(rule):g}"
    return str(rule)


def choose_threshold(score: np.ndarray | None, positive: np.ndarray | None, rule: float | str | dict[str, Any] | None) -> dict[str, Any]:
    """The decision threshold on the positive class's probability, chosen by `rule` on validation.

    The positive class is predicted when its probability is ``>= value``. A number (or no rule:
    0.5) is used as given. A rule tries each distinct validation score as the threshold and
    takes, on ties, the highest one:

    - ``f1``: the best F1 of the positive class;
    - ``recall@precision=P``: the most recall among thresholds with precision ``>= P``;
    - ``precision@recall=R``: the most precision among thresholds with recall ``>= R``;
    - ``{"cost": {"fp": X, "fn": Y}}``: the least ``X * FP + Y * FN``.

    The value returned is the midpoint between the chosen score and the next lower one, so the
    validation split is classified exactly as at the chosen score while unseen rows between
    the two scores are not decided by which side of a tie they fall on.

    Args:
        score: validation probabilities of the positive class, shape (N,); None without a
            validation split.
        positive: whether each validation row is of the positive class, shape (N,).
        rule: `evaluate.threshold` in its normalised form (see `spec.threshold_rule`).

    Returns:
        ``{"value": float, "rule": str, "chosen_on": "validation" | "default", "note": str | None}``.
        A rule that cannot be applied (no validation split, one class only in it, no threshold
        meeting the constraint) gives 0.5 with ``chosen_on`` "default" and a note saying why.
    """
    name = rule_name(rule)
    if rule is None or isinstance(rule, (int, float)):
        no_split = "" if score is not None and len(score) else "; there is no validation split to choose one on"
        note = "the default (evaluate.threshold is not set)" if rule is None else "as evaluate.threshold sets it"
        return {"value": 0.5 if rule is None else float(rule), "rule": name, "chosen_on": "default", "note": note + no_split}

    def fallback(why: str) -> dict[str, Any]:
        return {"value": 0.5, "rule": name, "chosen_on": "default", "note": f"{why}; the threshold is 0.5"}

    if score is None or len(score) == 0:
        return fallback(f"no validation split to choose the threshold on by {name}")
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == len(positive):
        return fallback(f"the validation split holds {'no' if n_pos == 0 else 'only'} positive rows")
    order = np.argsort(score, kind="mergesort")[::-1]
    s = score[order]
    fps, tps = _counts_at_thresholds(positive, score)
    thresholds = s[np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]]  # the distinct scores, highest first
    fns = n_pos - tps
    precision = tps / (tps + fps)
    recall = tps / n_pos
    if rule == "f1":
        objective, feasible = 2 * tps / (2 * tps + fps + fns), np.ones(len(tps), dtype=bool)
    elif isinstance(rule, dict):
        c = rule["cost"]
        objective, feasible = -(c["fp"] * fps + c["fn"] * fns), np.ones(len(tps), dtype=bool)
    else:
        kind, _, level = str(rule).partition("=")
        bound = float(level)
        if kind == "recall@precision":
            objective, feasible = recall, precision >= bound
        else:
            objective, feasible = precision, recall >= bound
        if not feasible.any():
            best = float(precision.max() if kind == "recall@precision" else recall.max())
            what = "precision" if kind == "recall@precision" else "recall"
            return fallback(f"no threshold reaches validation {what} {bound:g} (best {best:.3f})")
    objective = np.where(feasible, objective, -np.inf)
    i = int(np.argmax(objective))  # the first maximum: the highest threshold among equals
    value = float(thresholds[i])
    if i + 1 < len(thresholds) and thresholds[i + 1] < (thresholds[i] + thresholds[i + 1]) / 2:  # adjacent floats have no midpoint
        value = float((thresholds[i] + thresholds[i + 1]) / 2)
    note = (
        f"chosen on {len(score)} validation rows ({n_pos} positive): precision {precision[i]:.3f}, "
        f"recall {recall[i]:.3f}, {int(fps[i])} false positives and {int(fns[i])} false negatives there"
    )
    return {"value": value, "rule": name, "chosen_on": "validation", "note": note}


def _counts_at_thresholds(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positives when predicting "positive" for score >= each distinct score.

    Thresholds run from the highest score down; tied scores form one threshold, so a tie
    moves the curve diagonally, which is what makes the trapezoid area equal the AUC's
    Mann-Whitney definition (ties count one half).
    """
    order = np.argsort(score, kind="mergesort")[::-1]
    score, positive = score[order], positive[order]
    # The last index of each run of equal scores (in descending order), then the end.
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(positive, dtype=np.float64)[last]
    fps = (last + 1) - tps
    return fps, tps


def _roc_points(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr


def _pr_points(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    precision = tps / (tps + fps)  # tps + fps >= 1: every threshold predicts at least one sample
    recall = tps / tps[-1]
    # Reversed so recall decreases, ending at (recall 0, precision 1): scikit-learn's layout.
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    # Written out because numpy renamed `trapz` to `trapezoid` in 2.0 and we support both.
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    # Step-wise sum of precision times recall gained (no interpolation), as scikit-learn does.
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def _thin(points: dict[str, np.ndarray], max_points: int) -> dict[str, list[float]]:
    """At most `max_points` evenly spaced points of each (equal-length) array, ends kept."""
    n = len(next(iter(points.values())))
    if n > max_points:
        keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
        points = {k: v[keep] for k, v in points.items()}
    return {k: [float(x) for x in v] for k, v in points.items()}


def _nll(z: torch.Tensor, target: torch.Tensor, binary: bool, t: torch.Tensor) -> torch.Tensor:
    if binary:
        return F.binary_cross_entropy_with_logits(z / t, target)
    return F.cross_entropy(z / t, target)


def _logits_and_target(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    z = torch.as_tensor(logits).detach().to(torch.float64)
    target = torch.as_tensor(y).detach().reshape(-1)
    binary = z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1)
    if z.ndim not in (1, 2):
        raise ValueError(f"`logits` must have shape (N, K) or (N, 1); got {tuple(z.shape)}")
    z = z.reshape(-1) if binary else z
    if len(z) == 0:
        raise ValueError("cannot fit a temperature on 0 samples")
    if len(z) != len(target):
        raise ValueError(f"`logits` has {len(z)} samples but `y` has {len(target)}")
    if not torch.isfinite(z).all():
        raise ValueError("`logits` must be finite")
    k = 2 if binary else z.shape[1]
    if torch.is_floating_point(target) and not torch.equal(target, target.round()):
        raise ValueError("`y` must hold integer class indices")
    target = target.to(torch.int64)
    if target.min() < 0 or target.max() >= k:
        raise ValueError(f"`y` must hold class indices in 0..{k - 1}")
    return z, (target.to(torch.float64) if binary else target), binary


def _as_proba(proba: np.ndarray) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 1:  # a binary model's P(class 1)
        proba = np.stack([1.0 - proba, proba], axis=1)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"`proba` must have shape (N, K) with K >= 2; got {proba.shape}")
    if len(proba) == 0:
        raise ValueError("cannot evaluate 0 samples")
    if not np.isfinite(proba).all():
        raise ValueError("`proba` must be finite")
    return proba


def _as_labels(y: np.ndarray, n: int, k: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"`y` must have shape ({n},) to match `proba`; got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.array_equal(y, np.round(y))):
            raise ValueError(f"`y` must hold integer class indices; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"`y` must hold class indices in 0..{k - 1}")
    return y
