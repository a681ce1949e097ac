"""The audit page (log, filters, paging, refusals, chain verification) and the users page (users,
tokens, and the forms that change them) of the dashboard."""

from __future__ import annotations

import html
import logging
import re

import sqlalchemy as sa
from _ui import csrf_of, signed_in_client


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr data-testid="audit-row".*?</tr>', page, flags=re.S)


def _seqs(page: str) -> list[int]:
    return [int(m) for m in re.findall(r'<tr data-testid="audit-row"[^>]*>\s*<td class="num">(\d+)</td>', page)]


# -- audit -------------------------------------------------------------------------------------


def test_the_audit_page_shows_the_log_newest_first_with_a_refusal_highlighted(client_as, ui_workspace):
    viewer = client_as("viewer")
    assert viewer.get("/audit").status_code == 403  # a viewer may not read the log, and that is audited
    admin = client_as("admin")
    page = admin.get("/audit")
    assert page.status_code == 200 and 'data-testid="audit-table"' in page.text
    seqs = _seqs(page.text)
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 5
    denied = [r for r in _rows(page.text) if 'class="outcome-denied"' in r]
    assert any(">viewer<" in r and ">audit_verify<" in r and "ui:/audit" in r for r in denied), "the viewer's refusal is not shown"
    assert all('<span class="badge bad">denied</span>' in r for r in denied)
    # The signed-in admin's own sign-in is there too, with its details.
    assert any(">ui_signin<" in r and "role" in r for r in _rows(page.text))


def test_filters_are_exact_and_validated_against_the_values_in_the_log(client_as, ui_workspace):
    client_as("viewer").get("/users")  # one refusal
    admin = client_as("admin")
    only = admin.get("/audit", params={"outcome": "denied"})
    assert only.status_code == 200 and _rows(only.text)
    assert all("outcome-denied" in r for r in _rows(only.text))
    mine = admin.get("/audit", params={"actor": "viewer", "action": "users"})
    assert mine.status_code == 200 and len(_rows(mine.text)) == 1 and ">ui:/users<" in _rows(mine.text)[0]
    assert '<option value="viewer" selected>' in mine.text  # the filter shows what was chosen
    nothing = admin.get("/audit", params={"actor": "viewer", "outcome": "error"})
    assert nothing.status_code == 200 and 'data-testid="audit-empty"' in nothing.text
    for params, field in (({"actor": "nobody-like-this"}, "actor"), ({"action": "drop"}, "action"), ({"outcome": "fine"}, "outcome")):
        bad = admin.get("/audit", params=params)
        assert bad.status_code == 400 and field in bad.text, params
    # The values offered are read at most once a minute; one written since is still found, and shown chosen.
    ui_workspace["registry"].audit.append("newcomer", "tag", "models:/iris-ui/1", "ok", {})
    assert "newcomer" not in admin.get("/audit", params={"per": 10}).text.split('id="f-actor"')[1].split("</select>")[0]
    fresh = admin.get("/audit", params={"actor": "newcomer"})
    assert fresh.status_code == 200 and len(_rows(fresh.text)) == 1 and '<option value="newcomer" selected>' in fresh.text
    for params in ({"per": 5}, {"per": 500}, {"page": 0}, {"page": "x"}, {"actor": "a" * 201}):
        assert admin.get("/audit", params=params).status_code == 400, params


def test_paging_is_server_side_and_keeps_the_filters(client_as, ui_workspace):
    audit = ui_workspace["registry"].audit
    audit.append_many({"actor": "bulk", "action": "tag", "object": f"models:/m/{i}", "outcome": "ok"} for i in range(65))
    admin = client_as("admin")
    first = admin.get("/audit", params={"actor": "bulk", "per": 20})
    assert len(_rows(first.text)) == 20 and "Page 1 of 4" in first.text
    nxt = re.search(r'<a href="([^"]+)" rel="next"', first.text).group(1)
    assert "actor=bulk" in html.unescape(nxt) and "per=20" in html.unescape(nxt)
    second = admin.get(html.unescape(nxt))
    assert _seqs(second.text) == [s - 20 for s in _seqs(first.text)]
    last = admin.get("/audit", params={"actor": "bulk", "per": 20, "page": 99})  # past the end: the last page
    assert last.status_code == 200 and "Page 4 of 4" in last.text and len(_rows(last.text)) == 5


