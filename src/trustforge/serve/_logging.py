"""Structured logs: one JSON object per line, events with fields, never payloads or secrets.

Every record the server writes is an *event* (`request`, `model_loaded`, `worker_died`, ...)
with flat fields. What is never logged: request or response bodies, query strings, headers
(tokens travel in one), and exception texts that could echo input values back (request
errors are counted and answered, not logged).

Records are written off the event loop: `configure_logging` gives each logger a handler that
only puts the record on a bounded queue, and one thread (a `QueueListener`) formats it as JSON
and writes it to stderr, so a slow or blocked stderr never holds a request up. When the queue
is full (stderr stalled), records are dropped and counted (`dropped_records()`).

`stop_logging` ends that: it writes what is queued, stops the thread and takes the queue
handlers off the loggers. The server calls it when it stops, so a server run inside another
program (the tests, a notebook) leaves no thread behind writing later records to whatever
`sys.stderr` is by then.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import time
from datetime import datetime, timezone
from typing import Any

import orjson

__all__ = ["log", "log_event", "JsonFormatter", "configure_logging", "stop_logging", "flush_logs", "dropped_records"]

log = logging.getLogger("trustforge.serve")
_LOGGERS = ("trustforge.serve", "trustforge.monitor", "uvicorn")  # uvicorn.error propagates to uvicorn
_QUEUE_SIZE = 10_000


class _Fields:
    """`k=v k=v` of an event's fields, joined only if a plain-text handler asks for the message."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]):
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.fields.items())


