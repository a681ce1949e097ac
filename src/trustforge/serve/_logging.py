"""Structured logs: one JSON object per line, events with fields, never payloads or secrets.

Every record the server writes is an *event* (`request`, `model_loaded`, `worker_died`, ...)
with flat fields. What is never logged: request or response bodies, query strings, headers
(tokens travel in one), and exception texts that could echo input values back (request
errors are counted and answered, not logged).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

__all__ = ["log", "log_event", "JsonFormatter", "configure_logging"]

log = logging.getLogger("trustforge.serve")


def log_event(level: int, event: str, **fields: Any) -> None:
    """Log `event` with `fields` (JSON-able scalars) on the server's logger."""
    if log.isEnabledFor(level):
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        log.log(level, "%s %s", event, text, extra={"event": event, "fields": fields})


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
        return json.dumps(out, default=str, separators=(",", ":"))


class _Stderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each record (it may be replaced)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Send the server's, the drift monitor's and uvicorn's logs to stderr as JSON lines (idempotent)."""
    for name in ("trustforge.serve", "trustforge.monitor", "uvicorn"):  # uvicorn.error propagates to uvicorn
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Stderr) for h in logger.handlers):
            handler = _Stderr()
            handler.setFormatter(JsonFormatter())
            logger.addHandler(handler)
        logger.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = True  # ours logs requests without query strings