def test_details_and_objects_are_escaped(client_as, ui_workspace):
    audit = ui_workspace["registry"].audit
    audit.append("mallory", "tag", "<img src=x onerror=alert(1)>", "error", {"note": "<script>alert(1)</script>"})
    page = client_as("admin").get("/audit", params={"actor": "mallory"})
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert 'class="outcome-error"' in page.text


def test_the_chain_verification_is_shown_cached_with_its_time_and_redone_on_demand(client_as, ui_workspace):
    admin = client_as("admin")
    page = admin.get("/audit")
    block = re.search(r'<section class="card" data-testid="audit-verify".*?</section>', page.text, flags=re.S).group(0)
    assert 'data-ok="true"' in block and "intact" in block and re.search(r"Checked at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", block)
    # Edit an entry behind TrustForge's back.
    engine = ui_workspace["registry"].engine
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 3"))
    ui_workspace["registry"].audit.append("admin", "tag", "models:/iris-ui/1", "ok", {})
    cached = admin.get("/audit")
    assert 'data-ok="true"' in cached.text  # the cached result, with the time it was taken
    assert "1 entry was written since" in cached.text
    again = admin.get("/audit", params={"verify": 1})
    block = re.search(r'<section class="card" data-testid="audit-verify".*?</section>', again.text, flags=re.S).group(0)
    assert 'data-ok="false"' in block and "at entry 3" in block and "edited" in block
    assert ui_workspace["settings"].home.as_posix() not in again.text
    assert admin.get("/audit", params={"verify": 2}).status_code == 400


# -- users and tokens ----------------------------------------------------------------------------


def _nonce_of(page: str) -> str:
    return re.search(r'name="nonce" value="([^"]+)"', page).group(1)


def _post(client, path: str, data: dict | None = None):
    page = client.get("/users").text
    form = {"csrf": csrf_of(page), **(data or {})}
    if path.endswith("/tokens"):
        form.setdefault("nonce", _nonce_of(page))
    return client.post(path, data=form)


def test_the_users_page_lists_users_and_tokens_but_never_a_secret_or_hash(client_as, ui_workspace):
    admin = client_as("admin")
    page = admin.get("/users")
    assert page.status_code == 200 and 'data-testid="users-table"' in page.text and 'data-testid="tokens-table"' in page.text
    for role, token in ui_workspace["tokens"].items():
        token_id, secret = token.split("_")[1], token.split("_", 2)[2]
        assert f'data-user="{role}"' in page.text and f'data-token="{token_id}"' in page.text
        assert secret not in page.text
    hashes = [r[0] for r in ui_workspace["registry"].engine.connect().execute(sa.text("SELECT hash FROM access_tokens"))]
    assert hashes and not any(h in page.text for h in hashes)
    assert page.text.count('data-testid="revoke-token"') == 4
    assert client_as("deployer").get("/users").status_code == 403


def test_add_user_and_change_role_act_as_the_admin_and_are_audited(client_as, ui_workspace):
    admin = client_as("admin")
    answer = _post(admin, "/users", {"name": "alice", "role": "trainer"})
    assert answer.status_code == 303 and answer.headers["location"] == "/users?done=user-added&user=alice"
    page = admin.get(answer.headers["location"])
    assert 'data-user="alice"' in page.text and 'data-testid="flash"' in page.text and "User alice was added." in page.text
    users = {u["name"]: u for u in ui_workspace["registry"].access.list_users()}
    assert users["alice"]["role"] == "trainer"
    entry = ui_workspace["registry"].audit.entries(limit=1, action="users")[0]
    assert (entry["actor"], entry["object"], entry["outcome"], entry["details"]["op"]) == ("admin", "user:alice", "ok", "add_user")
    # Bad input: a clear 400 naming what was wrong, nothing added.
    for data, word in (({"name": "../x", "role": "viewer"}, "user name"), ({"name": "bob", "role": "root"}, "role")):
        bad = _post(admin, "/users", data)
        assert bad.status_code == 400 and word in bad.text
    again = _post(admin, "/users", {"name": "alice", "role": "viewer"})
    assert again.status_code == 400 and "already exists" in again.text
    assert "bob" not in {u["name"] for u in ui_workspace["registry"].access.list_users()}
    # A role change acts on the next request of that user's session.
    viewer = client_as("viewer")
    assert viewer.get("/users").status_code == 403
    assert _post(admin, "/users/viewer/role", {"role": "admin"}).status_code == 303
    assert viewer.get("/users").status_code == 200


