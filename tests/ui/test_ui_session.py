"""Sign-in, sessions, CSRF and the security headers of the dashboard."""

from __future__ import annotations

from _ui import csrf_of


def test_sign_in_with_a_token_opens_a_session_with_strict_cookie_flags(ui_app, ui_workspace):
    from fastapi.testclient import TestClient

    client = TestClient(ui_app, base_url="http://127.0.0.1", follow_redirects=False)
    assert client.get("/runs").status_code == 303  # no session: to the sign-in page
    page = client.get("/signin")
    answer = client.post("/signin", data={"csrf": csrf_of(page.text), "token": ui_workspace["tokens"]["viewer"], "next": "/runs"})
    assert answer.status_code == 303 and answer.headers["location"] == "/runs"
    cookie = answer.headers["set-cookie"]
    assert "tf_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Max-Age=" in cookie
    assert "tfk_" not in cookie  # the token never reaches the browser
    page = client.get("/runs")
    assert page.status_code == 200 and "viewer" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp


def test_a_wrong_token_is_refused_and_an_offsite_next_is_ignored(ui_app, ui_workspace):
    from fastapi.testclient import TestClient

    client = TestClient(ui_app, base_url="http://127.0.0.1", follow_redirects=False)
    page = client.get("/signin")
    bad = client.post("/signin", data={"csrf": csrf_of(page.text), "token": "tfk_0123456789abcdef_" + "A" * 43})
    assert bad.status_code == 401 and "not valid" in bad.text
    good = client.post("/signin", data={"csrf": csrf_of(page.text), "token": ui_workspace["tokens"]["admin"], "next": "//evil.example/x"})
    assert good.headers["location"] == "/runs"


def test_sign_out_needs_the_csrf_token_and_ends_the_session(client_as):
    client = client_as("viewer")
    assert client.post("/signout", data={}).status_code == 403  # no CSRF token
    assert client.post("/signout", data={"csrf": "wrong"}).status_code == 403
    csrf = csrf_of(client.get("/runs").text)
    assert client.post("/signout", data={"csrf": csrf}).status_code == 303
    assert client.get("/runs").status_code == 303  # signed out


def test_a_revoked_token_loses_its_session_at_the_next_request(client_as, ui_workspace):
    client = client_as("deployer")
    assert client.get("/runs").status_code == 200
    token = ui_workspace["tokens"]["deployer"]
    ui_workspace["registry"].access.revoke_token(token.split("_")[1])
    answer = client.get("/runs")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")


def test_non_loopback_without_tls_is_refused(tmp_path):
    import pytest

    from trustforge.errors import SecurityError
    from trustforge.ui._serve import check_bind

    with pytest.raises(SecurityError, match="--tls-cert"):
        check_bind("0.0.0.0", None, None, False)
    assert check_bind("127.0.0.1", None, None, False) is False
    assert check_bind("0.0.0.0", None, None, True) is False


def test_out_of_range_ports_are_a_usage_error_naming_port(tmp_path, monkeypatch):
    """The socket layer would take 99999 as 34463 (mod 65536) and -5 as a raw uvicorn error."""
    import uvicorn
    from _cli import run_main

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(k))  # never serve here
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: started.append(self))

    for port in ("99999", "-5", "0", "65536"):
        code, _out, err = run_main("ui", "--port", port, home=tmp_path / "ws")
        assert code == 2 and f"--port must be in [1, 65535]; got {port}" in err, (port, err)
    assert not started


def test_a_port_in_use_is_one_error_naming_port(tmp_path):
    """It ended with uvicorn's own "address already in use" line and exit 3; now it binds as
    `serve` does, and says so in one line naming --port (exit 74, as other OS errors)."""
    import socket

    from _cli import run_main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _out, err = run_main("ui", "--port", str(port), home=tmp_path / "ws")
    assert code == 74, err
    assert err.strip().splitlines() == [
        f"error: --port {port} is in use on 127.0.0.1 (another server listens there); stop it or choose another --port"
    ]


def test_the_dashboard_says_where_it_listens_once_bound_and_not_when_the_port_is_taken(capsys):
    import socket
    import threading
    import time

    import uvicorn

    from trustforge.ui._serve import _announcing_server

    async def app(scope, receive, send):  # no request is sent
        pass

    def run(server) -> None:
        try:
            server.run()
        except SystemExit:  # uvicorn's answer to a port in use
            pass

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _announcing_server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"), f"http://127.0.0.1:{port}")
        thread = threading.Thread(target=run, args=(busy,))
        thread.start()
        thread.join(30)
        assert not busy.started and "dashboard is at" not in capsys.readouterr().err
    server = _announcing_server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"), f"http://127.0.0.1:{port}")
    thread = threading.Thread(target=run, args=(server,))
    thread.start()
    for _ in range(300):
        if server.started:
            break
        time.sleep(0.05)
    server.should_exit = True
    thread.join(30)
    assert f"trustforge ui: the dashboard is at http://127.0.0.1:{port} (Ctrl-C stops it)" in capsys.readouterr().err
