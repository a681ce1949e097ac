"""Turning model outputs into the metrics a run reports, and showing them.

The work is the tasks' (see `_tasks`); these functions take a task by name for callers that
hold only the name (a manifest, a benchmark).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from trustforge.evaluate._tasks import Task, outputs_to_proba, task_named

__all__ = ["outputs_to_proba", "compute_metrics", "validation_metrics", "metrics_table"]


def compute_metrics(
    task: str | Task,
    y_true: np.ndarray,
    *,
    proba: np.ndarray | None = None,
    y_pred: np.ndarray | None = None,
    classes: list[str] | None = None,
    baseline: np.ndarray | None = None,
) -> dict[str, Any]:
    """The full metric set of a task, JSON-serialisable.

    Args:
        task: a task or its name: "classification" (needs `proba` and `classes`), "regression"
            (needs `y_pred`) or "forecasting" (needs `y_pred`, and `baseline`, the
            seasonal-naive forecasts, both (N, horizon) like `y_true`).
        y_true: class indices, or target values in their original units.
    """
    return task_named(task).compute_metrics(y_true, proba=proba, y_pred=y_pred, classes=classes, baseline=baseline)


def validation_metrics(
    task: str | Task, classes: list[str] | None, decode: Callable[[np.ndarray], np.ndarray] | None = None, names: tuple[str, ...] = ()
) -> Callable[[torch.Tensor, torch.Tensor], dict[str, float]]:
    """A function the Trainer calls on validation outputs each epoch.

    Classification logs accuracy (and any other named metric); regression logs MAE and RMSE in
    the target's original units (`decode` undoes the standardisation). Forecasting logs MAE and
    RMSE of every forecast value in the model's scaled units (no `decode`: undoing a window's
    level needs its inputs); the test metrics are in the series' units. A run asks its task
    directly (`Task.validation_metrics`); this form is for callers without a preprocessor.
    """
    t = task_named(task)
    if t.probabilities:
        return t.validation_fn(classes, names)
    return t.validation_metrics(None, _Decoder(decode), names)


class _Decoder:
    """Stands in for a preprocessor: only `decode_regression` is asked of it."""

    def __init__(self, decode: Callable[[np.ndarray], np.ndarray] | None):
        self.decode_regression = decode if decode is not None else (lambda z: z)


def metrics_table(metrics: dict[str, Any], names: list[str], title: str = "test metrics"):
    """A Rich table of the named metrics (missing or undefined ones shown as n/a; with the reasons
    the metrics' `notes` give, a group of the table and those lines under it). For a binary classifier, precision, recall and F1
    name the positive class they are of, and a last row gives the threshold it is predicted at,
    with its rule."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    positive, threshold = metrics.get("positive_class"), metrics.get("threshold")
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in names:
        value = metrics.get(name)
        label = f"{name} ({positive})" if positive is not None and name in ("precision", "recall", "f1") else name
        table.add_row(label, "n/a" if value is None else f"{value:.4f}")
    if isinstance(threshold, dict):
        table.add_row(f"threshold ({threshold['rule']})", f"{threshold['value']:.4g}")
    notes = metrics.get("notes") if isinstance(metrics.get("notes"), dict) else {}
    lines = [f"{name}: {notes[name]}" for name in names if metrics.get(name) is None and name in notes]
    if "macro" in notes and any(name.endswith("_macro") for name in names):
        lines.append(notes["macro"])
    if lines:
        return Group(table, *(Text(line) for line in lines))
    return table
