"""Bootstrap 95 % intervals of test metrics, and of a model-minus-baseline difference.

A resample is a count per test row (how often the row is drawn), so every metric here is a
function of a weight matrix W (B resamples × N rows): accuracy is W @ correct / W.sum(1), a
confusion count is W @ indicator, a ROC-AUC is a weighted Mann–Whitney sum over rows sorted once.
No Python loop runs over resamples; they are processed in chunks so that one chunk holds at most
`_CHUNK_ELEMENTS` weights, so time and memory grow with B · N and nothing else.

The paired difference draws the model's and the baseline's rows with the same W, so the noise
both share (which rows happen to be hard) cancels; its percentile interval excludes 0 only when
the test split says which one is better.

Rows are drawn independently (Efron's percentile bootstrap), except where the task says its rows
are not independent: forecasting windows overlap, so they are drawn in moving blocks of
consecutive windows (Künsch, 1989), `block` windows long.

A proportion (accuracy, and a binary model's precision and recall: successes out of a count of
independent rows) gets the exact binomial interval (Clopper–Pearson) of that count instead,
always, not only when the bootstrap fails. The percentile bootstrap of a proportion is about the
normal (Wald) interval: it covers less than 95 % at small counts and near 0 or 1, and at 0 or 1
(every test row right) it has no width at all, "1 – 1" from 42 rows. Clopper–Pearson covers at
least 95 % at every count and proportion, and one method per metric whatever the outcome keeps
figures comparable: switching only at a degenerate bootstrap would give 42 of 42 a lower bound
(0.916) below that of 41 of 42 (about 0.93). Each interval records its `method` and, for the
binomial one, the `count` it rests on (precision's count is the rows predicted positive, so its
interval is conditional on that number). A metric with no binomial form (ROC AUC, log loss, F1)
whose resamples all give one value keeps that value and is marked `degenerate`, with a `note`:
the test split is too small to show its uncertainty, and "1 – 1" would claim a certainty it
does not have. A paired difference whose resamples are all 0 is marked the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "LEVEL",
    "DEGENERATE_NOTE",
    "DEGENERATE_DIFFERENCE_NOTE",
    "clopper_pearson",
    "RESAMPLES",
    "Rows",
    "ClassRows",
    "ErrorRows",
    "RankRows",
    "resample_weights",
    "bootstrap",
    "verdict",
]

LEVEL = 0.95
RESAMPLES = 1000
_CHUNK_ELEMENTS = 2**22  # weights per chunk of resamples (32 MB of float64)

DEGENERATE_NOTE = "every resample gives the same value: the test split is too small to show the uncertainty"
DEGENERATE_DIFFERENCE_NOTE = (
    "every resample gives the same difference, 0: the model and the baseline score alike on every test row, "
    "so the test split cannot tell them apart"
)
_CONSTANT_DIFFERENCE_NOTE = "every resample gives the same difference: the two differ the same way on every test row"

Values = dict[str, np.ndarray]  # metric name -> (B,) values, one per resample
Counts = dict[str, tuple[int, int]]  # metric name -> (successes, trials) on the whole test split


class Rows:
    """One model's predictions on the N test rows, scored under row weights W (B, N)."""

    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def values(self, w: np.ndarray) -> Values:
        """Each metric under each row of weights `w` (B, N): {name: (B,)}."""
        raise NotImplementedError

    def proportions(self) -> Counts:
        """The metrics that are a count of successes among independent rows: {name: (successes, trials)}."""
        return {}


