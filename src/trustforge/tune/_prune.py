"""Pruning from the Trainer's per-epoch validation metric: a trainer callback that asks Optuna.

The Trainer knows nothing of Optuna: this callback reports the epoch's `val_*` value to the
trial and raises `optuna.TrialPruned` when the pruner says so, which ends the fit like any
error (the run folder keeps its epochs; the study marks it pruned).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trustforge.train import Callback, CSVLogger

__all__ = ["PruningCallback"]


class PruningCallback(Callback):
    """Report `metric` to `trial` at each epoch's end; raise `optuna.TrialPruned` when the pruner says so.

    Args:
        trial: the Optuna trial.
        metric: the epoch log to report (`val_loss`, `val_accuracy`, ...).

    Attributes:
        run_dir: the run folder of the fit (from its epoch log), once the fit started.
        epochs: epochs completed so far; pruned_at: the epoch (1-based) the trial was pruned at.
    """

    def __init__(self, trial: Any, metric: str):
        self.trial = trial
        self.metric = metric
        self.run_dir: Path | None = None
        self.epochs = 0
        self.pruned_at: int | None = None

    def on_fit_start(self, trainer: Any) -> None:
        for cb in trainer.callbacks:
            if isinstance(cb, CSVLogger):
                self.run_dir = cb.path.parent

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        import optuna

        self.epochs = epoch + 1
        value = logs.get(self.metric)
        if value is None or math.isnan(value):
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}: {self.metric} {value:.4g}")
