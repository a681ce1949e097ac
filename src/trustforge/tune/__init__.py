"""Hyperparameter search over specs, on Optuna (`trustforge tune SPEC`, the spec's `tune:` section).

Search spaces name spec fields and map one to one onto Optuna's `suggest_*`; trials are
ordinary runs scored on validation; poor trials are pruned from the Trainer's per-epoch
validation metric by a callback; workers on one machine or many share a study through its
storage (a journal file, SQLite or PostgreSQL); the best trial is packaged and registered with
the study in its lineage.
"""

from trustforge.tune._prune import PruningCallback
from trustforge.tune._space import apply_params, decode, spec_point, suggest
from trustforge.tune._storage import describe_storage, open_storage, storage_url
from trustforge.tune._study import TUNE_FILE, TuneResult, study_summary, tune, tune_metric

__all__ = [
    "tune",
    "TuneResult",
    "tune_metric",
    "study_summary",
    "PruningCallback",
    "suggest",
    "decode",
    "apply_params",
    "spec_point",
    "open_storage",
    "storage_url",
    "describe_storage",
    "TUNE_FILE",
]
