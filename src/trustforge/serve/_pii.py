"""Personal data kept out of the server's logs (`serve --pii-in-logs never`, the default).

The logs never hold payloads (`_logging`), but a field can still carry an input value: an
exception text that echoes a cell (`batch_failed`'s error), a name in a source. With `never`,
every string field of every record, and the message of records that are not events, is
scanned by the PII detector (`trustforge.privacy`) and each detected value replaced by its type
tag (`<EMAIL>`) before the record is written; fields that name the server's own settings
(host, port, model, version, route, ...) are left as they are, so an address to listen on is
not taken for a person's IP address, and so is that address in a message (uvicorn's "running on
http://HOST:PORT"). The scan runs in the log writer's thread, off the
request path. `allow` writes the fields as they are (for debugging on a machine of one's own).

Request payloads are masked by the model itself (`Model.predict_columns`, `Model.read_input`)
when its package says it was trained on masked data (`data.protect`), so the drift monitor and
the model see the masked values only.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["PII_IN_LOGS", "PiiLogFilter", "mask_logs", "warm_up_detector"]

PII_IN_LOGS = ("never", "allow")
# Fields the server fills from its own settings and routes, never from a request's values
# (`request_id`: a per-process prefix and counter, `_app._ID_PREFIX`).
_OWN = frozenset(
    {"host", "port", "model", "version", "route", "method", "mode", "backend", "loop", "http", "auth", "worker", "pid", "ood", "request_id"}
)
# Fields with few distinct values (the registry's user names): each value is scanned once and
# its masked form remembered (every access-log line has one; the scan took 5-30 us each).
_REPEATED = frozenset({"principal"})
_MAX_REMEMBERED = 1024


class PiiLogFilter(logging.Filter):
    """Replaces detected personal data in a record's string fields by type tags; never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        from trustforge.privacy import Masker

        self._masker = Masker("tag")
        self.masked = 0  # values replaced so far
        self._remembered: dict[str, str] = {}  # value of a `_REPEATED` field -> its masked form
        self.host = ""  # the server's own bind address, kept in messages (`mask_logs` sets it)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str) and value:
            # The bind address is the server's setting, not a person's: the text around it is scanned.
            parts = value.split(self.host) if self.host else [value]
            out = self.host.join(self._masker.mask_text(p) if p else p for p in parts)
            if out != value:
                self.masked += 1
            return out
        return value

    def _clean_repeated(self, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        out = self._remembered.get(value)
        if out is None:
            out = self._masker.mask_text(value)
            if len(self._remembered) >= _MAX_REMEMBERED:
                self._remembered.clear()
            self._remembered[value] = out
        if out != value:
            self.masked += 1
        return out

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():  # in place: the message's `_Fields` holds the same dict
                if k in _REPEATED:
                    fields[k] = self._clean_repeated(v)
                elif k not in _OWN:
                    fields[k] = self._clean(v)
        elif getattr(record, "event", None) is None:
            record.msg, record.args = self._clean(record.getMessage()), None
        return True


def mask_logs(policy: str, host: str = "") -> PiiLogFilter | None:
    """Install the filter on the server's log writer under `never` (idempotent); None under `allow`.
    `host`: the server's bind address, left as it is wherever a message names it.

    Raises:
        ValueError: `policy` is not one of `PII_IN_LOGS`.
    """
    if policy not in PII_IN_LOGS:
        raise ValueError(f"--pii-in-logs must be never or allow; got {policy!r}")
    if policy == "allow":
        return None
    from trustforge.serve import _logging

    handlers = list(_logging._listener.handlers) if _logging._listener is not None else []  # noqa: SLF001 - this package's writer
    for h in handlers:
        for f in h.filters:
            if isinstance(f, PiiLogFilter):
                f.host = host
                return f
    flt = PiiLogFilter()
    flt.host = host
    for h in handlers:
        h.addFilter(flt)
    # The Chinese name detector's dictionaries (about a second of CPU) load in the writer thread,
    # off the request path, at the first log field with Chinese text: loading them at every start
    # held the server's readiness back by that second and more (`warm_up_detector` is for a model
    # that masks its inputs, which needs them on the request path).
    return flt


def warm_up_detector(*, background: bool) -> None:
    """Load the PII detector's name dictionaries now, where a model masks its inputs
    (`data.protect`): in a worker process before it says ready, in the server process (whose
    drift feed and fallback read inputs too) in a thread beside the rest of its start, so no
    request waits for them."""
    if background:
        threading.Thread(target=warm_up_detector, kwargs={"background": False}, name="pii-warm-up", daemon=True).start()
        return
    from trustforge.privacy import Masker

    Masker("tag").mask_text("warm up 王伟 John Smith")