def _wmean(w: np.ndarray, per_row: np.ndarray) -> np.ndarray:
    return (w @ per_row) / w.sum(axis=1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0: an undefined precision, recall or F1 (`_metrics` gives None)."""
    out = np.full(np.shape(num), np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def weighted_auc(w: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC-AUC of `score` for the rows where `positive`, under weights `w` (B, N); ties count half.

    Rows are sorted by score once; the tied rows form groups, and for each resample the AUC is
    Σ_groups pos_g · (neg below g + neg_g / 2) / (pos · neg). NaN where a resample holds no
    positive or no negative row.
    """
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    ws = w[:, order]
    pos_g = np.add.reduceat(ws * positive[order], starts, axis=1)  # (B, G)
    neg_g = np.add.reduceat(ws * ~positive[order], starts, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g
    n_pos, n_neg = pos_g.sum(axis=1), neg_g.sum(axis=1)
    u = (pos_g * (below + 0.5 * neg_g)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


class ClassRows(Rows):
    """Class decisions and probabilities: accuracy, macro F1, ROC-AUC (binary, or one-vs-rest
    macro), log loss and, for two classes, precision, recall and F1 of the positive class."""

    def __init__(self, y: np.ndarray, proba: np.ndarray, pred: np.ndarray, positive: int | None = None):
        self.y = np.asarray(y, dtype=np.int64)
        self.proba = np.asarray(proba, dtype=np.float64)
        self.pred = np.asarray(pred, dtype=np.int64)
        self.k = self.proba.shape[1]
        self.positive = positive if self.k == 2 else None
        eps = np.finfo(np.float64).eps
        self.nll = -np.log(np.clip(self.proba[np.arange(len(self.y)), self.y], eps, 1 - eps))
        self.names = ("accuracy", "f1_macro", "roc_auc", "log_loss") + (("precision", "recall", "f1") if self.positive is not None else ())

    def __len__(self) -> int:
        return len(self.y)

    def _counts(self, w: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tp = w @ ((self.y == c) & (self.pred == c)).astype(np.float64)
        predicted = w @ (self.pred == c).astype(np.float64)
        actual = w @ (self.y == c).astype(np.float64)
        return tp, predicted, actual

    def values(self, w: np.ndarray) -> Values:
        out = {"accuracy": _wmean(w, (self.y == self.pred).astype(np.float64)), "log_loss": _wmean(w, self.nll)}
        # Macro F1 over the classes the draw holds (a class with no row has no F1), as `_metrics`.
        f1 = []
        for c in range(self.k):
            tp, predicted, actual = self._counts(w, c)
            f1.append(_ratio(2 * tp, np.where(actual > 0, predicted + actual, 0)))
        out["f1_macro"] = np.nanmean(f1, axis=0)
        if self.k == 2:
            p = self.positive if self.positive is not None else 1
            out["roc_auc"] = weighted_auc(w, self.y == p, self.proba[:, p])
        else:
            present = w @ np.eye(self.k)[self.y] > 0  # (B, K): a class absent from a resample has no AUC
            aucs = np.stack([weighted_auc(w, self.y == c, self.proba[:, c]) for c in range(self.k)], axis=1)
            out["roc_auc"] = np.where(present.all(axis=1), aucs.mean(axis=1), np.nan)
        if self.positive is not None:
            tp, predicted, actual = self._counts(w, self.positive)
            # Undefined (NaN) where no row is predicted positive (precision) or is positive (recall, F1).
            out.update(
                precision=_ratio(tp, predicted),
                recall=_ratio(tp, actual),
                f1=_ratio(2 * tp, np.where(actual > 0, predicted + actual, 0)),
            )
        return out

    def proportions(self) -> Counts:
        """Accuracy: right rows of all rows; precision: true positives of the rows predicted positive;
        recall: true positives of the positive rows (a count of 0 has no proportion and is left out)."""
        out = {"accuracy": (int((self.y == self.pred).sum()), len(self.y))}
        if self.positive is not None:
            tp, predicted, actual = (int(v[0]) for v in self._counts(np.ones((1, len(self.y))), self.positive))
            out.update(precision=(tp, predicted), recall=(tp, actual))
        return {k: v for k, v in out.items() if v[1] > 0}


class ErrorRows(Rows):
    """Numeric predictions (N, H) against the truth (N, H): MAE, RMSE, R², sMAPE over every value
    of the drawn rows (a forecast window's H values are drawn together)."""

    def __init__(self, y: np.ndarray, pred: np.ndarray, names: tuple[str, ...] = ("mae", "rmse", "r2")):
        y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
        self.y = y.reshape(len(y), -1)
        self.pred = pred.reshape(len(pred), -1)
        self.names = names
        e = self.y - self.pred
        self.abs, self.sq = np.abs(e).mean(axis=1), (e**2).mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            den = np.abs(self.y) + np.abs(self.pred)
            self.smape = np.where(den > 0, 2 * np.abs(e) / np.where(den > 0, den, 1), 0.0).mean(axis=1)

    def __len__(self) -> int:
        return len(self.y)

    def values(self, w: np.ndarray) -> Values:
        out: Values = {}
        if "mae" in self.names:
            out["mae"] = _wmean(w, self.abs)
        if "rmse" in self.names:
            out["rmse"] = np.sqrt(_wmean(w, self.sq))
        if "smape" in self.names:
            out["smape"] = _wmean(w, self.smape)
        if "r2" in self.names:
            mean = _wmean(w, self.y.mean(axis=1))[:, None]
            total = (w * ((self.y.mean(axis=1)[None, :] - mean) ** 2)).sum(axis=1) / w.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out["r2"] = np.where(total > 0, 1 - _wmean(w, self.sq) / total, np.nan)
        return out


class RankRows(Rows):
    """Held-out items ranked among their candidates (`_metrics.ranking_rows`): HR@K, NDCG@K, AUC."""

    def __init__(self, per_row: dict[str, np.ndarray]):
        self.per_row = {k: np.asarray(v, dtype=np.float64) for k, v in per_row.items()}
        self.names = tuple(self.per_row)

    def __len__(self) -> int:
        return len(next(iter(self.per_row.values())))

    def values(self, w: np.ndarray) -> Values:
        return {k: _wmean(w, v) for k, v in self.per_row.items()}


def resample_weights(n: int, resamples: int, rng: np.random.Generator, block: int = 1) -> np.ndarray:
    """How often each of n rows is drawn in each of `resamples` resamples of n rows: (B, n).

    With `block` > 1, the draws are ceil(n / block) moving blocks of consecutive rows (the last
    one cut so that n rows are drawn), for rows that are not independent.
    """
    if block <= 1:
        idx = rng.integers(0, n, size=(resamples, n))
    else:
        block = min(block, n)
        starts = rng.integers(0, n - block + 1, size=(resamples, math.ceil(n / block)))
        idx = (starts[:, :, None] + np.arange(block)).reshape(resamples, -1)[:, :n]
    flat = idx + (np.arange(resamples) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def clopper_pearson(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact binomial interval of successes / trials: the beta quantiles of Clopper and
    Pearson (1934), 0 and 1 at the ends; covers the true proportion at least `level` of the time."""
    from scipy.special import betaincinv  # the beta quantile; scipy.stats would cost 0.4 s more to import

    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"no binomial interval for {successes} of {trials}")
    alpha = 1 - level
    low = 0.0 if successes == 0 else float(betaincinv(successes, trials - successes + 1, alpha / 2))
    high = 1.0 if successes == trials else float(betaincinv(successes + 1, trials - successes, 1 - alpha / 2))
    return low, high


def _degenerate(low: float, high: float, value: float) -> bool:
    return high - low <= 1e-12 * max(1.0, abs(value))


def _interval(point: float | None, draws: np.ndarray, level: float, method: str, note: str = DEGENERATE_NOTE) -> dict[str, Any]:
    draws = draws[np.isfinite(draws)]
    if point is None or not np.isfinite(point) or len(draws) == 0:
        return {"value": None if point is None or not np.isfinite(point) else float(point), "low": None, "high": None, "method": method}
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    out: dict[str, Any] = {"value": float(point), "low": float(low), "high": float(high), "method": method}
    if _degenerate(out["low"], out["high"], out["value"]):
        out.update(degenerate=True, note=note)
    return out


def _binomial(point: float, counts: tuple[int, int], level: float) -> dict[str, Any]:
    k, n = counts
    low, high = clopper_pearson(k, n, level)
    return {"value": float(point), "low": low, "high": high, "method": "clopper_pearson", "count": {"successes": k, "trials": n}}


def bootstrap(
    model: Rows,
    baseline: Rows | None = None,
    *,
    seed: int,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    block: int = 1,
) -> dict[str, Any]:
    """Percentile intervals of every metric of `model`, and of model - baseline on the same draws.

    Returns:
        {"level", "resamples", "block", "metrics": {name: {"value", "low", "high", "method", ...}},
        "baseline_metrics": {name: value} and "differences": {name: {"value", "low", "high", "method", ...}}
        (with a baseline)}. A metric undefined on the whole split (a class absent) has value
        None; resamples where it is undefined are left out of its interval. With independent rows
        (`block` 1) a proportion's interval is Clopper–Pearson's (method "clopper_pearson", with
        "count": {"successes", "trials"}); the others are percentiles of the resamples (method
        "percentile_bootstrap", or "moving_block_bootstrap"), marked "degenerate": true with a
        "note" when every resample gives the same value.
    """
    n = len(model)
    if baseline is not None and len(baseline) != n:
        raise ValueError(f"the baseline scored {len(baseline)} rows; the model {n}")
    ones = np.ones((1, n))
    point = {k: float(v[0]) for k, v in model.values(ones).items()}
    base_point = {k: float(v[0]) for k, v in baseline.values(ones).items()} if baseline is not None else {}
    shared = [k for k in point if k in base_point]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    draws: dict[str, list[np.ndarray]] = {k: [] for k in point}
    diffs: dict[str, list[np.ndarray]] = {k: [] for k in shared}
    for start in range(0, resamples, chunk):
        w = resample_weights(n, min(chunk, resamples - start), rng, block)
        m = model.values(w)
        b = baseline.values(w) if baseline is not None else {}
        for k in point:
            draws[k].append(m[k])
        for k in shared:
            diffs[k].append(m[k] - b[k])
    method = "percentile_bootstrap" if block <= 1 else "moving_block_bootstrap"
    counts = model.proportions() if block <= 1 else {}
    result: dict[str, Any] = {
        "level": level,
        "resamples": int(resamples),
        "block": int(block),
        "metrics": {
            k: _binomial(point[k], counts[k], level) if k in counts else _interval(point[k], np.concatenate(draws[k]), level, method)
            for k in point
        },
    }
    if baseline is not None:
        result["baseline_metrics"] = {k: (v if np.isfinite(v) else None) for k, v in base_point.items()}
        result["differences"] = {
            k: _interval(
                point[k] - base_point[k] if np.isfinite(point[k] - base_point[k]) else None,
                np.concatenate(diffs[k]),
                level,
                method,
                DEGENERATE_DIFFERENCE_NOTE if point[k] == base_point[k] else _CONSTANT_DIFFERENCE_NOTE,
            )
            for k in shared
        }
    return result


def verdict(difference: dict[str, float | None], lower_is_better: bool) -> str:
    """ "beats" when the difference's interval excludes 0 on the better side, "worse" when on the
    worse side, "does_not_beat" when it holds 0 (or is undefined)."""
    low, high = difference.get("low"), difference.get("high")
    if low is None or high is None:
        return "does_not_beat"
    better_low, better_high = (-high, -low) if lower_is_better else (low, high)
    if better_low > 0:
        return "beats"
    if better_high < 0:
        return "worse"
    return "does_not_beat"
