"""Drift monitoring off the request path: served batches go to a bounded queue, a thread hands them on.

The thread that ran a batch hands its payload (columns already arrays) and predictions to
`DriftFeed.offer`, which never blocks: when the queue is full the batch is dropped and counted
(`trustforge_drift_dropped_batches_total`), so a slow monitor costs monitoring samples, never
request latency. One background thread lets batches gather for `linger_s` (0.25 s), joins
those that concatenate into one (one DataFrame, one `read_input`, one `observe` for many
requests: that per-call pandas work cost more than the model's own prediction of one row) and
feeds the monitor, which tests a window when it fills. `status` and `close` cut the wait short.

Where the monitor runs. With model worker processes (`--workers N`, N >= 1) the monitor runs
in a process of its own (`MonitorProcess`): the feed thread only joins a round's batches and
sends them over a socket, and the monitor process reads them and tests the windows. The
server process is the one that answers HTTP, and its event loop shares one interpreter lock
with every thread in it: a feed thread that featurized and tested windows there (about 0.04 ms
of CPU per row, in stretches of tens of milliseconds per window) took that time from the
event loop and cost 14-16 % of the requests per second at 8 clients. The monitor process gets
the same joined batches in the same order and calls `observe` with the same arguments as the
thread did, so it tests the same windows with the same results; its alerts (log lines and
audit entries) come back with its answers and are written by the server, with the server's
audit log. The monitor process runs at a lower priority (niceness +10 over the server's): on
a machine whose cores are all busy it gets what serving leaves, and a feed that falls behind
drops batches and counts them. At normal priority its CPU came out of the server's share there
(drift on/off 0.75-0.84 requests/s in back-to-back pairs at 8 clients on 2 cores shared with
other work; 1.01 at lower priority, no batch dropped). With `--workers 0` (one process by
choice) the thread observes in the server.

A monitor that fails (or whose process ends) is logged once and switched off; serving goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

import numpy as np
import pandas as pd

from trustforge._shown import recorded
from trustforge.serve._codec import CodecError, pack, unpack
from trustforge.serve._logging import log_event
from trustforge.serve._signature import Payload, Signature, concat_payloads, payload_key, payload_rows, to_model_input
from trustforge.serve._workers import ProcessExecutor, WorkerDied, WorkerFailed, load_serving_model

__all__ = ["DriftFeed", "MonitorProcess", "MonitorFailed", "monitor_main", "drift_recorder"]

_MONITOR_LOG = logging.getLogger("trustforge.monitor")  # where an in-process DriftMonitor writes its alert lines
_NICE = 10  # the monitor process's niceness added to the server's (see `monitor_main`)

_STOP = object()


def drift_recorder(history: dict[str, str] | None, uri: str) -> Callable[[Any], None] | None:
    """What records each tested window in the model's drift history (`trustforge.monitor.DriftHistory`),
    from the `drift_history` of a load description ({"folder", "name"}); None without one.
    The monitor calls it where it tests windows (the feed thread or the monitor process), never
    on a request."""
    if not history:
        return None
    from trustforge.monitor import DriftHistory

    return DriftHistory(history["folder"], history["name"], model=uri, source="serve").record


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
        self.cpu_s = 0.0  # CPU time this feed's thread spent observing (in the server process)
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
        with the feed's counts: `observed_batches`, `dropped_batches`, `queued_batches`, and
        `thread_cpu_s`, the CPU time its thread took in the server process, and `in_process`,
        whether the monitor itself runs in the server process (False: a process of its own)."""
        self.drain(timeout)
        out = dict(self.monitor.status())
        out["feed"] = {
            "observed_batches": self.observed,
            "dropped_batches": self.dropped,
            "queued_batches": self._queue.qsize(),
            "thread_cpu_s": round(self.cpu_s, 6),
            "in_process": not isinstance(self.monitor, MonitorProcess),
        }
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
                    started = time.thread_time()
                    self._observe_all(batches)
                    self.cpu_s += time.thread_time() - started
            finally:
                for _ in items:
                    self._queue.task_done()
            if stop:
                return

    def _observe_all(self, batches: list[tuple[Payload, dict[str, np.ndarray]]]) -> None:
        remote = self.monitor.observe_served if isinstance(self.monitor, MonitorProcess) else None
        for payload, columns in _joined(batches, self._max_rows, joinable=self._signature.batchable):
            try:
                if remote is not None:
                    remote(payload, columns)
                else:
                    observe_served(self.monitor, self._read_input, self._signature, payload, columns)
            except Exception as exc:  # noqa: BLE001 - monitoring never fails serving
                self._failed = True
                log_event(logging.ERROR, "monitor_failed", model=self._name, error=recorded(exc, limit=200))
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


