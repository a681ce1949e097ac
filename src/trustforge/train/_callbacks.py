"""Optional trainer behaviour: early stopping, progress, CSV log, checkpoints.

Every hook is a no-op by default, so a callback overrides only what it needs. Callbacks
that must survive a resume return their state from `state_dict` (JSON values and tensors).
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trustforge._fs import open_private_append
from trustforge.train._checkpoint import atomic_write_text, save_checkpoint

if TYPE_CHECKING:
    from trustforge.train._trainer import Trainer

__all__ = ["Callback", "EarlyStopping", "ProgressBar", "CSVLogger", "Checkpoint"]


class Callback:
    """Base class; override the hooks you need."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...

    def on_batch_end(self, trainer: "Trainer", batch: int) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: "Trainer") -> None: ...

    def on_fit_abort(self, trainer: "Trainer") -> None:
        """Called instead of `on_fit_end` when fit raises (an error, Ctrl-C); then the error propagates."""

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {}

    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...


def _is_minimised(monitor: str) -> bool:
    return monitor.endswith(("loss", "mae", "rmse", "mse")) or "error" in monitor


class EarlyStopping(Callback):
    """Stop when `monitor` stops improving; restore the best weights at the end of fit.

    Args:
        monitor: a key of the epoch logs, e.g. `val_loss` or `val_accuracy`.
        patience: epochs without improvement before stopping.
        min_delta: smallest change that counts as an improvement.
        mode: "min", "max" or "auto" (min for losses and errors, max otherwise).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0, mode: str = "auto"):
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.sign = -1.0 if (mode == "min" or (mode == "auto" and _is_minimised(monitor))) else 1.0
        self.best = -math.inf
        self.best_epoch = -1
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is None or math.isnan(value):
            return
        score = self.sign * value
        if score > self.best + self.min_delta:
            self.best, self.best_epoch, self.wait = score, epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.should_stop = True

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)
            trainer.best_epoch = self.best_epoch

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        tensors = {f"best.{k}": v for k, v in (self.best_weights or {}).items()}
        return meta, tensors

    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.best, self.best_epoch, self.wait = meta["best"], meta["best_epoch"], meta["wait"]
        weights = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_weights = weights or None


class ProgressBar(Callback):
    """A Rich progress bar: epoch, batches, training loss and the monitored validation metric.

    On a terminal the bar is redrawn at most every `refresh_s` seconds and at each epoch's end,
    from the training thread (no background refresh thread competing with torch for cores);
    elsewhere (CI, pipes) it prints one line per epoch.
    """

    def __init__(self, metric: str = "val_loss", console: Any = None, refresh_s: float = 0.25):
        self.metric = metric
        self.console = console
        self.refresh_s = refresh_s
        self.progress = None
        self.task = None
        self._drawn = 0.0

    def on_fit_start(self, trainer: "Trainer") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = self.console or Console(stderr=True)
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=trainer.batches_per_epoch, epoch="-", stats="")

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        if self.progress is not None:
            # update(), not reset(): reset() drops the custom fields and redraws at once.
            self.progress.update(self.task, total=trainer.batches_per_epoch, completed=0, epoch=f"{epoch + 1}/{trainer.max_epochs}")

    def on_batch_end(self, trainer: "Trainer", batch: int) -> None:
        # Per batch only a clock read; Rich is touched when a redraw is due.
        if self.progress is not None:
            now = time.monotonic()
            if now - self._drawn >= self.refresh_s:
                self._drawn = now
                self.progress.update(self.task, completed=batch + 1)
                self.progress.refresh()

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None:
        stats = f"loss {logs['train_loss']:.4f}"
        if self.metric in logs:
            stats += f"  {self.metric} {logs[self.metric]:.4f}"
        if self.progress is not None:
            self.progress.update(self.task, completed=trainer.batches_per_epoch, stats=stats)
            now = time.monotonic()
            if now - self._drawn >= self.refresh_s:
                self._drawn = now
                self.progress.refresh()
        else:
            self.console.print(f"epoch {epoch + 1}/{trainer.max_epochs}  {stats}", highlight=False)

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()
            self.progress = None

    def on_fit_abort(self, trainer: "Trainer") -> None:
        self.on_fit_end(trainer)


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file (epoch, losses, metrics, lr, seconds); `first`: columns
    written before the epoch in every row (an ensemble's `member`)."""

    def __init__(self, path: Path, first: dict[str, Any] | None = None):
        self.path = Path(path)
        self.first = dict(first or {})
        self.fields: list[str] | None = None

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None:
        row = {**self.first, "epoch": epoch + 1, **logs}
        new = not self.path.exists() or self.path.stat().st_size == 0
        if self.fields is None:
            self.fields = list(row) if new else _header(self.path) or list(row)
        with open_private_append(self.path, newline="", encoding="utf-8") as f:  # 0600 from its creation
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def truncate_after(self, epoch: int) -> None:
        """Drop rows past `epoch` (1-based), e.g. those logged after the checkpoint a run resumes from."""
        if not self.path.exists():
            return
        with self.path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= epoch]
        buf = io.StringIO(newline="")
        csv.writer(buf).writerows(kept)
        atomic_write_text(self.path, buf.getvalue())


