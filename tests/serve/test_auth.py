"""Every route × every kind of caller; token expiry and revocation without restart; refusals audited."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa
from _serving import register
from fastapi.testclient import TestClient

from trustforge import secure
from trustforge.errors import SecurityError
from trustforge.secure import _access
from trustforge.serve import ModelService, ServeConfig, create_app

MODEL = "iris-serve"
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
V2_BODY = {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]}
MLFLOW_BODY = {"dataframe_records": [ROW]}

# (method, route template, concrete path, body, action): None is open to anyone.
ROUTES = [
    ("GET", "/v2/health/live", "/v2/health/live", None, None),
    ("GET", "/v2/health/ready", "/v2/health/ready", None, None),
    ("GET", "/ping", "/ping", None, None),
    ("GET", "/docs", "/docs", None, None),
    ("GET", "/openapi.json", "/openapi.json", None, None),
    ("GET", "/docs/oauth2-redirect", "/docs/oauth2-redirect", None, None),
    ("GET", "/redoc", "/redoc", None, None),
    ("GET", "/v2", "/v2", None, "read"),
    ("GET", "/v2/models/{model_name}", f"/v2/models/{MODEL}", None, "read"),
    ("GET", "/v2/models/{model_name}/versions/{model_version}", f"/v2/models/{MODEL}/versions/1", None, "read"),
    ("GET", "/v2/models/{model_name}/ready", f"/v2/models/{MODEL}/ready", None, "read"),
    ("GET", "/v2/models/{model_name}/versions/{model_version}/ready", f"/v2/models/{MODEL}/versions/1/ready", None, "read"),
    ("GET", "/v2/models/{model_name}/config", f"/v2/models/{MODEL}/config", None, "read"),
    ("GET", "/v2/models/{model_name}/versions/{model_version}/config", f"/v2/models/{MODEL}/versions/1/config", None, "read"),
    ("GET", "/v2/models/{model_name}/drift", f"/v2/models/{MODEL}/drift", None, "read"),
    ("GET", "/metrics", "/metrics", None, "read"),
    ("GET", "/health", "/health", None, "read"),
    ("GET", "/version", "/version", None, "read"),
    ("POST", "/v2/models/{model_name}/infer", f"/v2/models/{MODEL}/infer", V2_BODY, "predict"),
    ("POST", "/v2/models/{model_name}/versions/{model_version}/infer", f"/v2/models/{MODEL}/versions/1/infer", V2_BODY, "predict"),
    ("POST", "/invocations", "/invocations", MLFLOW_BODY, "predict"),
]
CALLERS = ["viewer", "trainer", "deployer", "admin", "no-token", "malformed", "unknown", "revoked", "expired"]


@pytest.fixture
def world(packages, registry, tmp_path):
    """(client, service, registry, tokens by caller) for the iris model served with token auth."""
    register(registry, packages["iris"], tmp_path)
    svc = ModelService(f"models:/{MODEL}@champion", ServeConfig(workers=0, auth_cache_s=0), registry=registry).start()
    tokens = {}
    for role in secure.ROLES:
        registry.access.add_user(f"{role}-user", role)
        tokens[role] = registry.access.issue_token(f"{role}-user")
    tokens["malformed"] = "not-a-token"
    tokens["unknown"] = "tfk_0123456789abcdef_" + "A" * 43
    registry.access.add_user("gone-user", "admin")
    tokens["revoked"] = registry.access.issue_token("gone-user")
    registry.access.revoke_token(tokens["revoked"].split("_")[1])
    tokens["expired"] = registry.access.issue_token("gone-user", ttl_days=1e-6)  # 0.09 s
    time.sleep(0.2)
    client = TestClient(create_app(svc))
    yield client, svc, registry, tokens
    svc.close()


def _call(client, method: str, path: str, body, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.request(method, path, json=body, headers=headers)


def test_the_route_table_covers_every_route(world):
    client, *_ = world
    served = {(m, r.path) for r in client.app.routes for m in getattr(r, "methods", ()) if m not in ("HEAD",)}
    assert served == {(m, t) for m, t, *_ in ROUTES}


@pytest.mark.parametrize("caller", CALLERS)
def test_every_route_answers_each_caller_as_the_policy_says(world, caller):
    client, _, registry, tokens = world
    token = tokens.get(caller)
    last_seq = max((e["seq"] for e in registry.audit.entries(limit=1)), default=0)
    denials = 0
    for method, template, path, body, action in ROUTES:
        r = _call(client, method, path, body, token)
        if action is None:
            assert r.status_code == 200, (caller, path, r.text)
        elif caller in secure.ROLES:
            expected = 200 if secure.allowed(caller, action) else 403
            assert r.status_code == expected, (caller, path, r.text)
            denials += expected == 403
        else:
            assert r.status_code == 401, (caller, path, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "error" in r.json() or "error_code" in r.json()
            denials += 1
    # Refusals are counted, not written one by one: nothing is on the record until the window closes.
    assert [e for e in registry.audit.entries(limit=100_000) if e["seq"] > last_seq] == []
    client.app.state.auth.limiter.flush()
    entries = [e for e in registry.audit.entries(limit=100_000) if e["seq"] > last_seq]
    refused = [e for e in entries if e["outcome"] == "denied"]
    if denials:
        (entry,) = refused  # one entry for this source and window, with the count
        details = entry["details"]
        assert entry["action"] == "serve_denials" and details["source"] == "testclient"
        assert details["refused"] == denials and details["limited"] == 0
        assert sum(details["routes"].values()) == denials
        reason = {"no-token": "no bearer token", "unknown": "unknown or wrong"}.get(caller, caller)
        assert details["reasons"] == {reason: denials}
    else:
        assert refused == []
    if token:
        assert token.split("_", 2)[-1] not in str(entries)  # the secret (43 characters, may hold "_") is never logged


def test_a_role_the_policy_does_not_allow_gets_403_and_is_audited(world, monkeypatch):
    """POLICY is the single source: take `predict` from viewers and the server refuses them."""
    client, _, registry, tokens = world
    monkeypatch.setitem(_access.POLICY, "viewer", frozenset({"read"}))
    r = _call(client, "POST", "/invocations", MLFLOW_BODY, tokens["viewer"])
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
    assert "may not predict" in r.json()["message"]
    r = _call(client, "POST", f"/v2/models/{MODEL}/infer", V2_BODY, tokens["viewer"])
    assert r.status_code == 403 and "may not predict" in r.json()["error"]
    assert _call(client, "GET", f"/v2/models/{MODEL}", None, tokens["viewer"]).status_code == 200
    client.app.state.auth.limiter.flush()
    last = registry.audit.entries(limit=1)[0]
    assert (last["actor"], last["action"], last["outcome"], last["object"]) == (
        "viewer-user",
        "serve_denials",
        "denied",
        f"models:/{MODEL}",
    )
    assert last["details"]["refused"] == 2 and last["details"]["reasons"] == {"role viewer may not predict": 2}


def test_expiry_and_revocation_take_effect_without_a_restart(world):
    client, _, registry, _ = world
    registry.access.add_user("app", "viewer")
    token = registry.access.issue_token("app", ttl_days=1.5 / 86400)  # 1.5 s
    assert _call(client, "POST", "/invocations", MLFLOW_BODY, token).status_code == 200
    time.sleep(1.6)
    r = _call(client, "POST", "/invocations", MLFLOW_BODY, token)
    assert r.status_code == 401 and "expired" in r.json()["message"]

    token = registry.access.issue_token("app")
    assert _call(client, "POST", "/invocations", MLFLOW_BODY, token).status_code == 200
    registry.access.revoke("app")
    r = _call(client, "POST", "/invocations", MLFLOW_BODY, token)
    assert r.status_code == 401 and "revoked" in r.json()["message"]


def test_a_token_revived_by_a_database_write_is_refused(world):
    client, _, registry, _ = world
    registry.access.add_user("app", "viewer")
    token = registry.access.issue_token("app")
    registry.access.revoke_token(token.split("_")[1])
    with registry.engine.begin() as conn:  # someone with the database but not the keys
        conn.execute(sa.text("UPDATE access_tokens SET revoked = NULL WHERE id = :id"), {"id": token.split("_")[1]})
    r = _call(client, "POST", "/invocations", MLFLOW_BODY, token)
    assert r.status_code == 401 and "has no valid seal" in r.json()["message"]


def test_the_token_cache_delays_revocation_by_at_most_its_lifetime(packages, registry, tmp_path):
    register(registry, packages["iris"], tmp_path)
    svc = ModelService(f"models:/{MODEL}@champion", ServeConfig(workers=0, auth_cache_s=0.5), registry=registry).start()
    try:
        client = TestClient(create_app(svc))
        registry.access.add_user("app", "viewer")
        token = registry.access.issue_token("app")
        assert _call(client, "GET", "/v2", None, token).status_code == 200
        registry.access.revoke_token(token.split("_")[1])
        time.sleep(0.6)
        assert _call(client, "GET", "/v2", None, token).status_code == 401
    finally:
        svc.close()


def test_no_auth_is_refused_beyond_loopback_unless_insecure_on_purpose(packages, registry, tmp_path, caplog):
    ServeConfig(host="127.0.0.1", auth="none").check_binding()
    ServeConfig(host="::1", auth="none").check_binding()
    for host in ("0.0.0.0", "10.1.2.3", "example.org"):
        with pytest.raises(SecurityError, match="--insecure-no-auth"):
            ServeConfig(host=host, auth="none").check_binding()
        ServeConfig(host=host, auth="insecure").check_binding()  # the operator said so
        ServeConfig(host=host, auth="token").check_binding()

    register(registry, packages["iris"], tmp_path)
    svc = ModelService(f"models:/{MODEL}@champion", ServeConfig(workers=0, auth="insecure"), registry=registry).start()
    try:
        client = TestClient(create_app(svc))
        with caplog.at_level(logging.WARNING, logger="trustforge.serve"):
            for _ in range(3):
                assert client.post("/invocations", json=MLFLOW_BODY).status_code == 200
        warnings = [r for r in caplog.records if getattr(r, "event", None) == "insecure_no_auth"]
        assert len(warnings) == 3
    finally:
        svc.close()


def test_a_revoked_or_expired_tokens_refusals_name_its_user_and_id_never_its_secret(world):
    client, _, registry, tokens = world
    last_seq = registry.audit.entries(limit=1)[0]["seq"]
    for caller in ("revoked", "expired", "revoked"):
        assert _call(client, "GET", "/v2", None, tokens[caller]).status_code == 401
    client.app.state.auth.limiter.flush()
    (entry,) = [e for e in registry.audit.entries(limit=100) if e["seq"] > last_seq]
    details = entry["details"]
    assert entry["action"] == "serve_denials" and entry["actor"] == "gone-user"
    assert details["actors"] == {"gone-user": 3} and details["reasons"] == {"revoked": 2, "expired": 1}
    revoked_id, expired_id = tokens["revoked"].split("_")[1], tokens["expired"].split("_")[1]
    assert details["tokens"] == {revoked_id: 2, expired_id: 1}
    for caller in ("revoked", "expired"):
        assert tokens[caller].split("_", 2)[-1] not in str(entry)


def test_an_unknown_tokens_refusal_names_no_one(world):
    client, _, registry, tokens = world
    last_seq = registry.audit.entries(limit=1)[0]["seq"]
    assert _call(client, "GET", "/v2", None, tokens["unknown"]).status_code == 401
    client.app.state.auth.limiter.flush()
    (entry,) = [e for e in registry.audit.entries(limit=100) if e["seq"] > last_seq]
    assert entry["actor"] == "anonymous" and entry["details"]["tokens"] == {}  # an id anyone can make up
