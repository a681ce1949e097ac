"""The models pages of the dashboard: the list, a model's versions with lineage and verification,
and alias and tag changes (roles, CSRF, audit, bad input)."""

from __future__ import annotations

import json
import re

import pytest
from _ui import ROLES, csrf_of


def _alias(ui_workspace, alias="champion") -> int:
    return ui_workspace["registry"].get(f"models:/iris-ui@{alias}").version


def _audit(ui_workspace, **match) -> list[dict]:
    return [e for e in ui_workspace["registry"].audit.entries(limit=500) if all(e.get(k) == v for k, v in match.items())]


def _verified_cells(html: str) -> dict[int, str]:
    """Version → the text of its verification cell."""
    out = {}
    for row in re.findall(r'<tr data-testid="version-row" id="v(\d+)">(.*?)</tr>', html, re.S):
        cell = re.search(r'data-testid="verified">(.*?)</td>', row[1], re.S)
        out[int(row[0])] = re.sub(r"<[^>]+>|\s+", " ", cell.group(1)).strip()
    return out


@pytest.mark.parametrize("role", ROLES)
def test_every_role_lists_the_models_and_opens_one(client_as, role):
    client = client_as(role)
    page = client.get("/models")
    assert page.status_code == 200
    rows = re.findall(r'<tr data-testid="model-row">(.*?)</tr>', page.text, re.S)
    assert len(rows) == 1 and 'href="/models/iris-ui"' in rows[0]
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", rows[0], re.S)]
    assert cells[1:3] == ["2", "2"] and "@champion → v1" in cells[3] and "UTC" in cells[4]
    detail = client.get("/models/iris-ui")
    assert detail.status_code == 200 and 'data-testid="versions-table"' in detail.text
    assert ('data-testid="alias-form"' in detail.text) == (role in ("deployer", "admin"))
    assert ('data-testid="tag-form"' in detail.text) == (role in ("trainer", "deployer", "admin"))
    if role in ("deployer", "admin"):
        form = re.search(r'<form[^>]*data-testid="alias-form".*?</form>', detail.text, re.S).group(0)
        assert 'name="alias"' in form and 'name="version"' in form and ">Promote</button>" in form and "data-confirm=" in form