def _header(path: Path) -> list[str] | None:
    with path.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), None)


class Checkpoint(Callback):
    """Keep everything needed to resume (`checkpoints/last.safetensors`).

    At every epoch's end the state is copied in memory (cheap); it is written to disk at most
    every `every_s` seconds, on a background thread while training goes on, and always when
    fit ends or is interrupted (Ctrl-C, an error), so a resume continues from the last
    completed epoch. Only a hard kill (SIGKILL, power loss) can lose up to `every_s` seconds.
    Writing every epoch would put a serialisation and an fsync on the training path of every
    epoch, which costs more than a small model's whole epoch.
    """

    def __init__(self, folder: Path, every_s: float = 10.0):
        self.folder = Path(folder)
        self.every_s = every_s
        self._snapshot: tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None
        self._snapshot_written = True
        self._last_write = time.monotonic()
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        self._history: list[dict[str, float]] = []

    def on_fit_start(self, trainer: "Trainer") -> None:
        self._last_write = time.monotonic()
        self._history = []

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None:
        meta, tensors = trainer.state_dict(epoch)
        # Copies: training goes on updating the live parameters after this epoch. The history's
        # epoch logs are appended and never changed, so only the new ones are copied: a copy of
        # the whole history at every epoch costs time quadratic in the epochs (the 600-epoch trials
        # of tests/tune/test_tune_postgres.py spent 38 CPU seconds there, py-spy).
        history = meta.pop("history")
        self._history += json.loads(json.dumps(history[len(self._history) :]))
        self._snapshot = ({**json.loads(json.dumps(meta)), "history": list(self._history)}, {k: v.clone() for k, v in tensors.items()})
        self._snapshot_written = False
        if time.monotonic() - self._last_write >= self.every_s:
            self._wait()
            self._writer = threading.Thread(target=self._write, args=self._snapshot, name="trustforge-checkpoint")
            self._snapshot_written = True
            self._last_write = time.monotonic()
            self._writer.start()

    def _write(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        try:
            save_checkpoint(self.folder, meta, tensors)
        except BaseException as exc:  # re-raised on the training thread by _wait()
            self._error = exc

    def _wait(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def flush(self) -> None:
        """Write the last completed epoch's state now, if it is not on disk yet."""
        self._wait()
        if self._snapshot is not None and not self._snapshot_written:
            save_checkpoint(self.folder, *self._snapshot)
            self._snapshot_written = True
            self._last_write = time.monotonic()

    def on_fit_end(self, trainer: "Trainer") -> None:
        self.flush()

    def on_fit_abort(self, trainer: "Trainer") -> None:
        # An interrupt can arrive while the last epoch is being saved: a data-parallel launcher
        # sends SIGTERM (raised as an interrupt) to every process once one fails, and this one may
        # be saving after its own error; or a second Ctrl-C. Finish saving, then let it through:
        # a run with no saved epoch is removed as one with nothing to resume.
        try:
            self.flush()
        except KeyboardInterrupt:
            self.flush()
            raise
