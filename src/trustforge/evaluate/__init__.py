"""Evaluation: metrics (checked against scikit-learn in the tests) and their presentation."""

from trustforge.evaluate._evaluate import compute_metrics, metrics_table, outputs_to_proba, validation_metrics
from trustforge.evaluate._metrics import classification_metrics, regression_metrics

__all__ = [
    "classification_metrics",
    "regression_metrics",
    "compute_metrics",
    "validation_metrics",
    "outputs_to_proba",
    "metrics_table",
]
