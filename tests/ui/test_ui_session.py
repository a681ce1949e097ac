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
