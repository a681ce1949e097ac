"""Evaluation: metrics (checked against scikit-learn), speed, calibration, generalisation,
explanations, baselines fitted in the run with bootstrap intervals, the evidence a run gathers
from them (`calibrate`, `gather`), and the report that puts the evidence in front of a reviewer.

The explainers (Captum) and the report (Matplotlib, Jinja) are imported on first use: training
reaches them only when it explains or writes a report, and they cost a second to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trustforge.evaluate._baselines import fit_logistic, majority_class, yardstick
from trustforge.evaluate._calibration import apply_temperature, calibration, curves, fit_temperature
from trustforge.evaluate._compare import STATES as RUN_STATES
from trustforge.evaluate._compare import compare_runs, read_run, run_folder
from trustforge.evaluate._evaluate import compute_metrics, metrics_table, outputs_to_proba, validation_metrics
from trustforge.evaluate._evidence import EVIDENCE, EXPLANATIONS, Evaluation, calibrate, evaluate_test, gather
from trustforge.evaluate._fitted import fit_fitted, table_matrix
from trustforge.evaluate._intervals import bootstrap
from trustforge.evaluate._metrics import METRICS, Metric, classification_metrics, forecasting_metrics, regression_metrics
from trustforge.evaluate._privacy_audit import audit_refusal, privacy_audit, training_privacy
from trustforge.evaluate._run_index import (
    RUN_NAME,
    RunIndex,
    check_no_links,
    epoch_columns,
    metric_direction,
    named_run,
    read_run_or_note,
    run_metrics,
    run_settings,
)
from trustforge.evaluate._shift import CORRUPTIONS, corrupt, corruption_table, shift_evaluation
from trustforge.evaluate._speed import measure_speed
from trustforge.evaluate._tasks import TASKS, Classification, Forecasting, Recommendation, Regression, Task, task_named, task_of

if TYPE_CHECKING:
    from trustforge.evaluate._explain import explain_images, feature_importance
    from trustforge.evaluate._report import card_html, render_report, report_summary, write_report

# The attacks reach `trustforge.models`; the spec's validators import this package, and the
# spec and data may not reach models, even through us: imported on first use (never statically).
_LAZY = {
    "robustness": "trustforge.evaluate._robustness",
    "attack_refusal": "trustforge.evaluate._robustness",
    "hardening": "trustforge.evaluate._robustness",
    "explain_images": "trustforge.evaluate._explain",
    "feature_importance": "trustforge.evaluate._explain",
    "write_report": "trustforge.evaluate._report",
    "render_report": "trustforge.evaluate._report",
    "card_html": "trustforge.evaluate._report",
    "report_summary": "trustforge.evaluate._report",
}

__all__ = [
    "Evaluation",
    "evaluate_test",
    "Task",
    "Classification",
    "Regression",
    "Forecasting",
    "Recommendation",
    "TASKS",
    "task_of",
    "task_named",
    "Metric",
    "METRICS",
    "classification_metrics",
    "regression_metrics",
    "forecasting_metrics",
    "compute_metrics",
    "validation_metrics",
    "outputs_to_proba",
    "metrics_table",
    "measure_speed",
    "calibration",
    "fit_temperature",
    "apply_temperature",
    "curves",
    "CORRUPTIONS",
    "corrupt",
    "corruption_table",
    "shift_evaluation",
    "robustness",
    "attack_refusal",
    "hardening",
    "privacy_audit",
    "audit_refusal",
    "training_privacy",
    "explain_images",
    "feature_importance",
    "EVIDENCE",
    "EXPLANATIONS",
    "calibrate",
    "gather",
    "yardstick",
    "fit_logistic",
    "fit_fitted",
    "table_matrix",
    "majority_class",
    "bootstrap",
    "write_report",
    "compare_runs",
    "read_run",
    "run_folder",
    "RunIndex",
    "RUN_STATES",
    "RUN_NAME",
    "named_run",
    "check_no_links",
    "read_run_or_note",
    "epoch_columns",
    "run_metrics",
    "run_settings",
    "metric_direction",
    "render_report",
    "report_summary",
    "card_html",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trustforge.evaluate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