def observe_served(
    monitor: Any, read_input: Callable[[Any], Any], signature: Signature, payload: Payload, columns: dict[str, np.ndarray]
) -> None:
    """`monitor.observe` on one (joined) served batch: the payload read as the model reads it,
    the predictions as a DataFrame when they match its rows (else None). The feed thread and
    the monitor process both observe through this one function, so they test the same windows."""
    raw = read_input(to_model_input(payload, signature))
    aligned = bool(columns) and len(next(iter(columns.values()))) == payload_rows(payload)
    monitor.observe(raw, pd.DataFrame(columns, copy=False) if aligned else None)


# ---------------------------------------------------------------------------- the monitor in a process of its own


class MonitorFailed(Exception):
    """The monitor process answered with an error, or ended."""


def _served_arrays(payload: Payload, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One message's arrays: the payload's inputs (`i:NAME`, or the tensor `t:`), then the predictions (`p:NAME`)."""
    out = {"t:": payload} if isinstance(payload, np.ndarray) else {f"i:{k}": v for k, v in payload.items()}
    out.update({f"p:{k}": v for k, v in columns.items()})
    return out


def _served_from(arrays: dict[str, np.ndarray] | np.ndarray | None) -> tuple[Payload, dict[str, np.ndarray]]:
    if not isinstance(arrays, dict):
        raise CodecError("an observe message carries named arrays")
    payload: Payload = arrays["t:"] if "t:" in arrays else {k[2:]: v for k, v in arrays.items() if k.startswith("i:")}
    return payload, {k[2:]: v for k, v in arrays.items() if k.startswith("p:")}


class _Outbox:
    """What a `DriftMonitor` in the monitor process writes (its logger and its audit log):
    alert lines and audit entries, kept until the next answer carries them to the server."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.items.append({"log": "warning", "text": msg % args if args else msg})

    def error(self, msg: str, *args: Any) -> None:
        self.items.append({"log": "error", "text": msg % args if args else msg})

    def append(self, actor: str, action: str, obj: str, outcome: str, details: dict | None = None) -> int:
        self.items.append({"audit": [actor, action, obj, outcome, details]})
        return 0

    def take(self) -> list[dict[str, Any]]:
        out, self.items = self.items, []
        return out


def monitor_main(conn: Any, load: dict[str, Any]) -> None:
    """The body of the monitor process (a worker process started with `load["role"] == "monitor"`):
    load the model (for its reference, schema and `read_input`; the network is never run), build
    its `DriftMonitor` as the server would (`load["monitor"]`: uri, actor, alert_interval_s),
    say ready, simulate its first window's levels, then answer `observe`, `status` and `flush`
    messages until told to stop or the server's end of the socket closes."""
    try:
        import os

        # Monitoring gives way to serving: on a machine whose cores are all busy, this process
        # gets the CPU the server and its workers leave (a feed that cannot keep up drops batches
        # and counts them) instead of taking its share from them.
        os.nice(_NICE)
        import torch

        torch.set_num_threads(1)
        from trustforge.monitor import DriftMonitor

        model = load_serving_model({**load, "backend": "torch"})
        signature = Signature.from_manifest(model.manifest)
        opts = load.get("monitor") or {}
        outbox = _Outbox()
        monitor = DriftMonitor.for_model(
            model,
            audit=outbox,  # type: ignore[arg-type] - the server writes the entries to its audit log
            logger=outbox,  # type: ignore[arg-type] - and the lines to its log
            actor=str(opts.get("actor", "serve")),
            uri=opts.get("uri"),
            alert_interval_s=opts.get("alert_interval_s"),
            record=drift_recorder(load.get("drift_history"), str(opts.get("uri") or "")),
        )
        if monitor is None:
            raise MonitorFailed("the package has no reference statistics")
    except Exception as exc:  # noqa: BLE001 - every start failure is reported to the server as one line
        try:
            conn.send_bytes(pack({"type": "error", "error": recorded(exc)}))
        except OSError:  # the server stopped while this process started: nobody to tell
            pass
        return
    try:
        conn.send_bytes(pack({"type": "ready", "pid": os.getpid()}))
    except OSError:
        return  # the server stopped while this process started (BrokenPipeError)
    # The first window's simulations (about a second) run once the server knows this process is
    # up: it serves meanwhile, and the batches it sends wait in the socket, off the request path.
    try:
        monitor.prepare()
        failed = None
    except Exception as exc:  # noqa: BLE001 - every message is then answered with why, and the server switches monitoring off
        failed = recorded(exc)
    while True:
        try:
            meta, arrays = unpack(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the server is gone
        except CodecError as exc:
            conn.send_bytes(pack({"type": "error", "error": f"bad message: {exc}", "outbox": outbox.take()}))
            continue
        kind = meta.get("type")
        if kind == "stop":
            return
        try:
            if failed is not None:
                reply: dict[str, Any] = {"type": "error", "error": failed}
            elif kind == "observe":
                payload, columns = _served_from(arrays)
                observe_served(monitor, model.read_input, signature, payload, columns)
                reply = {"type": "observed", "scores": {k: float(v) for k, v in monitor.scores().items()}}
            elif kind == "status":
                reply = {"type": "status", "status": monitor.status()}
            elif kind == "flush":
                monitor.flush_alerts()
                reply = {"type": "flushed"}
            else:
                reply = {"type": "error", "error": f"unknown message type {kind!r}"}
        except Exception as exc:  # noqa: BLE001 - the server switches monitoring off and says why
            reply = {"type": "error", "error": recorded(exc)}
        reply["outbox"] = outbox.take()
        try:
            conn.send_bytes(pack(reply))
        except (BrokenPipeError, OSError):
            return


class MonitorProcess:
    """A model's `DriftMonitor` in a process of its own, and the socket to it.

    Stands where the monitor stood for the server: `observe_served` (from the feed thread),
    `status`, `scores`, `flush_alerts`. Messages go one at a time (a lock), each answered;
    the alert lines and audit entries the monitor wrote come back with the answers and are
    written here, to the `trustforge.monitor` log and to `audit`.

    Args:
        load: the model workers' load description (see `load_serving_model`).
        uri: how logs and audit entries name the model.
        audit: the server's audit log, or None.
        name: the model's name (for the process's name).
        alert_interval_s: at most one alert per this many seconds (see `DriftMonitor`).
        start_timeout_s: how long loading may take.
    """

    def __init__(
        self,
        load: dict[str, Any],
        *,
        uri: str,
        audit: Any = None,
        name: str = "model",
        actor: str = "serve",
        alert_interval_s: float | None = 60.0,
        start_timeout_s: float = 300.0,
    ):
        options = {"uri": uri, "actor": actor, "alert_interval_s": alert_interval_s}
        self._process = ProcessExecutor(
            0, {**load, "role": "monitor", "monitor": options}, start_timeout_s, name=f"drift-monitor-{name or 'model'}"
        )
        self._audit = audit
        self._lock = threading.Lock()
        self._scores: dict[str, float] = {}
        self._last_status: dict[str, Any] | None = None
        self._failed_audit = 0
        self.failed: str | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        """Start the process and wait until its monitor is built (the model loaded; the first window's levels are simulated after).

        Raises:
            ModelError: the process could not load the model or build its monitor (the message says why).
        """
        self._process.start()

    def observe_served(self, payload: Payload, columns: dict[str, np.ndarray]) -> None:
        """Observe one (joined) served batch in the monitor process.

        Raises:
            MonitorFailed: the monitor refused the batch or its process ended (monitoring stops).
        """
        self._call({"type": "observe"}, _served_arrays(payload, columns))

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The monitor's `status()`; after a failure, the last status known with `failed` (why)."""
        if self.failed is None and self._lock.acquire(timeout=timeout):
            try:
                reply = self._call_locked({"type": "status"})
                status = dict(reply["status"])
                alerts = dict(status.get("alerts") or {})
                alerts["failed_audit_entries"] = int(alerts.get("failed_audit_entries", 0)) + self._failed_audit
                status["alerts"] = alerts
                self._last_status = status
                return status
            except MonitorFailed:
                pass
            finally:
                self._lock.release()
        return {**(self._last_status or {}), "failed": self.failed or "the monitor process did not answer in time"}

    def scores(self) -> dict[str, float]:
        """Feature → PSI in the last tested window, as of the last batch observed."""
        return dict(self._scores)

    def flush_alerts(self) -> None:
        """Write the alert for drifted windows still counted (see `DriftMonitor.flush_alerts`)."""
        if self.failed is None:
            try:
                self._call({"type": "flush"})
            except MonitorFailed:
                pass

    def stop(self) -> None:
        """Stop the process."""
        self._process.stop()

    def _call(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        with self._lock:
            return self._call_locked(meta, arrays)

    def _call_locked(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        if self.failed is not None:
            raise MonitorFailed(self.failed)
        try:
            reply, _ = self._process.request(meta, arrays)
        except (WorkerDied, WorkerFailed) as exc:
            self.failed = f"the monitor process ended: {exc}"
            raise MonitorFailed(self.failed) from None
        self._deliver(reply.get("outbox") or [])
        if reply.get("type") == "error":
            raise MonitorFailed(str(reply.get("error")))
        if "scores" in reply:
            self._scores = reply["scores"]
        return reply

    def _deliver(self, items: list[dict[str, Any]]) -> None:
        """Write the monitor's alert lines to this process's log and its audit entries to `audit`."""
        for item in items:
            if "log" in item:
                (_MONITOR_LOG.error if item["log"] == "error" else _MONITOR_LOG.warning)("%s", item["text"])
            elif "audit" in item and self._audit is not None:
                actor, action, obj, outcome, details = item["audit"]
                try:
                    self._audit.append(actor, action, obj, outcome, details)
                except Exception as exc:  # noqa: BLE001 - as DriftMonitor: an alert that cannot be audited fails nothing
                    self._failed_audit += 1
                    _MONITOR_LOG.error("drift in %s: the audit entry could not be written (%s)", obj, recorded(exc, limit=200))
