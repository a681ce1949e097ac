"""Evaluation: metrics (checked against scikit-learn), speed, calibration, generalisation,
explanations, baselines fitted in the run with bootstrap intervals, the evidence a run gathers
from them (`calibrate`, `gather`), and the report that puts the evidence in front of a reviewer.

Every name is imported on first use (`_LAZY`): the explainers (Captum) and the report
(Matplotlib, Jinja) are reached only when a run explains or writes a report, and the run
listings need only the run index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustforge._lazy import lazy_names

if TYPE_CHECKING:
    from trustforge.evaluate._baselines import fit_logistic, majority_class, yardstick
    from trustforge.evaluate._calibration import apply_temperature, calibration, curves, fit_temperature
    from trustforge.evaluate._compare import STATES as RUN_STATES
    from trustforge.evaluate._compare import comparable_groups, compare_runs, read_run, run_folder
    from trustforge.evaluate._evaluate import compute_metrics, metrics_table, outputs_to_proba, validation_metrics
    from trustforge.evaluate._evidence import EVIDENCE, EXPLANATIONS, Evaluation, calibrate, evaluate_test, gather
    from trustforge.evaluate._explain import explain_images, feature_importance
    from trustforge.evaluate._fitted import fit_fitted, table_matrix
    from trustforge.evaluate._intervals import bootstrap
    from trustforge.evaluate._metrics import METRICS, Metric, classification_metrics, forecasting_metrics, regression_metrics
    from trustforge.evaluate._privacy_audit import audit_refusal, privacy_audit, training_privacy
    from trustforge.evaluate._report import card_html, render_report, report_summary, write_report
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

# Every name is imported on first use: the run listings (`trustforge runs list`, `runs show`,
# `compare`) read only the run index and must not pay for the torch, pandas and data layer
# (seconds) that the metrics, evidence and baselines import; and the attacks reach
# `trustforge.models`, which the spec's validators (importing this package) may not reach statically.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("fit_logistic", "majority_class", "yardstick"), "trustforge.evaluate._baselines"),
    **dict.fromkeys(("apply_temperature", "calibration", "curves", "fit_temperature"), "trustforge.evaluate._calibration"),
    **dict.fromkeys(("RUN_STATES", "comparable_groups", "compare_runs", "read_run", "run_folder"), "trustforge.evaluate._compare"),
    **dict.fromkeys(("compute_metrics", "metrics_table", "outputs_to_proba", "validation_metrics"), "trustforge.evaluate._evaluate"),
    **dict.fromkeys(("EVIDENCE", "EXPLANATIONS", "Evaluation", "calibrate", "evaluate_test", "gather"), "trustforge.evaluate._evidence"),
    **dict.fromkeys(("fit_fitted", "table_matrix"), "trustforge.evaluate._fitted"),
    "bootstrap": "trustforge.evaluate._intervals",
    **dict.fromkeys(
        ("METRICS", "Metric", "classification_metrics", "forecasting_metrics", "regression_metrics"), "trustforge.evaluate._metrics"
    ),
    **dict.fromkeys(("audit_refusal", "privacy_audit", "training_privacy"), "trustforge.evaluate._privacy_audit"),
    **dict.fromkeys(
        (
            "RUN_NAME",
            "RunIndex",
            "check_no_links",
            "epoch_columns",
            "metric_direction",
            "named_run",
            "read_run_or_note",
            "run_metrics",
            "run_settings",
        ),
        "trustforge.evaluate._run_index",
    ),
    **dict.fromkeys(("CORRUPTIONS", "corrupt", "corruption_table", "shift_evaluation"), "trustforge.evaluate._shift"),
    "measure_speed": "trustforge.evaluate._speed",
    **dict.fromkeys(
        ("TASKS", "Classification", "Forecasting", "Recommendation", "Regression", "Task", "task_named", "task_of"),
        "trustforge.evaluate._tasks",
    ),
    **dict.fromkeys(
        ("robustness", "attack_refusal", "check_attack_fields", "check_robustness_settings", "hardening"), "trustforge.evaluate._robustness"
    ),
    **dict.fromkeys(("explain_images", "feature_importance"), "trustforge.evaluate._explain"),
    **dict.fromkeys(("write_report", "render_report", "card_html", "report_summary"), "trustforge.evaluate._report"),
}
_RENAMED = {"RUN_STATES": "STATES"}  # the name here -> its name in its module

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
    "check_attack_fields",
    "check_robustness_settings",
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
    "comparable_groups",
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


__getattr__, __dir__ = lazy_names(globals(), _LAZY, _RENAMED)
