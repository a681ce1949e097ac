"""Evaluation: metrics (checked against scikit-learn), speed, calibration, generalisation,
explanations, baselines fitted in the run with bootstrap intervals, the evidence a run gathers
from them (`calibrate`, `gather`), and the report that puts the evidence in front of a reviewer."""

from trustforge.evaluate._baselines import fit_logistic, majority_class, yardstick
from trustforge.evaluate._calibration import apply_temperature, calibration, curves, fit_temperature
from trustforge.evaluate._evaluate import compute_metrics, metrics_table, outputs_to_proba, validation_metrics
from trustforge.evaluate._evidence import EVIDENCE, EXPLANATIONS, Evaluation, calibrate, evaluate_test, gather
from trustforge.evaluate._explain import explain_images, feature_importance
from trustforge.evaluate._intervals import bootstrap
from trustforge.evaluate._metrics import METRICS, Metric, classification_metrics, forecasting_metrics, regression_metrics
from trustforge.evaluate._report import compare_runs, write_report
from trustforge.evaluate._shift import CORRUPTIONS, corrupt, corruption_table, shift_evaluation
from trustforge.evaluate._speed import measure_speed
from trustforge.evaluate._tasks import TASKS, Classification, Forecasting, Recommendation, Regression, Task, task_named, task_of

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
    "explain_images",
    "feature_importance",
    "EVIDENCE",
    "EXPLANATIONS",
    "calibrate",
    "gather",
    "yardstick",
    "fit_logistic",
    "majority_class",
    "bootstrap",
    "write_report",
    "compare_runs",
]
