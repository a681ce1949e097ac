"""`serve --pii-in-logs never` (the default): personal data in a log field is written as its type tag."""

from __future__ import annotations

import io
import json
import logging

import pytest

from trustforge.errors import SpecError
from trustforge.serve import ServeConfig, _logging
from trustforge.serve._pii import PiiLogFilter, mask_logs


@pytest.fixture
def log_stream(monkeypatch):
    """The server's log writer, restored afterwards; what it writes goes to the returned stream
    once `_capture` points stderr at it (inside the test: pytest swaps stderr between phases)."""
    stream = io.StringIO()
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level) for name in _logging._LOGGERS}
    access = logging.getLogger("uvicorn.access").disabled
    _logging.configure_logging()
    try:
        yield stream
    finally:
        for h in _logging._listener.handlers:
            for f in [f for f in h.filters if isinstance(f, PiiLogFilter)]:
                h.removeFilter(f)
        for name, (handlers, level) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).setLevel(level)
        logging.getLogger("uvicorn.access").disabled = access


def _capture(monkeypatch, stream):
    monkeypatch.setattr(_logging.sys, "stderr", stream)


def _lines(stream):
    _logging.flush_logs(10.0)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_never_writes_tags_instead_of_personal_data_and_leaves_the_servers_own_fields(log_stream, monkeypatch):
    _capture(monkeypatch, log_stream)
    flt = mask_logs("never")
    assert mask_logs("never") is flt  # idempotent
    before = flt.masked  # the writer's filter may be an earlier test's: count from here
    error = "ValueError: could not convert 'olivia.smith001@example.org' (ID 11010119900307002X, call 13812345678)"
    _logging.log_event(logging.ERROR, "batch_failed", model="people", host="127.0.0.1", rows=3, error=error)
    logging.getLogger("uvicorn.error").error("bad request from olivia.smith001@example.org")
    first, second = _lines(log_stream)
    assert first["error"] == "ValueError: could not convert '<EMAIL>' (ID <CN_ID>, call <CN_MOBILE>)"
    assert first["host"] == "127.0.0.1" and first["model"] == "people" and first["rows"] == 3  # the server's own settings
    assert second["message"] == "bad request from <EMAIL>"
    assert flt.masked - before == 2


def test_the_servers_own_bind_address_stays_in_a_message(log_stream, monkeypatch):
    """uvicorn's "running on http://HOST:PORT" named <IP_ADDRESS>: the bind address is a setting,
    not a person's; an address beside it in the same message is still tagged."""
    _capture(monkeypatch, log_stream)
    mask_logs("never", "203.0.113.9")
    logging.getLogger("uvicorn.error").info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", "203.0.113.9", 18773)
    logging.getLogger("uvicorn.error").info("client 198.51.100.7 of http://203.0.113.9:18773 wrote olivia.smith001@example.org")
    first, second = _lines(log_stream)
    assert first["message"] == "Uvicorn running on http://203.0.113.9:18773 (Press CTRL+C to quit)", first
    assert second["message"] == "client <IP_ADDRESS> of http://203.0.113.9:18773 wrote <EMAIL>", second


def test_the_access_log_masks_a_principal_once_and_keeps_the_request_id(log_stream, monkeypatch):
    _capture(monkeypatch, log_stream)
    flt = mask_logs("never")
    flt._remembered.clear()  # the writer's filter may be an earlier test's
    before = flt.masked
    calls = []
    scan = flt._masker.mask_text
    monkeypatch.setattr(flt._masker, "mask_text", lambda text: calls.append(text) or scan(text))
    for i in range(3):
        _logging.log_event(
            logging.INFO, "request", request_id=f"ab12cd34-{i:x}", route="/invocations", status=200, principal="olivia.smith001@example.org"
        )
    lines = _lines(log_stream)
    assert [e["principal"] for e in lines] == ["<EMAIL>"] * 3 and [e["request_id"] for e in lines] == [f"ab12cd34-{i}" for i in range(3)]
    assert calls == ["olivia.smith001@example.org"]  # scanned once; the server's own request ids not at all
    assert flt.masked - before == 3


def test_allow_writes_fields_as_they_are(log_stream, monkeypatch):
    _capture(monkeypatch, log_stream)
    assert mask_logs("allow") is None
    _logging.log_event(logging.ERROR, "batch_failed", error="olivia.smith001@example.org")
    assert _lines(log_stream)[0]["error"] == "olivia.smith001@example.org"


def test_a_bad_value_is_one_error_naming_the_flag():
    assert ServeConfig().pii_in_logs == "never"
    with pytest.raises(SpecError, match=r"--pii-in-logs \(serve option pii_in_logs\) must be never or allow; got 'sometimes'"):
        ServeConfig(pii_in_logs="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("left_behind", ["a stale queue handler", "a disabled logger", "a uvicorn server's own logging"])
def test_logging_configured_again_writes_uvicorns_lines_whatever_was_left_behind(left_behind, log_stream, monkeypatch):
    # The bind-address test above once wrote nothing in a full run: a handler whose writer another
    # test had stopped, or a logger a logging configuration had disabled, swallowed the lines; so
    # did a uvicorn server run before in the process (the dashboard's tests): its own handler wrote
    # to a stderr since closed, and its error logger kept level warning.
    import queue

    _capture(monkeypatch, log_stream)
    _logging.stop_logging()
    if left_behind == "a stale queue handler":
        logging.getLogger("uvicorn").addHandler(_logging._Enqueue(queue.Queue()))
    elif left_behind == "a disabled logger":
        monkeypatch.setattr(logging.getLogger("uvicorn.error"), "disabled", True)
    else:
        import uvicorn

        closed = io.StringIO()
        monkeypatch.setattr("sys.stderr", closed)
        uvicorn.Config(lambda *a: None, log_level="warning")  # its default logging configuration, as `trustforge ui` runs it
        closed.close()
        _capture(monkeypatch, log_stream)
    _logging.configure_logging()
    logging.getLogger("uvicorn.error").info("after a restart")
    assert [line["message"] for line in _lines(log_stream)] == ["after a restart"]
