"""Tasks as objects: what each kind of target means for training, decoding and evaluation.

A task owns every decision that other stages used to make by comparing the task's name: its
default loss (what `train.loss: auto` means), how many outputs the model has, how outputs
become predictions, what validation logs each epoch and which metric the progress bar shows,
its headline metric, its summary metrics, the metrics a spec may name, its test metrics and
the outputs of its serving signature.
A new task is one class here plus one line in `TASKS`; the other stages ask `task_of(spec)`.

The metrics a task names come from the one metrics table, `evaluate._metrics.METRICS`; the
spec's validators ask the task which of them a spec may name. Specs, prepared data, schemas and
packaged models are duck-typed here: the spec imports this module only inside its validators,
and `package` (which builds `Model`) comes after `evaluate` in the flow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from trustforge.data import forecast_inputs, forecast_table, interaction_predictions, training_overlap, window_forecasts
from trustforge.errors import ModelError, SpecError
from trustforge.evaluate import _recommend as recommend
from trustforge.evaluate._baselines import (
    Baseline,
    BiasBaseline,
    LogisticBaseline,
    PopularityBaseline,
    RidgeBaseline,
    SeasonalNaiveBaseline,
)
from trustforge.evaluate._metrics import METRICS, binary_predictions, classification_metrics, forecasting_metrics, regression_metrics

__all__ = [
    "Task",
    "Classification",
    "Regression",
    "Forecasting",
    "Recommendation",
    "TASKS",
    "task_of",
    "task_named",
    "outputs_to_proba",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricsFn = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
Decode = Callable[[np.ndarray], np.ndarray]


def outputs_to_proba(out: torch.Tensor, n_classes: int) -> np.ndarray:
    """Class probabilities (N, K) from raw outputs: one logit means binary cross-entropy.

    Computed in float64, so each row sums to 1 within float64 rounding (what scikit-learn's
    metrics check; float32 probabilities cast up miss it by ~1e-7 and make them warn)."""
    out = out.detach().double()
    if out.shape[-1] == 1 and n_classes == 2:
        p = torch.sigmoid(out)
        return torch.cat([1 - p, p], dim=-1).numpy()
    return torch.softmax(out, dim=-1).numpy()


def _with_n(m: dict[str, Any], n: int) -> dict[str, Any]:
    m["n"] = int(n)
    return m


class Task(ABC):
    """One kind of target. Subclasses implement every abstract method (a task missing one cannot
    be instantiated, so it cannot be registered); the others have defaults.

    Spec-facing methods take the `TaskSpec` (some answers depend on it, e.g. recommendation's
    feedback); model-facing ones take what the stage holds. `model` arguments are a
    `trustforge.Model` (its `preprocessor`, `module`, `classes`, `outputs(raw)`).
    """

    name: ClassVar[str]
    probabilities: ClassVar[bool] = False  # outputs decode to class probabilities (calibration, predict_proba)
    # The report's summary cards: the figures of metrics.json that sum a run up, in order.
    report_metrics: ClassVar[tuple[str, ...]] = ()
    # The drift monitor watches the `prediction` column as numbers (else as labels).
    numeric_prediction: ClassVar[bool] = False
    # Predictions are one row per input row, decoded from the model's outputs alone
    # (`output_columns`); else only `predict` builds them (a forecast's steps, recommendations).
    row_outputs: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ------------------------------------------------------------------ the spec's vocabulary

    @abstractmethod
    def metric_names(self, spec: Any) -> tuple[str, ...]:
        """The metrics `evaluate.metrics` may name (in the order error messages list them)."""
        raise NotImplementedError

    def monitor_names(self, spec: Any) -> tuple[str, ...]:
        """The metrics `train.early_stopping.monitor` may name as `val_<metric>`: those logged on validation."""
        return tuple(m for m in self.metric_names(spec) if m in METRICS and METRICS[m].validation)

    @abstractmethod
    def default_metrics(self, spec: Any) -> list[str]:
        """The rows of the summary table when the spec names none."""
        raise NotImplementedError

    @abstractmethod
    def headline_metric(self, spec: Any) -> str:
        """The one figure that sums a run up (the corruption table, comparisons)."""
        raise NotImplementedError

    @abstractmethod
    def default_monitor(self, spec: Any) -> str:
        """The validation log the progress bar shows when there is no early stopping."""
        raise NotImplementedError

    def leaderboard_metric(self, metrics: Mapping[str, Any]) -> str:
        """The figure of a run's metrics.json that `compare_runs` ranks runs of this task by
        (default: rmse, the error of a task that predicts numbers)."""
        return "rmse"

    def higher_is_better(self, monitor: str) -> bool:
        """Whether a larger `val_<metric>` (or `val_loss`) is an improvement."""
        name = monitor.removeprefix("val_")
        return METRICS[name].higher_is_better if name in METRICS else False

    # ------------------------------------------------------------------ the model

    @abstractmethod
    def output_size(self, spec: Any, schema: Any) -> int:
        """Number of model outputs."""
        raise NotImplementedError

    @abstractmethod
    def loss(self, spec: Any, n_classes: int, train_target: torch.Tensor) -> LossFn:
        """The training loss (`train.loss`, `auto` meaning this task's default) on raw outputs and encoded targets."""
        raise NotImplementedError

    @abstractmethod
    def validation_metrics(self, spec: Any, preprocessor: Any, names: tuple[str, ...] = ()) -> MetricsFn:
        """What the Trainer logs on validation outputs each epoch (as `val_<name>`), plus `names`."""
        raise NotImplementedError

    @abstractmethod
    def output_signature(self, schema: Any) -> list[dict[str, Any]]:
        """The serving signature's outputs (OIP v2 style: name, datatype, shape)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ decoding and metrics

    def calibrate(self, out: torch.Tensor, temperature: float) -> torch.Tensor:
        """Outputs with a fitted temperature applied (only probabilities have one)."""
        return out

    @abstractmethod
    def compute_metrics(
        self,
        y_true: np.ndarray,
        *,
        proba: np.ndarray | None = None,
        y_pred: np.ndarray | None = None,
        classes: list[str] | None = None,
        baseline: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """The full metric set, JSON-serialisable, from decoded predictions."""
        raise NotImplementedError

    @abstractmethod
    def test_metrics(self, data: Any, out: torch.Tensor, module: torch.nn.Module) -> dict[str, Any]:
        """A run's test metrics from its test outputs `out` (float32, as the package predicts)."""
        raise NotImplementedError

    @abstractmethod
    def predict(self, model: Any, raw: Any) -> pd.DataFrame:
        """Predictions as a table (see `Model.predict`)."""
        raise NotImplementedError

    @abstractmethod
    def evaluate(self, model: Any, raw: Any) -> dict[str, Any]:
        """The full metric set of a packaged model on labelled raw data (see `Model.evaluate`)."""
        raise NotImplementedError

    def output_columns(self, model: Any, out: torch.Tensor) -> dict[str, np.ndarray]:
        """The prediction table's columns (as `predict` names them, paths aside) from the
        model's calibrated outputs (N, ...), as arrays; tasks with `row_outputs` only."""
        raise NotImplementedError(f"{self.name} predictions are built by predict")

    def monitored_predictions(
        self, preprocessor: Any, outputs: Sequence[torch.Tensor], decision: Mapping[str, Any] | None = None
    ) -> np.ndarray | None:
        """The predictions the drift reference summarises, from held-out outputs, as the package
        predicts them (`decision`: a binary model's threshold); None when the monitor does not
        watch this task's predictions yet."""
        return None

    def baseline(self, spec: Any) -> Baseline | None:
        """The simple model every run of this task is measured against (`_baselines`), fitted in
        the run on the same training split; None when the task has none."""
        return None


def _frame(raw: Any, n: int, columns: Mapping[str, Any]) -> pd.DataFrame:
    """The prediction table: the rows' paths (for files read from a folder) then `columns`, built in
    one call (adding columns one by one costs most of a one-row `Model.predict`)."""
    return pd.DataFrame({**({"path": raw.paths} if raw.paths else {}), **columns}, index=range(n))


class Classification(Task):
    """A class per row; outputs are logits (one for binary cross-entropy)."""

    name = "classification"
    probabilities = True
    row_outputs = True
    report_metrics = ("accuracy", "f1_macro", "roc_auc", "log_loss")
    METRIC_NAMES = tuple(name for name, m in METRICS.items() if m.family == "class")

    def metric_names(self, spec: Any) -> tuple[str, ...]:
        return self.METRIC_NAMES

    def default_metrics(self, spec: Any) -> list[str]:
        return ["accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc"]

    def headline_metric(self, spec: Any) -> str:
        return "accuracy"

    def default_monitor(self, spec: Any) -> str:
        return "val_accuracy"

    def baseline(self, spec: Any) -> Baseline:
        return LogisticBaseline()  # the majority class where no input is a linear model's

    def leaderboard_metric(self, metrics: Mapping[str, Any]) -> str:
        return "accuracy"

    def output_size(self, spec: Any, schema: Any) -> int:
        n = len(schema.classes or [])
        if spec.train.loss == "bce":
            if n != 2:
                raise ModelError(f"train.loss 'bce' needs exactly 2 classes; the data has {n}")
            return 1
        return n

    def loss(self, spec: Any, n_classes: int, train_target: torch.Tensor) -> LossFn:
        """Cross-entropy (or `bce` on one logit). `class_weights: balanced` weighs each class by
        n / (K · count), as sklearn's `class_weight="balanced"` does."""
        t = spec.train
        weights = None
        if t.class_weights == "balanced":
            counts = torch.bincount(train_target, minlength=n_classes).clamp(min=1).float()
            weights = len(train_target) / (n_classes * counts)
        if t.loss == "bce":
            pos_weight = None if weights is None else (weights[1] / weights[0]).reshape(1)
            return lambda out, y: F.binary_cross_entropy_with_logits(out.squeeze(-1).float(), y.float(), pos_weight=pos_weight)
        ls = t.label_smoothing
        return lambda out, y: F.cross_entropy(out.float(), y, weight=weights, label_smoothing=ls)

    def validation_metrics(self, spec: Any, preprocessor: Any, names: tuple[str, ...] = ()) -> MetricsFn:
        # The trainer asks this before the first epoch: the first moment the spec meets the
        # data's classes, so a positive class or threshold they cannot take fails before training.
        self.check_decision(spec, preprocessor.schema.classes)
        return self.validation_fn(preprocessor.schema.classes, names)

    @staticmethod
    def check_decision(spec: Any, classes: Sequence[str]) -> None:
        """Refuse `evaluate.positive_class` / `evaluate.threshold` on data that is not binary,
        and a positive class the data does not have.

        Raises:
            SpecError: naming the field, the number of classes and the classes.
        """
        ev = spec.evaluate
        for name in ("positive_class", "threshold"):
            if getattr(ev, name) is not None and len(classes) != 2:
                raise SpecError(
                    f"evaluate.{name} applies to binary classification; the data has {len(classes)} classes "
                    f"({', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''})"
                )
        if ev.positive_class is not None and ev.positive_class not in classes:
            raise SpecError(
                f"evaluate.positive_class must be one of the classes ({', '.join(map(str, classes))}); got {ev.positive_class!r}"
            )

    @staticmethod
    def positive_index(spec: Any, classes: Sequence[str], train_target: torch.Tensor) -> int | None:
        """The positive class of a binary task: `evaluate.positive_class`, else the minority of
        the training split (class 1 on a tie, as before there was a choice); None for K > 2."""
        if len(classes) != 2:
            return None
        if spec.evaluate.positive_class is not None:
            return list(classes).index(spec.evaluate.positive_class)
        counts = torch.bincount(torch.as_tensor(train_target).reshape(-1).long(), minlength=2)
        return 0 if int(counts[0]) < int(counts[1]) else 1

    def validation_fn(self, classes: list[str], names: tuple[str, ...] = ()) -> MetricsFn:
        """Accuracy, and any other named metric (the whole set is computed only then)."""

        def fn(out: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
            proba = outputs_to_proba(out, len(classes))
            if not names or set(names) <= {"accuracy"}:
                return {"accuracy": float((proba.argmax(1) == target.numpy()).mean())}
            full = self.compute_metrics(target.numpy(), proba=proba, classes=classes)
            return {k: float(full[k]) for k in ("accuracy", *names) if full.get(k) is not None}

        return fn

    def output_signature(self, schema: Any) -> list[dict[str, Any]]:
        return [
            {"name": "prediction", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(schema.classes)], "labels": schema.classes},
        ]

    def calibrate(self, out: torch.Tensor, temperature: float) -> torch.Tensor:
        return out / temperature if temperature != 1.0 else out  # argmax unchanged; probabilities calibrated

    def compute_metrics(self, y_true, *, proba=None, y_pred=None, classes=None, baseline=None, decision=None) -> dict[str, Any]:
        """The metric set; for a binary model with a `decision` ({"positive_class", "threshold":
        {"value", ...}}, as a package's manifest holds it) the predictions are the threshold's
        and the headline precision, recall and F1 are the positive class's, which
        `positive_class` names (class 1 without a decision, as before)."""
        pos, threshold = _decision(decision, classes)
        m = classification_metrics(np.asarray(y_true, dtype=np.int64), proba, classes, positive=pos, threshold=threshold)
        m["labels"] = list(classes)
        counts = np.bincount(np.asarray(y_true, dtype=np.int64), minlength=len(classes))
        if counts.sum():  # the yardstick accuracy must clear: always predicting the commonest test class
            m["majority_class"] = str(classes[int(counts.argmax())])
            m["majority_class_accuracy"] = float(counts.max() / counts.sum())
        if len(classes) == 2:
            m["positive_class"] = str(classes[1 if pos is None else pos])
            if decision is not None:
                m["threshold"] = dict(decision["threshold"])
        return _with_n(m, len(y_true))

    def test_metrics(
        self, data: Any, out: torch.Tensor, module: torch.nn.Module, decision: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        proba = outputs_to_proba(out, len(data.schema.classes))
        return self.compute_metrics(data.test.target.numpy(), proba=proba, classes=data.schema.classes, decision=decision)

    def predict(self, model: Any, raw: Any) -> pd.DataFrame:
        out = model.outputs(raw)
        return _frame(raw, len(out), self.output_columns(model, out))

    def output_columns(self, model: Any, out: torch.Tensor) -> dict[str, np.ndarray]:
        classes = model.classes
        proba = outputs_to_proba(out, len(classes))
        columns = {"prediction": np.array(classes, dtype=object)[self.decide(proba, classes, model.decision)]}
        by_class = np.ascontiguousarray(proba.T)  # each class's probabilities contiguous, as a table's column is
        columns.update({f"proba_{c}": by_class[j] for j, c in enumerate(classes)})
        return columns

    @staticmethod
    def decide(proba: np.ndarray, classes: Sequence[str], decision: Mapping[str, Any] | None) -> np.ndarray:
        """Predicted class indices: the threshold's for a binary decision, else the argmax."""
        pos, threshold = _decision(decision, classes)
        return proba.argmax(axis=1) if threshold is None else binary_predictions(proba, pos, threshold)

    def evaluate(self, model: Any, raw: Any) -> dict[str, Any]:
        target = model.preprocessor.encode_target(raw)
        out = model.outputs(raw)
        proba = outputs_to_proba(out, len(model.classes))
        return self.compute_metrics(target.numpy(), proba=proba, classes=model.classes, decision=model.decision)

    def monitored_predictions(
        self, preprocessor: Any, outputs: Sequence[torch.Tensor], decision: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        classes = preprocessor.schema.classes
        proba = outputs_to_proba(torch.cat(list(outputs)).float(), len(classes))
        return np.array(classes, dtype=object)[self.decide(proba, classes, decision)]  # the predicted class names, as served


def _decision(decision: Mapping[str, Any] | None, classes: Sequence[str]) -> tuple[int | None, float | None]:
    """(positive index, threshold) of a binary decision; (None, None) without one."""
    if decision is None or len(classes) != 2:
        return None, None
    return list(classes).index(decision["positive_class"]), float(decision["threshold"]["value"])


def _error_metrics(decode: Decode | None, names: tuple[str, ...]) -> MetricsFn:
    """MAE and RMSE (and any other named regression metric) of every output value."""

    def fn(out: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        # reshape(-1): a forecast's (N, horizon) values count one by one (regression: (N, 1) → N).
        y = out.reshape(-1).numpy().astype(np.float64)
        t = target.reshape(-1).numpy().astype(np.float64)
        if decode is not None:
            y, t = decode(y), decode(t)
        full = regression_metrics(t, y)
        return {k: full[k] for k in ("mae", "rmse", *names) if k in full}

    return fn


class Regression(Task):
    """One number per row; the model predicts it standardised, decoded to the target's units."""

    name = "regression"
    report_metrics = ("rmse", "mae", "r2")
    numeric_prediction = True
    row_outputs = True
    METRIC_NAMES = ("mae", "rmse", "r2")

    def metric_names(self, spec: Any) -> tuple[str, ...]:
        return self.METRIC_NAMES

    def default_metrics(self, spec: Any) -> list[str]:
        return list(self.METRIC_NAMES)

    def headline_metric(self, spec: Any) -> str:
        return "rmse"

    def default_monitor(self, spec: Any) -> str:
        return "val_mae"

    def baseline(self, spec: Any) -> Baseline:
        return RidgeBaseline()

    def output_size(self, spec: Any, schema: Any) -> int:
        return 1

    def loss(self, spec: Any, n_classes: int, train_target: torch.Tensor) -> LossFn:
        return lambda out, y: F.mse_loss(out.squeeze(-1).float(), y)

    def validation_metrics(self, spec: Any, preprocessor: Any, names: tuple[str, ...] = ()) -> MetricsFn:
        """MAE and RMSE in the target's original units (decoding undoes the standardisation)."""
        return _error_metrics(preprocessor.decode_regression, names)

    def output_signature(self, schema: Any) -> list[dict[str, Any]]:
        return [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]

    def compute_metrics(self, y_true, *, proba=None, y_pred=None, classes=None, baseline=None) -> dict[str, Any]:
        m = regression_metrics(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64))
        return _with_n(m, len(y_true))

    def _decoded(self, pre: Any, target: torch.Tensor, out: torch.Tensor) -> dict[str, Any]:
        y = pre.decode_regression(target.numpy().astype(np.float64))
        pred = pre.decode_regression(out.squeeze(-1).numpy().astype(np.float64))
        return self.compute_metrics(y, y_pred=pred)

    def test_metrics(self, data: Any, out: torch.Tensor, module: torch.nn.Module) -> dict[str, Any]:
        return self._decoded(data.preprocessor, data.test.target, out)

    def predict(self, model: Any, raw: Any) -> pd.DataFrame:
        out = model.outputs(raw)
        return _frame(raw, len(out), self.output_columns(model, out))

    def output_columns(self, model: Any, out: torch.Tensor) -> dict[str, np.ndarray]:
        return {"prediction": model.preprocessor.decode_regression(out.squeeze(-1).numpy().astype(np.float64))}

    def evaluate(self, model: Any, raw: Any) -> dict[str, Any]:
        target = model.preprocessor.encode_target(raw)
        return self._decoded(model.preprocessor, target, model.outputs(raw))

    def monitored_predictions(
        self, preprocessor: Any, outputs: Sequence[torch.Tensor], decision: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        out = torch.cat(list(outputs)).float()
        return preprocessor.decode_regression(out.squeeze(-1).numpy().astype(np.float64))  # in the target's units


class Forecasting(Task):
    """The next `horizon` values of a series from its last `lookback`; one output per future step."""

    name = "forecasting"
    report_metrics = ("mae", "baseline_seasonal_naive_mae", "rmse", "mape", "smape")
    METRIC_NAMES = ("mae", "rmse", "mape", "smape")

    def metric_names(self, spec: Any) -> tuple[str, ...]:
        return self.METRIC_NAMES

    def default_metrics(self, spec: Any) -> list[str]:
        return [*self.METRIC_NAMES, "baseline_seasonal_naive_mae"]

    def headline_metric(self, spec: Any) -> str:
        return "mae"  # the figure compared with the seasonal-naive baseline

    def baseline(self, spec: Any) -> Baseline:
        return SeasonalNaiveBaseline()

    def default_monitor(self, spec: Any) -> str:
        return "val_mae"

    def output_size(self, spec: Any, schema: Any) -> int:
        return int(schema.series.horizon)

    def loss(self, spec: Any, n_classes: int, train_target: torch.Tensor) -> LossFn:
        return lambda out, y: F.mse_loss(out.float().reshape(y.shape), y)  # (N, horizon) against (N, horizon)

    def validation_metrics(self, spec: Any, preprocessor: Any, names: tuple[str, ...] = ()) -> MetricsFn:
        """MAE and RMSE of every forecast value in the model's scaled units (undoing a window's
        level needs its inputs); the test metrics are in the series' units."""
        return _error_metrics(None, names)

    def output_signature(self, schema: Any) -> list[dict[str, Any]]:
        # One row per future step (see data._series.forecast_table); `time` when the series has a
        # time column and a step other than "rows" (where the next step's time is not known).
        outputs = [{"name": "step", "datatype": "INT64", "shape": [-1]}]
        if schema.series.time and schema.series.step != "rows":
            kind = "FP64" if schema.series.time_kind == "numeric" else "BYTES"
            outputs.append({"name": "time", "datatype": kind, "shape": [-1], "optional": True})
        return [*outputs, {"name": "prediction", "datatype": "FP64", "shape": [-1]}]

    def compute_metrics(self, y_true, *, proba=None, y_pred=None, classes=None, baseline=None) -> dict[str, Any]:
        return _with_n(forecasting_metrics(y_true, y_pred, baseline), len(y_true))

    def test_metrics(self, data: Any, out: torch.Tensor, module: torch.nn.Module) -> dict[str, Any]:
        # In the series' units, beside the seasonal-naive forecast of the same windows.
        y, pred, baseline = window_forecasts(data.preprocessor, data.test_raw, out)
        return self.compute_metrics(y, y_pred=pred, baseline=baseline)

    def predict(self, model: Any, raw: Any) -> pd.DataFrame:
        with torch.no_grad():
            out = model.module(forecast_inputs(model.preprocessor, raw)).float()  # (1, horizon)
        return forecast_table(model.preprocessor, raw, out)

    def evaluate(self, model: Any, raw: Any) -> dict[str, Any]:
        y, pred, baseline = window_forecasts(model.preprocessor, raw, model.outputs(raw))  # every complete window
        metrics = self.compute_metrics(y, y_pred=pred, baseline=baseline)
        overlap = training_overlap(model.preprocessor, raw)
        if overlap is not None:  # windows forecasting times the model trained on: in-sample on the training series
            metrics["n_in_training_period"] = overlap
        return metrics


class Recommendation(Task):
    """Users meet items: explicit feedback predicts ratings, implicit feedback ranks items."""

    name = "recommendation"
    # The model's figure beside its same-split baseline (explicit or implicit feedback).
    report_metrics = ("rmse", "baseline_bias_rmse", "mae", "hr@10", "baseline_popularity_hr@10", "ndcg@10", "baseline_popularity_ndcg@10")
    EXPLICIT = ("rmse", "mae")
    IMPLICIT = tuple(name for name, m in METRICS.items() if m.family == "ranking")

    @staticmethod
    def feedback(spec: Any) -> str:
        return spec.data.interactions.feedback

    def metric_names(self, spec: Any) -> tuple[str, ...]:
        # Each beside its baseline: the bias-only model (explicit) or popularity (implicit).
        if self.feedback(spec) == "explicit":
            return self.EXPLICIT + tuple(f"baseline_bias_{m}" for m in self.EXPLICIT)
        return self.IMPLICIT + tuple(f"baseline_popularity_{m}" for m in self.IMPLICIT)

    def default_metrics(self, spec: Any) -> list[str]:
        if self.feedback(spec) == "explicit":
            return ["rmse", "baseline_bias_rmse", "mae", "baseline_bias_mae"]
        return ["hr@10", "baseline_popularity_hr@10", "ndcg@10", "baseline_popularity_ndcg@10", "auc", "baseline_popularity_auc"]

    def headline_metric(self, spec: Any) -> str:
        return "rmse" if self.feedback(spec) == "explicit" else "ndcg@10"

    def default_monitor(self, spec: Any) -> str:
        return "val_rmse" if self.feedback(spec) == "explicit" else "val_auc"

    def baseline(self, spec: Any) -> Baseline:
        return BiasBaseline() if self.feedback(spec) == "explicit" else PopularityBaseline()  # popularity predicts no rating

    def leaderboard_metric(self, metrics: Mapping[str, Any]) -> str:
        return "rmse" if "rmse" in metrics else "ndcg@10"  # implicit feedback ranks items; it predicts no ratings

    def output_size(self, spec: Any, schema: Any) -> int:
        return 1  # a rating or a ranking score

    def loss(self, spec: Any, n_classes: int, train_target: torch.Tensor) -> LossFn:
        """MSE on ratings, or BPR, -log σ(score(u, i) - score(u, j)), on the score differences a
        recommender returns for (interaction, sampled negative) pairs."""
        if self.feedback(spec) == "implicit":
            return lambda out, y: F.softplus(-out.float().reshape(-1)).mean()  # softplus(-x) = -log σ(x)
        return lambda out, y: F.mse_loss(out.float().reshape(-1), y)

    def validation_metrics(self, spec: Any, preprocessor: Any, names: tuple[str, ...] = ()) -> MetricsFn:
        return recommend.validation_metrics(self.feedback(spec))

    def output_signature(self, schema: Any) -> list[dict[str, Any]]:
        # `unknown`: what training never saw ("", user, item, user+item): the fallback was used.
        return [{"name": "prediction", "datatype": "FP64", "shape": [-1]}, {"name": "unknown", "datatype": "BYTES", "shape": [-1]}]

    def compute_metrics(self, y_true, *, proba=None, y_pred=None, classes=None, baseline=None) -> dict[str, Any]:
        """Rating errors (explicit feedback); ranking needs the model (see `test_metrics`)."""
        return _with_n(regression_metrics(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)), len(y_true))

    def test_metrics(self, data: Any, out: torch.Tensor, module: torch.nn.Module) -> dict[str, Any]:
        return recommend.recommendation_metrics(data, module)  # ranks every candidate item, so it needs the model

    def predict(self, model: Any, raw: Any) -> pd.DataFrame:
        return interaction_predictions(model.preprocessor, raw, model.outputs(raw))  # `prediction` and `unknown`

    def evaluate(self, model: Any, raw: Any) -> dict[str, Any]:
        return recommend.interaction_metrics(model.preprocessor, model.module, raw)  # ratings, or held-out items ranked


TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Regression(), Forecasting(), Recommendation())}


def task_named(name: str | Task) -> Task:
    """The registered task of that name (a task object is returned as is)."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}") from None


def task_of(spec_or_schema: Any) -> Task:
    """The task of a `TaskSpec` or a data `Schema` (both carry `task`)."""
    return task_named(spec_or_schema.task)