def test_a_new_token_is_shown_once_not_stored_logged_or_audited_and_works(client_as, ui_workspace, ui_app, caplog):
    admin = client_as("admin")
    with caplog.at_level(logging.DEBUG):
        answer = _post(admin, "/users/trainer/tokens", {"ttl_days": "7"})
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    token = html.unescape(re.search(r'data-testid="new-token">([^<]+)<', answer.text).group(1))
    assert re.fullmatch(r"tfk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", token)
    secret = token.split("_", 2)[2]
    assert secret not in caplog.text
    audit = ui_workspace["registry"].audit
    assert not any(secret in str(e) for e in audit.entries(limit=1000))
    assert audit.entries(limit=1, action="users")[0]["details"]["token_id"] == token.split("_")[1]
    assert secret not in admin.get("/users").text  # never again
    fresh = signed_in_client(ui_app, token)
    assert fresh.get("/runs").status_code == 200
    for ttl in ("0", "366", "abc", "-1", "1e3"):
        bad = _post(admin, "/users/trainer/tokens", {"ttl_days": ttl})
        assert bad.status_code == 400 and "ttl_days" in bad.text and 'data-testid="new-token"' not in bad.text
    assert _post(admin, "/users/nobody/tokens", {"ttl_days": "7"}).status_code == 400


def test_revoking_a_token_ends_its_sessions_at_once(client_as, ui_workspace, ui_app):
    ui_app.state.sessions.recheck_s = 3600  # so only end_token can end the session in this test
    deployer = client_as("deployer")
    assert deployer.get("/runs").status_code == 200
    token_id = ui_workspace["tokens"]["deployer"].split("_")[1]
    admin = client_as("admin")
    answer = _post(admin, f"/tokens/{token_id}/revoke")
    assert answer.status_code == 303 and answer.headers["location"] == f"/users?done=token-revoked&token={token_id}"
    gone = deployer.get("/runs")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/signin")
    assert admin.get("/runs").status_code == 200  # the admin's own session is untouched
    assert f'data-token="{token_id}"' not in admin.get("/users").text  # live tokens only, by default
    row = re.search(rf'<tr data-testid="token-row" data-token="{token_id}">.*?</tr>', admin.get("/users?show=all").text, flags=re.S).group(
        0
    )
    assert "revoke-token" not in row and "badge bad" in row
    assert _post(admin, "/tokens/0000000000000000/revoke").status_code == 400  # unknown id


def test_revoking_a_user_ends_their_sessions_at_once(client_as, ui_workspace, ui_app):
    ui_app.state.sessions.recheck_s = 3600
    trainer = client_as("trainer")
    assert trainer.get("/runs").status_code == 200
    admin = client_as("admin")
    assert _post(admin, "/users/trainer/revoke").status_code == 303
    assert trainer.get("/runs").status_code == 303
    users = {u["name"]: u for u in ui_workspace["registry"].access.list_users()}
    assert users["trainer"]["active"] is False and users["trainer"]["tokens"] == []


def test_the_flash_is_a_fixed_text_and_its_parameters_are_validated(client_as):
    admin = client_as("admin")
    page = admin.get("/users", params={"done": "go-to-evil.example"})
    assert page.status_code == 200 and "evil.example" not in page.text and 'data-testid="flash"' not in page.text
    assert admin.get("/users", params={"done": "Your session expired, sign in at evil.example"}).status_code == 400  # too long
    assert admin.get("/users", params={"done": "user-added", "user": "<b>x</b>"}).status_code == 400
    assert admin.get("/users", params={"done": "token-revoked", "token": "zz"}).status_code == 400


def test_a_resent_token_form_issues_no_second_token(client_as, ui_workspace):
    admin = client_as("admin")
    page = admin.get("/users").text
    form = {"csrf": csrf_of(page), "nonce": _nonce_of(page), "ttl_days": "7"}
    count = len(ui_workspace["registry"].access.list_tokens())
    first = admin.post("/users/trainer/tokens", data=form)
    assert first.status_code == 200 and 'data-testid="new-token"' in first.text
    again = admin.post("/users/trainer/tokens", data=form)  # what a reload of the answer sends
    assert again.status_code == 409 and "already used" in again.text and 'data-testid="new-token"' not in again.text
    missing = admin.post("/users/trainer/tokens", data={"csrf": form["csrf"], "ttl_days": "7"})
    assert missing.status_code == 400 and "nonce: the token form is incomplete" in missing.text and "already used" not in missing.text
    assert len(ui_workspace["registry"].access.list_tokens()) == count + 1
    # A fresh users page gives a fresh form that works once.
    assert _post(admin, "/users/trainer/tokens", {"ttl_days": "7"}).status_code == 200


