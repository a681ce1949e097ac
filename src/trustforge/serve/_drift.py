"""Drift monitoring off the request path: served batches go to a bounded queue, a thread observes them.

The thread that ran a batch hands its payload (columns already arrays) and predictions to
`DriftFeed.offer`, which never blocks: when the queue is full the batch is dropped and counted
(`trustforge_drift_dropped_batches_total`), so a slow monitor costs monitoring samples, never
request latency. One background thread lets batches gather for `linger_s` (0.25 s), joins
those that concatenate into one (one DataFrame, one `read_input`, one `observe` for many
requests: that per-call pandas work cost more than the model's own prediction of one row) and
feeds the monitor, which tests a window when it fills. `status` and `close` cut the wait short.

A monitor that fails is logged once and switched off; serving goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

import numpy as np
import pandas as pd

from trustforge.serve._logging import log_event
from trustforge.serve._signature import Payload, Signature, concat_payloads, payload_key, payload_rows, to_model_input

__all__ = ["DriftFeed"]

_STOP = object()


class DriftFeed:
    """Feeds one runtime's `DriftMonitor` from a background thread.

    Args:
        monitor: the drift monitor (`observe(raw, predictions)`, `status()`).
        read_input: the model's `read_input` (a model input → the `RawData` the monitor reads).
        signature: the served signature (how a payload becomes a model input).
        name: the model's name, for logs.
        max_batches: most batches waiting; more are dropped and counted.
        on_drop: called once per dropped batch (the metrics counter).
        max_rows: most rows joined into one `observe` call.
        linger_s: how long the thread collects batches before it observes them.
    """

    def __init__(
        self,
        monitor: Any,
        read_input: Callable[[Any], Any],
        signature: Signature,
        *,
        name: str = "model",
        max_batches: int = 1024,
        on_drop: Callable[[], None] | None = None,
        max_rows: int = 4096,
        linger_s: float = 0.25,
    ):
        self.monitor = monitor
        self._read_input = read_input
        self._signature = signature
        self._name = name
        self._on_drop = on_drop
        self._max_rows = max_rows
        self._linger_s = linger_s
        self._hurry = threading.Event()  # set while someone waits for the queue to empty
        self._queue: queue.Queue = queue.Queue(maxsize=max_batches)
        self._failed = False
        self.dropped = 0
        self.observed = 0
        self._thread = threading.Thread(target=self._run, name=f"trustforge-drift-{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ request side (never blocks)

    def offer(self, payload: Payload, columns: dict[str, np.ndarray]) -> bool:
        """Queue one served batch for the monitor; False (and counted) when the queue is full."""
        if self._failed:
            return False
        try:
            self._queue.put_nowait((payload, columns))
            return True
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            return False

    # ------------------------------------------------------------------ reading

    def drain(self, timeout: float = 2.0) -> bool:
        """Wait until every queued batch was observed (at most `timeout` s); True when none is left."""
        q = self._queue
        self._hurry.set()  # wakes the thread if it is letting batches gather
        try:
            with q.all_tasks_done:
                return q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, timeout)
        finally:
            self._hurry.clear()

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """The monitor's status after what is queued now was observed (waiting at most `timeout` s),
        with the feed's counts: `observed_batches`, `dropped_batches`, `queued_batches`."""
        self.drain(timeout)
        out = dict(self.monitor.status())
        out["feed"] = {"observed_batches": self.observed, "dropped_batches": self.dropped, "queued_batches": self._queue.qsize()}
        return out

    def close(self, timeout: float = 10.0) -> None:
        """Observe what is queued (at most `timeout` s), then stop the thread."""
        self.drain(timeout)
        try:
            self._queue.put(_STOP, timeout=1.0)
        except queue.Full:
            return  # the thread is a daemon: it ends with the process
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread

    def _collect(self) -> list[Any]:
        """The next round: the first batch to arrive and what is queued `linger_s` later (up to
        `max_rows` rows). The thread sleeps while batches gather instead of waking for each one
        (each wake takes the interpreter from the threads that serve requests)."""
        items = [self._queue.get()]
        if items[0] is _STOP:
            return items
        self._hurry.wait(self._linger_s)
        rows = payload_rows(items[0][0])
        while rows < self._max_rows:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            if item is _STOP:
                break
            rows += payload_rows(item[0])
        return items

    def _run(self) -> None:
        while True:
            items = self._collect()
            try:
                stop = any(item is _STOP for item in items)
                batches = [item for item in items if item is not _STOP]
                if batches and not self._failed:
                    self._observe_all(batches)
            finally:
                for _ in items:
                    self._queue.task_done()
            if stop:
                return

    def _observe_all(self, batches: list[tuple[Payload, dict[str, np.ndarray]]]) -> None:
        for payload, columns in _joined(batches, self._max_rows, joinable=self._signature.batchable):
            try:
                raw = self._read_input(to_model_input(payload, self._signature))
                aligned = bool(columns) and len(next(iter(columns.values()))) == payload_rows(payload)
                self.monitor.observe(raw, pd.DataFrame(columns, copy=False) if aligned else None)
            except Exception as exc:  # noqa: BLE001 - monitoring never fails serving
                self._failed = True
                log_event(logging.ERROR, "monitor_failed", model=self._name, error=f"{exc.__class__.__name__}: {str(exc)[:200]}")
                return
        self.observed += len(batches)


def _joined(
    batches: list[tuple[Payload, dict[str, np.ndarray]]], max_rows: int, *, joinable: bool
) -> list[tuple[Payload, dict[str, np.ndarray]]]:
    """Consecutive batches whose payloads and predictions concatenate, joined (up to `max_rows` rows each)."""
    if not joinable:
        return batches
    out: list[tuple[Payload, dict[str, np.ndarray]]] = []
    group: list[tuple[Payload, dict[str, np.ndarray]]] = []
    rows = 0

    def flush() -> None:
        if group:
            payload = concat_payloads([p for p, _ in group])
            columns = {k: np.concatenate([c[k] for _, c in group]) for k in group[0][1]} if len(group) > 1 else group[0][1]
            out.append((payload, columns))

    for payload, columns in batches:
        n = payload_rows(payload)
        aligned = bool(columns) and all(len(v) == n for v in columns.values())
        if group:
            first_payload, first_columns = group[0]
            fits = (
                aligned
                and payload_key(payload) == payload_key(first_payload)
                and list(columns) == list(first_columns)
                and rows + n <= max_rows
            )
            if not fits:
                flush()
                group, rows = [], 0
        group.append((payload, columns))
        rows += n
        if not aligned:  # predictions that do not match the rows go alone
            flush()
            group, rows = [], 0
    flush()
    return out