def test_without_a_session_the_pages_send_to_sign_in(client_as):
    client = client_as(None)
    for path in ("/models", "/models/iris-ui"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    assert client.post("/models/iris-ui/aliases", data={"alias": "champion", "version": "2"}).status_code == 401


def test_the_filter_and_paging(client_as, ui_workspace):
    client = client_as("viewer")
    assert 'data-testid="model-row"' in client.get("/models?q=IRIS").text
    assert 'data-testid="model-row"' in client.get("/models?q=champ").text  # an alias matches too
    empty = client.get("/models?q=nothing-like-it")
    assert 'data-testid="model-row"' not in empty.text and "No model name or alias contains" in empty.text
    for bad in ("/models?per=5", "/models?per=500", "/models?page=0", "/models?q=" + "x" * 65):
        answer = client.get(bad)
        assert answer.status_code == 400, bad
        assert re.search(r"(per|page|q):", answer.text), bad


def test_versions_show_lineage_and_are_verified(client_as, ui_workspace):
    page = client_as("viewer").get("/models/iris-ui")
    cells = _verified_cells(page.text)
    assert set(cells) == {1, 2}
    for text in cells.values():
        assert text.startswith("verified") and "signature" in text and "registry binding" in text
    mv = ui_workspace["registry"].get("models:/iris-ui/1")
    assert f'href="/runs/{mv.run}"' in page.text  # the run folder is in the workspace: linked
    assert mv.dataset_digest[:12] in page.text and mv.spec_digest[:12] in page.text
    assert str(ui_workspace["settings"].home) not in page.text  # no local path on the page


def test_a_tampered_stored_version_shows_failed_and_is_audited(client_as, ui_workspace):
    client = client_as("viewer")
    assert set(_verified_cells(client.get("/models/iris-ui").text).values()) != set()  # checked (and cached) once
    folder = ui_workspace["registry"].get("models:/iris-ui/2").path
    target = sorted(p for p in folder.iterdir() if p.name != "sealed.json")[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    page = client.get("/models/iris-ui")
    cells = _verified_cells(page.text)
    assert cells[1].startswith("verified")
    assert cells[2].startswith("FAILED") and "models:/iris-ui/2" in cells[2] and "verified" not in cells[2]
    assert str(folder) not in page.text and 'data-testid="verify-failed"' in page.text
    refused = _audit(ui_workspace, action="load", object="models:/iris-ui/2", outcome="error")
    assert refused and refused[0]["actor"] == "viewer"


def test_a_deployer_promotes_and_rolls_back_and_it_is_audited(client_as, ui_workspace):
    client = client_as("deployer")
    csrf = csrf_of(client.get("/models/iris-ui").text)
    answer = client.post("/models/iris-ui/aliases", data={"csrf": csrf, "alias": "champion", "version": "2"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/models/iris-ui?done=")
    assert _alias(ui_workspace) == 2
    entry = _audit(ui_workspace, action="alias", object="models:/iris-ui@champion", outcome="ok")[0]
    assert entry["actor"] == "deployer" and entry["details"]["version"] == 2 and entry["details"]["previous"] == 1
    flash = client.get(answer.headers["location"])
    assert "@champion now points at version 2" in flash.text
    client.post("/models/iris-ui/aliases", data={"csrf": csrf, "alias": "champion", "version": "1"})  # roll back
    assert _alias(ui_workspace) == 1
    client.post("/models/iris-ui/aliases", data={"csrf": csrf, "alias": "staging", "version": "2"})
    assert _alias(ui_workspace, "staging") == 2
    gone = client.post("/models/iris-ui/aliases/staging/delete", data={"csrf": csrf})
    assert gone.status_code == 303
    assert "@staging removed." in client.get(gone.headers["location"]).text
    assert "staging" not in ui_workspace["registry"].list_models()[0]["aliases"]


@pytest.mark.parametrize("role", ["viewer", "trainer"])
def test_viewer_and_trainer_may_not_promote_and_the_denial_is_audited(client_as, ui_workspace, role):
    client = client_as(role)
    csrf = csrf_of(client.get("/models/iris-ui").text)
    answer = client.post("/models/iris-ui/aliases", data={"csrf": csrf, "alias": "champion", "version": "2"})
    assert answer.status_code == 403 and "may not alias" in answer.text
    assert client.post("/models/iris-ui/aliases/champion/delete", data={"csrf": csrf}).status_code == 403
    assert _alias(ui_workspace) == 1
    denied = _audit(ui_workspace, actor=role, action="alias", outcome="denied")
    assert {e["object"] for e in denied} == {"ui:/models/iris-ui/aliases", "ui:/models/iris-ui/aliases/champion/delete"}


def test_a_change_without_or_with_a_wrong_csrf_token_is_refused(client_as, ui_workspace):
    client = client_as("deployer")
    for data in ({"alias": "champion", "version": "2"}, {"alias": "champion", "version": "2", "csrf": "forged"}):
        answer = client.post("/models/iris-ui/aliases", data=data)
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert client.post("/models/iris-ui/aliases/champion/delete", data={}).status_code == 403
    assert client.post("/models/iris-ui/versions/1/tags", data={"key": "k", "value": "v"}).status_code == 403
    assert _alias(ui_workspace) == 1 and ui_workspace["registry"].get("models:/iris-ui/1").tags == {}


def test_a_trainer_tags_a_version(client_as, ui_workspace):
    client = client_as("trainer")
    page = client.get("/models/iris-ui?tag=1")
    assert 'action="/models/iris-ui/versions/1/tags"' in page.text
    answer = client.post("/models/iris-ui/versions/1/tags", data={"csrf": csrf_of(page.text), "key": "approved", "value": "yes"})
    assert answer.status_code == 303
    assert ui_workspace["registry"].get("models:/iris-ui/1").tags == {"approved": "yes"}
    assert answer.headers["location"] == "/models/iris-ui?done=tag-set&version=1&key=approved"
    assert "Version 1: tag approved set." in client.get(answer.headers["location"]).text
    [entry] = _audit(ui_workspace, actor="trainer", action="tag", outcome="ok")
    assert entry["details"]["key"] == "approved" and entry["details"]["value_length"] == 3 and "yes" not in json.dumps(entry["details"])
    assert "approved=yes" in client.get("/models/iris-ui").text
    assert client_as("viewer").post("/models/iris-ui/versions/1/tags", data={"csrf": "x", "key": "a", "value": "b"}).status_code == 403


def test_bad_names_and_versions_get_a_page_naming_the_field(client_as, ui_workspace):
    client = client_as("admin")
    csrf = csrf_of(client.get("/models").text)
    cases = [
        ("get", "/models/-dash", None, 400, "model name"),
        ("get", "/models/a%20b", None, 400, "model name"),
        ("get", "/models/..%2fkeys", None, 400, "not valid"),
        ("get", "/models/" + "x" * 80, None, 400, "model name"),
        ("get", "/models/no-such-model", None, 404, "no such model"),
        ("get", "/models/iris-ui?tag=9", None, 404, "tag"),
        ("get", "/models/iris-ui?page=0", None, 400, "page"),
        ("post", "/models/iris-ui/aliases", {"alias": "champion", "version": "two"}, 400, "version must be a positive integer"),
        ("post", "/models/iris-ui/aliases", {"alias": "champion", "version": "9"}, 400, "no such version"),
        ("post", "/models/iris-ui/aliases", {"alias": "latest", "version": "1"}, 400, "alias"),
        ("post", "/models/iris-ui/aliases", {"alias": "../x", "version": "1"}, 400, "alias"),
        ("post", "/models/iris-ui/aliases", {"alias": "", "version": "1"}, 400, "alias"),
        ("post", "/models/-x/aliases", {"alias": "champion", "version": "1"}, 400, "model name"),
        ("post", "/models/iris-ui/aliases/nope/delete", {}, 400, "no such alias"),
        ("post", "/models/iris-ui/aliases/9/delete", {}, 400, "alias"),
        ("post", "/models/iris-ui/versions/0/tags", {"key": "k", "value": "v"}, 400, "version"),
        ("post", "/models/iris-ui/versions/x/tags", {"key": "k", "value": "v"}, 400, "version"),
        ("post", "/models/iris-ui/versions/7/tags", {"key": "k", "value": "v"}, 400, "no such version"),
        ("post", "/models/iris-ui/versions/1/tags", {"key": "a/b", "value": "v"}, 400, "tag key"),
        ("post", "/models/iris-ui/versions/1/tags", {"key": "k", "value": "x" * 2000}, 400, "tag value"),
    ]
    for method, path, data, status, words in cases:
        answer = client.get(path) if method == "get" else client.post(path, data={"csrf": csrf, **data})
        assert answer.status_code == status, (path, data, answer.status_code)
        assert words in answer.text, (path, data)
        assert "Traceback" not in answer.text
    assert _alias(ui_workspace) == 1


def test_versions_past_the_time_budget_say_not_checked_yet_never_verified(client_as, monkeypatch):
    from trustforge.ui import _models

    monkeypatch.setattr(_models, "VERIFY_BUDGET_S", -1.0)  # the budget is spent before the first check
    page = client_as("viewer").get("/models/iris-ui")
    assert set(_verified_cells(page.text).values()) == {"not checked yet"}
    assert "reload the page to go on checking" in page.text
    monkeypatch.setattr(_models, "VERIFY_BUDGET_S", 30.0)
    assert all(t.startswith("verified") for t in _verified_cells(client_as("viewer").get("/models/iris-ui").text).values())


def test_a_crafted_link_shows_no_text_of_its_own_nor_a_false_confirmation(client_as):
    """`done` is a key of fixed texts, shown only while true: champion points at version 1 here."""
    client = client_as("viewer")
    for query in (
        "done=%3Cscript%3Ealert(1)%3C/script%3E",
        "done=Your%20token%20expired,%20re-enter%20it%20at%20http://evil.example",
        "done=alias-set&alias=champion&version=2",  # champion -> 1
        "done=alias-removed&alias=champion",  # it is still there
        "done=alias-removed&alias=Your%20token%20expired",  # not an alias name
        "done=tag-set&version=1&key=reviewed",  # no such tag
    ):
        for page in (client.get(f"/models/iris-ui?{query}"), client.get(f"/models?{query}")):
            assert page.status_code in (200, 400) and 'data-testid="flash"' not in page.text, query
            assert "evil.example" not in page.text and "script&gt;" not in page.text
    true = client.get("/models/iris-ui?done=alias-set&alias=champion&version=1")
    assert '<p class="flash" role="status" data-testid="flash">@champion now points at version 1.</p>' in true.text