def test_an_admin_cannot_revoke_themselves(client_as, ui_workspace):
    admin = client_as("admin")
    row = re.search(r'<tr data-testid="user-row" data-user="admin">.*?</tr>', admin.get("/users").text, flags=re.S).group(0)
    assert "revoke-user" not in row and "cannot revoke yourself" in row
    refused = _post(admin, "/users/admin/revoke")
    assert refused.status_code == 400 and "cannot revoke yourself" in refused.text
    users = {u["name"]: u for u in ui_workspace["registry"].access.list_users()}
    assert users["admin"]["active"] is True
    assert admin.get("/users").status_code == 200  # still signed in


def test_an_admin_cannot_demote_themselves(client_as, ui_workspace):
    """Self-demotion locks the dashboard out as self-revocation would: refused the same way."""
    admin = client_as("admin")
    row = re.search(r'<tr data-testid="user-row" data-user="admin">.*?</tr>', admin.get("/users").text, flags=re.S).group(0)
    assert 'data-testid="role-form"' not in row and "cannot change your own role" in row
    refused = _post(admin, "/users/admin/role", {"role": "viewer"})
    assert refused.status_code == 400 and "cannot change your own role" in refused.text
    users = {u["name"]: u for u in ui_workspace["registry"].access.list_users()}
    assert users["admin"]["role"] == "admin"
    assert admin.get("/users").status_code == 200  # still an admin
    assert _post(admin, "/users/viewer/role", {"role": "trainer"}).status_code == 303  # others' roles still change


def test_a_session_ended_by_a_revocation_is_told_so_once(client_as, ui_workspace, ui_app):
    ui_app.state.sessions.recheck_s = 3600  # only end_token can end the session here
    deployer = client_as("deployer")
    assert deployer.get("/runs").status_code == 200
    admin = client_as("admin")
    assert _post(admin, f"/tokens/{ui_workspace['tokens']['deployer'].split('_')[1]}/revoke").status_code == 303
    gone = deployer.get("/runs")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/signin")
    signin = deployer.get(gone.headers["location"])
    assert "your session ended" in signin.text
    assert "your session ended" not in deployer.get("/signin").text  # once


def test_the_ended_sessions_kept_for_the_notice_are_bounded(ui_app):
    sessions = ui_app.state.sessions
    with sessions._lock:
        sessions._ended_by_admin([f"sid-{i}" for i in range(sessions._ENDED_MAX + 50)], "revoked")
    assert len(sessions._ended) == sessions._ENDED_MAX and "sid-0" not in sessions._ended


def test_tokens_are_paged_in_the_database_live_ones_first_shown(client_as, ui_workspace):
    registry = ui_workspace["registry"]
    admin = client_as("admin")
    live_before = registry.access.count_tokens(live_only=True)
    for _ in range(60):
        registry.access.issue_token("viewer", ttl_days=1)
    revoked = registry.access.issue_token("viewer", ttl_days=1).split("_")[1]
    registry.access.revoke_token(revoked)
    live = live_before + 60
    assert registry.access.count_tokens(live_only=True) == live and registry.access.count_tokens() == live + 1

    first = admin.get("/users").text
    assert first.count('data-testid="token-row"') == 50 and f"Showing the {live} live tokens" in first
    assert "Page 1 of 2" in first and 'href="/users?tpage=2#tokens-h"' in first and f'data-token="{revoked}"' not in first
    second = admin.get("/users?tpage=2").text
    assert second.count('data-testid="token-row"') == live - 50 and 'href="/users#tokens-h" rel="prev"' in second
    ids = set(re.findall(r'data-testid="token-row" data-token="([0-9a-f]{16})"', first + second))
    assert len(ids) == live  # every live token on exactly one page
    every = admin.get("/users?show=all&tpage=1").text
    assert f'data-token="{revoked}"' in every  # the newest, revoked, heads the full list
    assert admin.get("/users?tpage=99").text.count('data-testid="token-row"') == live - 50  # past the end: the last page
    for bad in ("/users?show=../../etc", "/users?tpage=0", "/users?tpage=x"):
        assert admin.get(bad).status_code in (400, 422), bad
