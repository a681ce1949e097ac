"""Turning model outputs into the metrics a run reports, and showing them."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from trustforge.evaluate._metrics import classification_metrics, forecasting_metrics, regression_metrics

__all__ = ["outputs_to_proba", "compute_metrics", "validation_metrics", "metrics_table"]


def outputs_to_proba(out: torch.Tensor, n_classes: int) -> np.ndarray:
    """Class probabilities (N, K) from raw outputs: one logit means binary cross-entropy."""
    out = out.float()
    if out.shape[-1] == 1 and n_classes == 2:
        p = torch.sigmoid(out)
        return torch.cat([1 - p, p], dim=-1).numpy().astype(np.float64)
    return torch.softmax(out, dim=-1).numpy().astype(np.float64)


def compute_metrics(task: str, y_true: np.ndarray, *, proba: np.ndarray | None = None,
                    y_pred: np.ndarray | None = None, classes: list[str] | None = None,
                    baseline: np.ndarray | None = None) -> dict[str, Any]:
    """The full metric set of a task, JSON-serialisable.

    Args:
        task: "classification" (needs `proba` and `classes`), "regression" (needs `y_pred`) or
            "forecasting" (needs `y_pred`, and `baseline`, the seasonal-naive forecasts, both
            (N, horizon) like `y_true`).
        y_true: class indices, or target values in their original units.
    """
    if task == "forecasting":
        m = forecasting_metrics(y_true, y_pred, baseline)
        m["n"] = int(len(y_true))
        return m
    if task == "classification":
        m = classification_metrics(np.asarray(y_true, dtype=np.int64), proba, classes)
        m["labels"] = list(classes)
        m["n"] = int(len(y_true))
        return m
    m = regression_metrics(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64))
    m["n"] = int(len(y_true))
    return m


def validation_metrics(task: str, classes: list[str] | None, decode: Callable[[np.ndarray], np.ndarray] | None = None,
                       names: tuple[str, ...] = ()) -> Callable[[torch.Tensor, torch.Tensor], dict[str, float]]:
    """A function the Trainer calls on validation outputs each epoch.

    Classification logs accuracy (and any other named metric); regression logs MAE and RMSE in
    the target's original units (`decode` undoes the standardisation). Forecasting logs MAE and
    RMSE of every forecast value in the model's scaled units (no `decode`: undoing a window's
    level needs its inputs); the test metrics are in the series' units.
    """
    def fn(out: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        if task == "classification":
            proba = outputs_to_proba(out, len(classes))
            if not names or set(names) <= {"accuracy"}:
                return {"accuracy": float((proba.argmax(1) == target.numpy()).mean())}
            full = compute_metrics(task, target.numpy(), proba=proba, classes=classes)
            return {k: float(full[k]) for k in ("accuracy", *names) if full.get(k) is not None}
        # reshape(-1): a forecast's (N, horizon) values count one by one (regression: (N, 1) → N).
        y = out.reshape(-1).numpy().astype(np.float64)
        t = target.reshape(-1).numpy().astype(np.float64)
        if decode is not None:
            y, t = decode(y), decode(t)
        full = regression_metrics(t, y)
        return {k: full[k] for k in ("mae", "rmse", *names) if k in full}

    return fn


def metrics_table(metrics: dict[str, Any], names: list[str], title: str = "test metrics"):
    """A Rich table of the named metrics (missing or undefined ones shown as n/a)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in names:
        value = metrics.get(name)
        table.add_row(name, "n/a" if value is None else f"{value:.4f}")
    return table