def log_event(level: int, event: str, **fields: Any) -> None:
    """Log `event` with `fields` (JSON-able scalars) on the server's logger.

    The record is made and handled directly (`Logger.makeRecord`, `Logger.handle`: the same
    handlers, filters and propagation as `Logger.log`) without looking up the caller's file
    and line, which no handler here prints and which cost more than the rest of the call."""
    if log.isEnabledFor(level):
        record = log.makeRecord(
            log.name, level, "(serve)", 0, "%s %s", (event, _Fields(fields)), None, extra={"event": event, "fields": fields}
        )
        log.handle(record)


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "event", ...fields}` per record, one line each."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if event is not None:
            out["event"] = event
            out.update(getattr(record, "fields", {}) or {})
        else:
            out["message"] = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return orjson.dumps(out, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode("utf-8")


class _Stderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of writing (it may be replaced), the lines
    of the records that came together in one write (`write_pending`, which the writer's queue
    calls when it has no more records for now): one system call per wake-up of the writer,
    not one per record."""

    _MAX_PENDING = 256  # lines held at most before they are written

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record))
        except Exception:  # noqa: BLE001 - as StreamHandler.emit: logging never raises into the caller
            self.handleError(record)
        if len(self._pending) >= self._MAX_PENDING:
            self.write_pending()

    def write_pending(self) -> None:
        """Write the lines formatted so far (the writer thread calls this)."""
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            stream = self.stream
            stream.write("\n".join(lines) + self.terminator)
            stream.flush()
        except Exception:  # noqa: BLE001 - stderr closed or broken: the lines are lost, as StreamHandler would lose them
            pass


class _Enqueue(logging.handlers.QueueHandler):
    """Puts records on the writer's queue as they are (same process: nothing to pickle or format
    here); drops and counts them when the queue is full."""

    dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            _Enqueue.dropped += 1


class _Batched(queue.Queue):
    """The writer's queue: a record put on it does not wake the writer; the writer takes what
    has come every `_PERIOD_S` seconds (a busy server's access log costs one wake-up of the
    writer thread per period, not one per request, each taking the interpreter lock).

    When it has nothing more to give for now (or gives the listener's stop sentinel), it has
    `writer` write the lines of the records taken so far, and only then counts those records
    done, so `flush_logs` returns once they are written."""

    def __init__(self, maxsize: int, writer: _Stderr):
        super().__init__(maxsize)
        self.writer = writer
        self._handled = 0  # records the listener is done with whose lines may not be written yet

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:
            if 0 < self.maxsize <= self._qsize():
                raise queue.Full
            self._put(item)
            self.unfinished_tasks += 1

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        while True:
            with self.mutex:
                item = self._get() if self._qsize() else _EMPTY
            if item is not _EMPTY and item is not None:
                return item
            self._written()  # nothing more for now, or QueueListener's stop sentinel (None): write what was taken
            if item is None:
                return None
            if not block:
                raise queue.Empty
            time.sleep(_PERIOD_S)

    def task_done(self) -> None:
        self._handled += 1  # counted done once written (`_written`)

    def _written(self) -> None:
        self.writer.write_pending()
        with self.all_tasks_done:
            self.unfinished_tasks -= self._handled
            self._handled = 0
            if self.unfinished_tasks <= 0:
                self.all_tasks_done.notify_all()


_PERIOD_S = 0.02
_EMPTY = object()
_listener: logging.handlers.QueueListener | None = None
_queue: queue.Queue | None = None
_at_exit = False


def configure_logging(level: int = logging.INFO) -> None:
    """Send the server's, the drift monitor's and uvicorn's logs to stderr as JSON lines, written
    by a background thread (idempotent; after `stop_logging`, a new thread)."""
    global _listener, _queue, _at_exit
    if _listener is None:
        writer = _Stderr()
        writer.setFormatter(JsonFormatter())
        _queue = _Batched(_QUEUE_SIZE, writer)
        _listener = logging.handlers.QueueListener(_queue, writer, respect_handler_level=False)
        _listener.start()
        if not _at_exit:
            atexit.register(flush_logs)
            _at_exit = True
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for stale in [h for h in logger.handlers if isinstance(h, _Enqueue) and h.queue is not _queue]:
            logger.removeHandler(stale)  # put there before a `stop_logging`: its queue has no writer
        for raw in [h for h in logger.handlers if _uvicorns_own(h)]:
            logger.removeHandler(raw)  # a uvicorn server run before in this process (the dashboard's): its lines would come twice
        if not any(isinstance(h, _Enqueue) for h in logger.handlers):
            logger.addHandler(_Enqueue(_queue))
        logger.setLevel(level)
        logger.disabled = False  # a logging configuration loaded since (dictConfig) may have disabled it
    error = logging.getLogger("uvicorn.error")  # uvicorn's own lines reach the writer through "uvicorn"
    error.disabled, error.propagate = False, True
    error.setLevel(logging.NOTSET)  # "uvicorn"'s level: a uvicorn server run before in this process (the dashboard's) set its own
    logging.getLogger("uvicorn.access").disabled = True  # ours logs requests without query strings


def _uvicorns_own(handler: logging.Handler) -> bool:
    """A handler uvicorn's default logging configuration installs (its coloured text formatter),
    which writes to the stderr of its time: JSON lines are what the server writes, once."""
    from uvicorn.logging import ColourizedFormatter

    return isinstance(handler.formatter, ColourizedFormatter)


def stop_logging(timeout: float = 5.0) -> None:
    """Write the records queued so far (at most `timeout` s), stop the writer thread and take the
    queue handlers off the loggers `configure_logging` set up (a no-op when none runs).

    Records logged afterwards go only to the loggers' other handlers, if any."""
    global _listener, _queue
    listener = _listener
    if listener is None:
        return
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for h in [h for h in logger.handlers if isinstance(h, _Enqueue)]:
            logger.removeHandler(h)
    flush_logs(timeout)
    try:
        listener.stop()  # a sentinel after the last record; joins the thread
    except queue.Full:  # stderr stalled past the timeout: the daemon thread is left to it, unreferenced
        pass
    _listener = _queue = None


def flush_logs(timeout: float = 5.0) -> None:
    """Wait until the records queued so far are written (at most `timeout` s)."""
    q = _queue
    if q is None:
        return
    with q.all_tasks_done:
        q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, timeout)


def dropped_records() -> int:
    """Log records dropped because the writer's queue was full."""
    return _Enqueue.dropped
