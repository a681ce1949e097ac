"""The inference routes dispatched before Starlette's stack answer exactly as through it; the plain
`dataframe_split` parse accepts only what `ScoringRequest` accepts, and reads it the same."""

from __future__ import annotations

import json

import orjson
import pytest
from _serving import register
from fastapi.testclient import TestClient
from pydantic import ValidationError

from trustforge.serve import ModelService, ServeConfig, create_app
from trustforge.serve._app import _ServerApp
from trustforge.serve._protocol import _plain_split
from trustforge.serve._schemas import ScoringRequest

_BODIES = [
    {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, None]]}},
    {"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [0]}, "params": {"k": 1}},
    {"dataframe_split": {"columns": ["a"], "data": [[1]], "index": None}, "params": None},
    {"dataframe_split": {"columns": ["a"], "data": [[1]]}, "other": 1},  # extra field: pydantic ignores it (here: not plain)
    {"dataframe_split": {"columns": ["a"], "data": [[1]], "extra": 1}},
    {"dataframe_split": {"columns": [], "data": [[1]]}},
    {"dataframe_split": {"columns": ["a"], "data": []}},
    {"dataframe_split": {"columns": [1], "data": [[1]]}},
    {"dataframe_split": {"columns": ["a"], "data": [1]}},
    {"dataframe_split": {"columns": ["a"], "data": [[1]], "index": 3}},
    {"dataframe_split": {"columns": ["a"], "data": [[1]]}, "params": [1]},
    {"dataframe_split": {"columns": ["a"], "data": [[1]]}, "instances": [[1]]},
    {"dataframe_split": None},
    {"dataframe_split": "x"},
    {"instances": [[1, 2]]},
    [1, 2],
    "text",
]


@pytest.mark.parametrize(
    "body", [json.dumps(b).encode() for b in _BODIES] + [b"{", b'{"dataframe_split": {"columns": ["a"], "data": [[NaN]]}}']
)
def test_the_plain_split_accepts_only_what_the_model_accepts(body):
    plain = _plain_split(body)
    try:
        full = ScoringRequest.model_validate_json(body)
    except ValidationError:
        assert plain is None
        return
    if plain is not None:
        assert plain.format == full.format == "dataframe_split"
        assert plain.dataframe_split.columns == full.dataframe_split.columns
        assert plain.params == full.params  # refused by `parse_scoring` unless empty, on both parses
        assert orjson.dumps(plain.dataframe_split.data) == orjson.dumps(full.dataframe_split.data)
    else:  # only bodies orjson does not read (NaN literals) or with a field the plain parse does not know fall back
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        assert set(obj) - {"dataframe_split", "params"} or set(obj["dataframe_split"]) - {"columns", "data", "index"}


@pytest.fixture
def served(packages, registry, tmp_path):
    register(registry, packages["iris"], tmp_path)
    registry.access.add_user("caller", "viewer")
    token = registry.access.issue_token("caller")
    svc = ModelService("models:/iris-serve@champion", ServeConfig(workers=0), registry=registry).start()
    yield svc, token
    svc.close()


def _exchanges(client: TestClient, token: str, columns: list[str]) -> list[tuple]:
    auth = {"Authorization": f"Bearer {token}"}
    row = {"dataframe_split": {"columns": columns, "data": [[5.0] * len(columns)]}}
    v2 = {"inputs": [{"name": c, "datatype": "FP64", "shape": [1], "data": [5.0]} for c in columns]}
    calls = [
        ("/invocations", row, auth),
        ("/invocations", row, {}),  # no token: 401
        ("/invocations", row, {"Authorization": "Bearer tfk_nonsense"}),  # 401
        ("/invocations", {"dataframe_split": {"columns": columns[:1], "data": [[5.0]]}}, auth),  # 400 naming the column
        ("/invocations", {"dataframe_split": {"columns": columns, "data": [["x"] * len(columns)]}}, auth),  # 400
        ("/v2/models/iris-serve/infer", v2, auth),
        ("/v2/models/iris-serve/versions/1/infer", v2, auth),
        ("/v2/models/iris-serve/versions/9/infer", v2, auth),  # 404
        ("/v2/models/other/infer", v2, auth),  # 404
        ("/v2/models/" + "n" * 300 + "/infer", v2, auth),  # 400: path parameter too long
        ("/v2/models/iris-serve/infer", {"inputs": "x"}, auth),  # 400
        ("/invocations/", row, auth),  # not an inference route: the router redirects it
    ]
    out = []
    for path, body, headers in calls:
        r = client.post(path, json=body, headers=headers, follow_redirects=False)
        out.append((path[:40], r.status_code, r.content, r.headers.get("content-type"), "x-request-id" in r.headers))
    r = client.post("/invocations", content=b"a,b\n1,2", headers={**auth, "Content-Type": "text/plain"})
    out.append(("415", r.status_code, r.content, r.headers.get("content-type"), "x-request-id" in r.headers))
    return out


def test_direct_dispatch_answers_as_the_router(served, monkeypatch):
    svc, token = served
    columns = [s.name for s in svc.current.signature.inputs]
    direct = []
    dispatch = _ServerApp._dispatch

    async def spy(self, scope, receive, send):
        direct.append(scope["path"])
        await dispatch(self, scope, receive, send)

    monkeypatch.setattr(_ServerApp, "_dispatch", spy)
    fast = create_app(svc)
    with TestClient(fast) as client:
        got = _exchanges(client, token, columns)
        again = _exchanges(client, token, columns)  # the routes found for these paths are remembered
    assert len(direct) == 24  # every inference call but the unknown route went the direct way
    assert again == got
    text = fast.state.metrics.render().decode()  # the same metrics as the router's way (counted once each, two rounds)
    assert 'trustforge_responses_total{route="/invocations",status="401"} 4.0' in text
    assert 'trustforge_request_duration_seconds_count{method="POST",route="/v2/models/{model_name}/infer"} 8.0' in text
    slow = create_app(svc)
    slow._post_routes = []  # as an app with other middleware: everything through Starlette's stack
    with TestClient(slow) as client:
        want = _exchanges(client, token, columns)
    assert len(direct) == 24
    assert got == want
    statuses = [g[1] for g in got]
    assert statuses == [200, 401, 401, 400, 400, 200, 200, 404, 404, 400, 400, 307, 415] and all(g[4] for g in got)


def test_direct_routes_remembered_per_path_stay_right_past_the_bound(served):
    """Paths are the clients' choice: the remembered routes are bounded, and each request gets
    its own path parameters."""
    svc, token = served
    app = create_app(svc)
    auth = {"Authorization": f"Bearer {token}"}
    v2 = {"inputs": [{"name": s.name, "datatype": "FP64", "shape": [1], "data": [5.0]} for s in svc.current.signature.inputs]}
    with TestClient(app) as client:
        for i in range(300):
            r = client.post(f"/v2/models/m{i}/infer", json=v2, headers=auth)
            assert r.status_code == 404 and f"m{i}" in r.json()["error"]
        assert len(app._matched) <= 256
        for path in ("/v2/models/iris-serve/infer", "/v2/models/iris-serve/versions/1/infer", "/invocations"):
            for _ in range(2):
                body = v2 if path.startswith("/v2") else {"dataframe_split": {"columns": list(v2["inputs"][0]), "data": [[1]]}}
                r = client.post(path, json=body, headers=auth)
                assert r.status_code == (200 if path.startswith("/v2") else 400), r.text
        r = client.post("/v2/models/iris-serve/versions/7/infer", json=v2, headers=auth)
        assert r.status_code == 404 and "'7'" in r.json()["error"]
