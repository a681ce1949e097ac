"""The yardstick of every run: a simple baseline fitted on the same training split, inside the run.

Each task names its baseline (`Task.baseline`); this module holds them. A baseline scores the
same test rows as the model, so `yardstick` can draw the model's and the baseline's rows with
the same bootstrap weights (`_intervals.bootstrap`) and say whether the model beats it:

- classification: logistic regression (C = 1, L-BFGS; scikit-learn's `LogisticRegression`
  objective and solver, `_linear.LogisticModel`) on the model's encoded
  inputs, flattened: float inputs (numbers, dates, pixels, spectrograms) standardised with the
  training split's mean and spread, categorical columns one-hot, token sequences as a bag of
  tokens (which tokens occur). With no input it can read, the training split's majority class.
  A binary model decides by a threshold (`Model.decision`); the baseline decides by the same
  rule: a fixed threshold as is, a rule (f1, recall@precision=P, precision@recall=R, cost)
  applied to the baseline's own validation probabilities by the chooser the model's threshold
  came from (`_calibration.choose_threshold`, with its fallback to 0.5), so that the two are
  compared at the same kind of operating point, not the model at its chosen one and the
  baseline at 0.5.
- regression: ridge regression (alpha = 1, `_linear.RidgeModel`) on the same features.
- forecasting: the seasonal-naive forecast of the same windows (no fit).
- recommendation: popularity (implicit feedback: items ranked by training count), or the
  bias-only model μ + b_u + b_i (explicit feedback: popularity predicts no rating).

The cost is bounded: the fit uses at most `MAX_FIT_ROWS` training rows and `MAX_FIT_VALUES`
feature values (a seeded sample of rows, never fewer than `MIN_FIT_ROWS`) and `MAX_ITER` solver
iterations; the rows used and whether the solver converged are recorded.

Models are duck-typed (`trustforge.Model`: `predict`, `outputs`, `module`, `preprocessor`):
`package` comes after `evaluate` in the flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trustforge.data import (
    Prepared,
    encode_interactions,
    interaction_popularity,
    interaction_ratings,
    interaction_targets,
    window_forecasts,
)
from trustforge.evaluate import _recommend as recommend
from trustforge.evaluate._calibration import choose_threshold
from trustforge.evaluate._compare import metric_direction
from trustforge.evaluate._intervals import LEVEL, RESAMPLES, ClassRows, ErrorRows, RankRows, Rows, bootstrap, verdict
from trustforge.evaluate._linear import LogisticModel, RidgeModel
from trustforge.evaluate._metrics import binary_predictions, ranking_rows

__all__ = [
    "Baseline",
    "Paired",
    "LogisticBaseline",
    "RidgeBaseline",
    "SeasonalNaiveBaseline",
    "PopularityBaseline",
    "BiasBaseline",
    "Design",
    "fit_logistic",
    "fit_ridge",
    "majority_class",
    "yardstick",
    "MAX_FIT_ROWS",
    "MAX_ITER",
    "MAX_FIT_VALUES",
]

MAX_FIT_ROWS = 20_000
MIN_FIT_ROWS = 1_000
MAX_FIT_VALUES = 3_000_000  # e.g. 976 rows of 3×32×32 images: about 4 s of lbfgs on one core
MAX_ITER = 500


@dataclass
class Paired:
    """The model's and the baseline's predictions on the same test rows, ready to bootstrap."""

    name: str  # "logistic_regression", "majority_class", ...
    label: str  # how the sentence names it: "logistic regression"
    description: str
    model: Rows
    baseline: Rows
    block: int = 1  # rows drawn together (overlapping forecast windows)
    unit: str = "test rows"
    details: dict[str, Any] = field(default_factory=dict)
    threshold: dict[str, Any] | None = None  # the baseline's binary decision threshold, by the model's rule


class Baseline:
    """One kind of baseline: fits on the training split, scores the test split beside the model."""

    def paired(self, spec: Any, data: Prepared, model: Any) -> Paired:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ---------------------------------------------------------------------------- features


class Design:
    """The model's encoded inputs as one flat feature matrix for a linear model.

    Fitted on the training split: float tensors are flattened and standardised (the training
    mean and spread), integer tensors of categorical columns (those `column_groups` places
    column by column) become one-hot columns, and any other integer tensor (a text column's
    token ids) a bag of tokens: which ids occur in the row (0, padding, is left out). Ids not
    seen in training get no column.
    """

    def __init__(self, data: Prepared):
        groups = data.preprocessor.column_groups() if data.schema.columns else []
        self.by_column = {t_i for _, _, t_i, cols in groups if cols is not None}
        self.parts: list[tuple[str, Any]] = []
        kinds = []
        for t_i, t in enumerate(data.train.inputs):
            if t.ndim >= 2 and t[0].numel() == 0:
                continue
            if t.is_floating_point():
                x = t.flatten(1).double().numpy()
                mean, std = x.mean(axis=0), x.std(axis=0)
                self.parts.append(("float", (t_i, mean, np.where(std > 0, std, 1.0))))
                kinds.append(f"{x.shape[1]} standardised number{'s' if x.shape[1] != 1 else ''}")
            elif t_i in self.by_column:
                sizes = (t.max(dim=0).values + 1).tolist() if len(t) else []
                self.parts.append(("onehot", (t_i, [int(s) for s in sizes])))
                kinds.append(f"{len(sizes)} one-hot categor{'ies' if len(sizes) != 1 else 'y'}")
            else:
                vocab = int(t.max()) + 1 if t.numel() else 1
                self.parts.append(("bag", (t_i, vocab)))
                kinds.append(f"a bag of {vocab - 1} tokens")
        self.summary = ", ".join(kinds)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def transform(self, inputs: tuple[torch.Tensor, ...]) -> Any:
        """The feature matrix of encoded inputs (N rows): dense, or sparse when a part is."""
        from scipy import sparse

        blocks = []
        for kind, info in self.parts:
            t = inputs[info[0]]
            n = len(t)
            if kind == "float":
                _, mean, std = info
                blocks.append(sparse.csr_matrix((t.flatten(1).double().numpy() - mean) / std))
            elif kind == "onehot":
                cols = []
                for j, size in enumerate(info[1]):
                    ids = t[:, j].numpy().astype(np.int64)
                    keep = (ids >= 0) & (ids < size)
                    cols.append(sparse.csr_matrix((np.ones(keep.sum()), (np.flatnonzero(keep), ids[keep])), shape=(n, size)))
                blocks.append(sparse.hstack(cols, format="csr") if cols else sparse.csr_matrix((n, 0)))
            else:
                vocab = info[1]
                ids = t.reshape(n, -1).numpy().astype(np.int64)
                rows = np.repeat(np.arange(n), ids.shape[1])
                flat = ids.ravel()
                keep = (flat > 0) & (flat < vocab)
                bag = sparse.csr_matrix((np.ones(keep.sum()), (rows[keep], flat[keep])), shape=(n, vocab))
                bag.data[:] = 1.0  # presence, not counts (duplicates were summed)
                blocks.append(bag)
        x = sparse.hstack(blocks, format="csr")
        return x if any(kind != "float" for kind, _ in self.parts) else x.toarray()


def _majority_caveat(metric: str, model_value: dict[str, Any], data: Prepared) -> str | None:
    """For accuracy: a sentence naming what always predicting the test split's commonest class
    scores, where the model's accuracy (its interval's low end) is not above it; else None."""
    classes = getattr(data.schema, "classes", None)
    if metric != "accuracy" or not classes:
        return None
    counts = np.bincount(data.test.target.numpy().astype(np.int64), minlength=len(classes))
    if not counts.sum():
        return None
    rate, name = float(counts.max() / counts.sum()), classes[int(counts.argmax())]
    value, low = model_value.get("value"), model_value.get("low")
    if value is None or (low if low is not None else value) > rate:
        return None
    where = "below" if value < rate else "not clearly above"
    return (
        f"But always predicting {name!r} scores {rate:.3f} on these rows, and the model's accuracy is {where} it: "
        "accuracy says little on this split; read the positive class's recall and precision, or PR AUC."
    )


def _fit_rows_words(data: Prepared, fit_rows: int) -> str:
    """The rows a baseline was fitted on, in words: augmented copies in the training split are said."""
    copies = data.augmented_copies
    if not copies:
        return f"{fit_rows} rows of the training split"
    own = len(data.train) - copies
    if fit_rows == len(data.train):
        return f"{fit_rows} rows of the training split ({own} examples and {copies} augmented copies of them)"
    return f"{fit_rows} rows sampled from the training split ({own} examples and {copies} augmented copies of them)"


def _fit_rows(n: int, seed: int, max_rows: int = MAX_FIT_ROWS) -> np.ndarray:
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def fit_logistic(
    data: Prepared,
    *,
    seed: int,
    parts: tuple[Any, ...] | None = None,
    class_weight: str | None = None,
    max_rows: int = MAX_FIT_ROWS,
    c: float = 1.0,
) -> tuple[Any, Design, dict[str, Any]]:
    """Logistic regression on the encoded inputs of `parts` (default: the training split).

    Returns the fitted model (`_linear.LogisticModel`, scikit-learn's objective and solver), the `Design` that makes its features, and details
    ({"fit_rows", "features", "converged"}).
    """
    parts = parts or (data.train,)
    design = Design(data)
    x = _stack([design.transform(p.inputs) for p in parts])
    y = np.concatenate([p.target.numpy() for p in parts]).astype(np.int64)
    rows = _fit_rows(len(y), seed, _bounded_rows(x, max_rows))
    model = LogisticModel(c=c, max_iter=MAX_ITER, class_weight=class_weight).fit(x[rows], y[rows])
    details = {"fit_rows": int(len(rows)), "features": int(x.shape[1]), "converged": bool(np.max(model.n_iter_) < MAX_ITER)}
    return model, design, details


def fit_ridge(data: Prepared, *, seed: int, alpha: float = 1.0, max_rows: int = MAX_FIT_ROWS) -> tuple[Any, Design, dict[str, Any]]:
    """Ridge regression on the training split's encoded inputs (the same `Design` as `fit_logistic`).

    Returns the fitted model (`_linear.RidgeModel`), its `Design` and details ({"fit_rows", "features"}).
    """
    design = Design(data)
    x = design.transform(data.train.inputs)
    y = data.train.target.numpy().astype(np.float64)
    rows = _fit_rows(len(y), seed, _bounded_rows(x, max_rows))
    model = RidgeModel(alpha=alpha).fit(x[rows], y[rows])
    return model, design, {"fit_rows": int(len(rows)), "features": int(x.shape[1])}


def _bounded_rows(x: Any, max_rows: int) -> int:
    """At most `max_rows` rows, and at most `MAX_FIT_VALUES` stored values (never below 1,000 rows):
    a solver iteration costs about the matrix's stored values."""
    from scipy import sparse

    stored = x.nnz if sparse.issparse(x) else x.size
    per_row = max(1.0, stored / max(x.shape[0], 1))
    return min(max_rows, max(MIN_FIT_ROWS, int(MAX_FIT_VALUES / per_row)))


def _stack(blocks: list[Any]) -> Any:
    from scipy import sparse

    return sparse.vstack(blocks, format="csr") if sparse.issparse(blocks[0]) else np.vstack(blocks)


def majority_class(data: Prepared) -> tuple[int, np.ndarray]:
    """The training split's most frequent class and the class shares (the constant probabilities)."""
    counts = np.bincount(data.train.target.numpy(), minlength=len(data.schema.classes)).astype(np.float64)
    return int(counts.argmax()), counts / counts.sum()


def _positive_index(spec: Any, data: Prepared, model: Any = None) -> int:
    """The positive class of a binary task: the model's decision's where it has one, else
    `evaluate.positive_class` where the spec names one, else the training split's minority
    class (class 1 on a tie)."""
    classes = list(data.schema.classes)
    decision = getattr(model, "decision", None)
    if isinstance(decision, dict) and decision.get("positive_class") in classes:
        return classes.index(decision["positive_class"])
    named = getattr(spec.evaluate, "positive_class", None)
    if named is not None and str(named) in classes:
        return classes.index(str(named))
    counts = np.bincount(data.train.target.numpy(), minlength=len(classes))
    return 1 if counts[1] <= counts[0] else 0


def _model_classes(model: Any, data: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """The packaged model's decisions (as `predict` makes them) and probabilities on the test split."""
    classes = list(data.schema.classes)
    frame = model.predict(data.test_raw)
    cols = [f"proba_{c}" for c in classes]
    proba = frame[cols].to_numpy(dtype=np.float64) if all(c in frame for c in cols) else np.asarray(model.predict_proba(data.test_raw))
    index = {c: i for i, c in enumerate(classes)}
    pred = np.array([index[str(p)] for p in frame["prediction"]], dtype=np.int64)
    return pred, proba


def _same_decision(
    spec: Any, data: Prepared, model: Any, positive: int | None, val_proba: np.ndarray | None, test_proba: np.ndarray
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The baseline's test decisions by the model's decision rule, and the threshold it used.

    Without a binary decision (more than two classes, or a package from before thresholds) the
    baseline takes the most probable class, as the model does, and no threshold is returned.
    Otherwise the rule is the spec's `evaluate.threshold` (the one the model's threshold was
    chosen by), applied by `choose_threshold` to the baseline's validation probabilities of the
    positive class: ``{"value", "rule", "chosen_on", "note"}``.
    """
    if positive is None or getattr(model, "decision", None) is None:
        return test_proba.argmax(axis=1), None
    score = is_positive = None
    if val_proba is not None and data.validation is not None and len(data.validation):
        score = val_proba[:, positive]
        is_positive = data.validation.target.numpy() == positive
    threshold = choose_threshold(score, is_positive, spec.evaluate.threshold)
    return binary_predictions(test_proba, positive, threshold["value"]), threshold


class LogisticBaseline(Baseline):
    """Logistic regression on the flattened encoded inputs; the majority class when there are none."""

    def paired(self, spec: Any, data: Prepared, model: Any) -> Paired:
        y = data.test.target.numpy().astype(np.int64)
        pred, proba = _model_classes(model, data)
        positive = _positive_index(spec, data, model) if len(data.schema.classes) == 2 else None
        has_validation = data.validation is not None and len(data.validation) > 0
        design = Design(data)
        if design and len(np.unique(data.train.target.numpy())) > 1:
            # The spec's answer to class imbalance (weighted loss or balanced batches) is the baseline's too.
            balanced = spec.train.class_weights == "balanced" or getattr(spec.train, "sampler", None) == "balanced"
            fitted, design, details = fit_logistic(data, seed=spec.train.seed, class_weight="balanced" if balanced else None)
            k = len(data.schema.classes)

            def probabilities(inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
                out = np.zeros((len(inputs[0]), k))
                out[:, np.asarray(fitted.classes_)] = fitted.predict_proba(design.transform(inputs))  # an absent class gets 0
                return out

            base_proba = probabilities(data.test.inputs)
            val_proba = probabilities(data.validation.inputs) if has_validation else None
            base_pred, threshold = _same_decision(spec, data, model, positive, val_proba, base_proba)
            base = ClassRows(y, base_proba, base_pred, positive)
            description = (
                f"logistic regression (L2, C=1, L-BFGS, at most {MAX_ITER} iterations"
                f"{', class_weight=balanced as the spec balances classes' if balanced else ''}) fitted on "
                f"{_fit_rows_words(data, details['fit_rows'])}, reading the model's encoded inputs as "
                f"{design.summary}; scored on the same test rows"
            )
            return Paired(
                "logistic_regression",
                "logistic regression",
                description,
                ClassRows(y, proba, pred, positive),
                base,
                details=details,
                threshold=threshold,
            )
        top, shares = majority_class(data)
        base_proba = np.broadcast_to(shares, (len(y), len(shares)))
        val_proba = np.broadcast_to(shares, (len(data.validation), len(shares))) if has_validation else None
        base_pred, threshold = _same_decision(spec, data, model, positive, val_proba, base_proba)
        called = data.schema.classes[int(base_pred[0])] if len(base_pred) else data.schema.classes[top]
        description = (
            f"always one class, {called!r} (the training split's most frequent class is {data.schema.classes[top]!r}, "
            f"{shares[top]:.1%} of training rows), with the training class shares as probabilities: "
            "the model's inputs have no feature a linear model can read"
        )
        return Paired(
            "majority_class",
            "the majority class",
            description,
            ClassRows(y, proba, pred, positive),
            ClassRows(y, base_proba, base_pred, positive),
            threshold=threshold,
        )


class RidgeBaseline(Baseline):
    """Ridge regression (alpha = 1) on the same features as `LogisticBaseline`."""

    def paired(self, spec: Any, data: Prepared, model: Any) -> Paired:
        pre = data.preprocessor
        y = pre.decode_regression(data.test.target.numpy().astype(np.float64))
        pred = np.asarray(model.predict(data.test_raw)["prediction"], dtype=np.float64)
        names = ("rmse", "mae", "r2")
        design = Design(data)
        train_y = data.train.target.numpy().astype(np.float64)
        if design:
            fitted, design, details = fit_ridge(data, seed=spec.train.seed)
            base = pre.decode_regression(fitted.predict(design.transform(data.test.inputs)).astype(np.float64))
            description = (
                f"ridge regression (alpha=1) fitted on {_fit_rows_words(data, details['fit_rows'])}, reading the "
                f"model's encoded inputs as {design.summary}; scored on the same test rows"
            )
            return Paired(
                "linear_regression", "linear (ridge) regression", description, ErrorRows(y, pred, names), ErrorRows(y, base, names)
            )
        base = np.full(len(y), pre.decode_regression(np.array([train_y.mean()]))[0])
        description = "always the training split's mean target: the model's inputs have no feature a linear model can read"
        return Paired("mean", "the training mean", description, ErrorRows(y, pred, names), ErrorRows(y, base, names))


class SeasonalNaiveBaseline(Baseline):
    """Each future value repeats the value one season earlier, on the same test windows."""

    def paired(self, spec: Any, data: Prepared, model: Any) -> Paired:
        y, pred, base = window_forecasts(model.preprocessor, data.test_raw, model.outputs(data.test_raw))
        season = data.schema.series.season
        block = max(1, round(len(y) ** (1 / 3)))
        names = ("mae", "rmse", "smape")
        description = (
            f"the seasonal-naive forecast: each future value is the series' value {season} step{'s' if season != 1 else ''} "
            f"earlier, on the same {len(y)} test windows (no fit). Windows overlap, so the bootstrap draws "
            f"blocks of {block} consecutive windows"
        )
        return Paired(
            "seasonal_naive",
            "the seasonal-naive forecast",
            description,
            ErrorRows(y, pred, names),
            ErrorRows(y, base, names),
            block,
            "test windows",
        )


class PopularityBaseline(Baseline):
    """Implicit feedback: every user's candidates ranked by how often training met each item."""

    def paired(self, spec: Any, data: Prepared, model: Any) -> Paired:
        pre, module = data.preprocessor, model.module
        user, item = (t.numpy() for t in encode_interactions(pre, data.test_raw))
        device = recommend._device(module)
        with torch.no_grad():
            ranks = recommend.held_out_ranks(lambda u: module.score_all(u.to(device)).cpu(), pre, user, item)[:3]
        popularity = torch.from_numpy(interaction_popularity(pre).astype(np.float64))
        base = recommend.held_out_ranks(lambda u: popularity.expand(len(u), -1), pre, user, item)[:3]
        description = (
            "popularity: each held-out item ranked among the same candidate items by how many training "
            "interactions each item has, the same for every user (no fit beyond counting)"
        )
        return Paired("popularity", "popularity", description, RankRows(_ranked(*ranks)), RankRows(_ranked(*base)), unit="held-out items")


def _ranked(higher: np.ndarray, ties: np.ndarray, cands: np.ndarray) -> dict[str, np.ndarray]:
    rows = ranking_rows(higher, ties, cands, recommend.KS)
    return {k: rows[k] for k in ("ndcg@10", "hr@10", "auc")}


class BiasBaseline(Baseline):
    """Explicit feedback: the bias-only model μ + b_u + b_i (popularity predicts no rating)."""

    def paired(self, spec: Any, data: Prepared, model: Any) -> Paired:
        pre = data.preprocessor
        user, item = (t.numpy() for t in encode_interactions(pre, data.test_raw))
        y = interaction_targets(pre, data.test_raw).numpy().astype(np.float64) + pre.tensors["target.mean"].numpy()
        pred = interaction_ratings(pre, recommend.pair_scores(model.module, user, item))
        base, ru, ri = recommend.bias_predictions(pre, data.train, data.validation, user, item)
        description = (
            "the bias-only model: global mean + user bias + item bias, fitted on the training split by "
            f"ridge (weights {ru:g} and {ri:g}, chosen on the validation split when there is one); popularity "
            "ranks items but predicts no rating"
        )
        names = ("rmse", "mae")
        return Paired(
            "bias_only", "the bias-only model", description, ErrorRows(y, pred, names), ErrorRows(y, base, names), unit="test ratings"
        )


# ---------------------------------------------------------------------------- the yardstick


def _lower_is_better(metric: str) -> bool:
    return metric_direction(metric) == "lower"  # the one table of directions (`compare`'s)


def _fmt(v: float | None) -> str:
    return "undefined" if v is None else f"{v:.3f}"


def _span(low: float, high: float) -> str:
    """ "low to high" to 3 decimals, or more where 3 would print the two alike (0.99995 to 1)."""
    for d in range(3, 8):
        a, b = f"{low:.{d}f}", f"{high:.{d}f}"
        if a != b:
            break
    return f"{a} to {b}"


def _interval_words(row: dict[str, Any]) -> str:
    """How the sentence gives a metric's interval: the percentiles, the exact binomial one with its
    count, or, when every resample gave one value, why there is none."""
    if row.get("degenerate"):
        return f" ({row.get('note') or 'every resample gives the same value'})"
    if row.get("low") is None:
        return ""
    if row.get("method") == "clopper_pearson" and isinstance(row.get("count"), dict):
        c = row["count"]
        return f" (95 % exact binomial interval {_span(row['low'], row['high'])}, from {c['successes']} of {c['trials']})"
    return f" (95 % interval {_span(row['low'], row['high'])})"


def _decision_words(p: Paired, model_threshold: dict[str, Any] | None) -> str:
    """ ", both deciding by ...": the clause that says the two were scored by the same decision rule."""
    base = p.threshold
    if base is None or model_threshold is None:
        return ""
    rule = base["rule"]
    if base["chosen_on"] == "validation" or model_threshold.get("chosen_on") == "validation":

        def how(t: dict[str, Any]) -> str:
            return f"{t['value']:.3g}" + ("" if t.get("chosen_on") == "validation" else " (the rule fell back to the default)")

        return (
            f", both deciding by the same rule, {rule} chosen on each one's validation probabilities "
            f"(threshold {how(model_threshold)} for the model, {how(base)} for {p.label})"
        )
    return f", both deciding at the same threshold, {base['value']:g}"


def _sentence(
    metric: str,
    lower: bool,
    p: Paired,
    model: dict,
    diff: dict,
    base_value: float | None,
    n: int,
    outcome: str,
    model_threshold: dict[str, Any] | None = None,
) -> str:
    side = " (lower is better)" if lower else ""
    gap = f"{diff['value']:+.3f}" if diff["value"] is not None else "undefined"
    gap_interval = f" (95 % interval {diff['low']:+.3f} to {diff['high']:+.3f})" if diff["low"] is not None else ""
    close = {
        "beats": "excludes 0 on the better side, so the model beats its baseline",
        "does_not_beat": "includes 0, so the model does not beat its baseline on this test split",
        "worse": "excludes 0 on the worse side, so the model is worse than its baseline",
    }[outcome]
    if diff.get("degenerate") and diff["value"] == 0:
        gap_interval = ""
        close = "is 0 in every resample: the test split cannot tell them apart, so the model does not beat its baseline on it"
    return (
        f"The model's {metric}{side} is {_fmt(model['value'])}{_interval_words(model)} against {_fmt(base_value)} for {p.label} "
        f"on the same {n} {p.unit}{_decision_words(p, model_threshold)}; the difference, {gap}{gap_interval}, {close}."
    )


def _model_threshold(model: Any) -> dict[str, Any] | None:
    decision = getattr(model, "decision", None)
    return decision.get("threshold") if isinstance(decision, dict) and isinstance(decision.get("threshold"), dict) else None


def yardstick(
    spec: Any, data: Prepared, model: Any, task: Any, *, resamples: int = RESAMPLES, level: float = LEVEL
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The run's baseline and bootstrap intervals: (`evidence["baseline"]`, `evidence["intervals"]`).

    Args:
        task: the spec's task (`task_of(spec)`); its `baseline(spec)` names the baseline and
            its `headline_metric(spec)` the figure compared.
        resamples: bootstrap resamples (seeded by `train.seed`).

    Returns (None, None) when the task has no baseline.
    """
    kind = task.baseline(spec)
    if kind is None:
        return None, None
    p = kind.paired(spec, data, model)
    boot = bootstrap(p.model, p.baseline, seed=spec.train.seed, resamples=resamples, level=level, block=p.block)
    metric = task.headline_metric(spec)
    if metric not in boot["metrics"]:
        metric = next(iter(boot["metrics"]))
    lower = _lower_is_better(metric)
    diff = boot["differences"].get(metric, {"value": None, "low": None, "high": None})
    outcome = verdict(diff, lower)
    model_value = boot["metrics"][metric]
    base_value = boot["baseline_metrics"].get(metric)
    n = len(p.model)
    baseline = {
        "name": p.name,
        "description": p.description,
        "metric": metric,
        "lower_is_better": lower,
        "model": model_value["value"],
        "baseline": base_value,
        "difference": diff,
        "verdict": outcome,
        "sentence": _sentence(metric, lower, p, model_value, diff, base_value, n, outcome, _model_threshold(model)),
        "metrics": boot["baseline_metrics"],
        "differences": boot["differences"],
        "rows": n,
        **({"fit": p.details} if p.details else {}),
        **({"threshold": p.threshold} if p.threshold is not None else {}),
    }
    caveat = _majority_caveat(metric, model_value, data)
    if caveat:  # beating logistic regression says little where always predicting one class scores more
        baseline["sentence"] += " " + caveat
    method = "percentile bootstrap" + (f", moving blocks of {p.block} {p.unit}" if p.block > 1 else f" of the {p.unit}")
    if any(m.get("method") == "clopper_pearson" for m in boot["metrics"].values()):
        method += "; exact binomial (Clopper-Pearson) for proportions (accuracy, precision, recall)"
    intervals = {"level": level, "resamples": boot["resamples"], "method": method, "rows": n, "metrics": boot["metrics"]}
    positive = getattr(p.model, "positive", None)
    if positive is not None:  # precision, recall and f1 are this class's
        intervals["positive_class"] = data.schema.classes[positive]
    return baseline, intervals
