"""The server's log writer stops with the server: no thread is left writing JSON lines of later
requests to whatever `sys.stderr` is then (in CI: the job's log, outside pytest's capture)."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from types import SimpleNamespace

import pytest

from trustforge.errors import AccessDenied
from trustforge.serve import ServeConfig, _logging
from trustforge.serve._run import serve


def _writer_threads() -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if getattr(t, "_target", None) is not None and getattr(t._target, "__name__", "") == "_monitor"
    ]


def _enqueuers() -> list[logging.Handler]:
    return [h for name in _logging._LOGGERS for h in logging.getLogger(name).handlers if isinstance(h, _logging._Enqueue)]


def _capture(monkeypatch) -> io.StringIO:
    """What the writer thread sees as stderr from now on (it looks `sys.stderr` up at every record;
    set inside the test, since pytest swaps stderr between a test's phases)."""
    stream = io.StringIO()
    monkeypatch.setattr(_logging.sys, "stderr", stream)
    return stream


def _later_request_is_not_written(monkeypatch) -> str:
    """A later test's server logs a request: what reaches stderr within 0.2 s (the writer wakes every 20 ms)."""
    later = _capture(monkeypatch)
    _logging.log_event(logging.INFO, "request", request_id="later-test", status=200)
    time.sleep(0.2)
    return later.getvalue()


class _FakeService:
    """Stands in for ModelService: the test is about the writer's life, not the model."""

    def __init__(self, *args, **kwargs):
        self.current = SimpleNamespace(name="fake", version="1")
        self.closed = False

    def start(self):
        return self

    def close(self):
        self.closed = True


def test_a_served_run_logs_and_then_leaves_no_writer(workspace, monkeypatch):
    import uvicorn

    import trustforge.serve._app as app_module
    import trustforge.serve._service as service_module

    seen = {}

    def fake_run(server, sockets=None):  # the server is up: its requests are logged as JSON lines
        seen["threads"] = _writer_threads()
        _logging.log_event(logging.INFO, "request", request_id="r1", status=200, ms=1.0)

    monkeypatch.setattr(service_module, "ModelService", _FakeService)
    monkeypatch.setattr(app_module, "create_app", lambda service: object())
    monkeypatch.setattr(uvicorn.Server, "run", fake_run)  # serve hands uvicorn the socket it bound
    folder = workspace.parent / "pkg"
    folder.mkdir()
    stderr = _capture(monkeypatch)
    serve(str(folder), ServeConfig(auth="none", pii_in_logs="allow"))

    events = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert [e["event"] for e in events if e.get("event") in ("no_auth", "listening", "request")] == ["no_auth", "listening", "request"]
    assert len(seen["threads"]) == 1  # the server logged through its writer thread
    assert not seen["threads"][0].is_alive() and _logging._listener is None and _enqueuers() == []
    assert _later_request_is_not_written(monkeypatch) == ""


def test_a_refused_start_leaves_no_writer(monkeypatch):
    """The leak CI showed: `serve` refused after logging was set up (here: a viewer's token) left
    the writer and its handlers installed, and the next tests' access logs reached the CI log."""
    from trustforge.registry import Registry
    from trustforge.settings import Settings

    with Registry(Settings.from_env()) as admin:
        admin.access.add_user("vera", "viewer")
        token = admin.access.issue_token("vera")
    monkeypatch.setenv("TRUSTFORGE_TOKEN", token)
    _capture(monkeypatch)
    with pytest.raises(AccessDenied):
        serve("models:/anything@champion", ServeConfig(auth="none", pii_in_logs="allow"))
    assert _logging._listener is None and _enqueuers() == [] and _writer_threads() == []
    assert _later_request_is_not_written(monkeypatch) == ""


def test_stop_logging_writes_what_is_queued_and_a_new_configure_logs_again(monkeypatch):
    stderr = _capture(monkeypatch)
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level) for name in _logging._LOGGERS}
    try:
        _logging.configure_logging()
        for i in range(3):
            _logging.log_event(logging.INFO, "request", request_id=f"q{i}", status=200)
        _logging.stop_logging()  # no flush first: stopping writes what was queued
        assert [json.loads(line)["request_id"] for line in stderr.getvalue().splitlines()] == ["q0", "q1", "q2"]
        _logging.stop_logging()  # idempotent
        assert _later_request_is_not_written(monkeypatch) == ""
        _logging.configure_logging()  # a server started again in the same process logs again
        again = _capture(monkeypatch)
        _logging.log_event(logging.INFO, "request", request_id="again", status=200)
        _logging.flush_logs(10.0)
        assert json.loads(again.getvalue())["request_id"] == "again"
    finally:
        _logging.stop_logging()
        for name, (handlers, level) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).setLevel(level)
