"""Per-caller rate limits and daily quotas (429 + Retry-After), their metrics and aggregated audit
entries, the probing alert, bad flag values, and 10,000 unauthenticated requests -> a bounded
number of audit entries. Everything runs in process (TestClient or raw ASGI calls) with fake
clocks where time matters."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from trustforge.cli import app as cli_app
from trustforge.errors import SpecError
from trustforge.serve import Auth, ModelService, ProbeDetector, QuotaLimiter, RateLimited, ServeConfig, create_app, parse_rate
from trustforge.serve._limits import SourceLimiter
from trustforge.settings import Settings

COLS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROW = dict(zip(COLS, [5.1, 3.5, 1.4, 0.2]))
IRIS_SPEC = {
    "name": "quota-iris",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [8]},
    "train": {"max_epochs": 2, "seed": 1},
    "evaluate": {"speed": False, "corruptions": False, "explain": False},
}
IRIS = load_iris().data.astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small iris model registered in a workspace of its own: (settings, model URI)."""
    from trustforge.pipeline import run

    settings = Settings.from_env(tmp_path_factory.mktemp("quota") / "ws")
    return settings, run(IRIS_SPEC, settings=settings, progress=False).model_uri


@pytest.fixture
def served(trained):
    """A factory: (TestClient, service, {user: token}) for the iris model under `ServeConfig(**options)`."""
    settings, uri = trained
    services = []

    def make(**options):
        svc = ModelService(uri, ServeConfig(**{"workers": 0, **options}), settings=settings).start()
        services.append(svc)
        tokens = {}
        for user in ("alice", "bob"):
            if user not in {u["name"] for u in svc.registry.access.list_users()}:
                svc.registry.access.add_user(user, "viewer")
            tokens[user] = {"Authorization": f"Bearer {svc.registry.access.issue_token(user)}"}
        return TestClient(create_app(svc)), svc, tokens

    yield make
    for svc in services:
        svc.close()


def _infer(client, headers, rows=(ROW,)):
    body = {"inputs": [{"name": c, "shape": [len(rows)], "datatype": "FP64", "data": [r[c] for r in rows]} for c in COLS]}
    return client.post("/v2/models/quota-iris/infer", json=body, headers=headers)


def _last_seq(audit) -> int:
    return max(e["seq"] for e in audit.entries(limit=1))


# ---------------------------------------------------------------------------- rate limit


def test_one_token_past_its_rate_limit_gets_429_with_retry_after_while_another_is_served(served):
    client, svc, tokens = served(rate_limit=0.01, burst=3)  # 3 at once, then one per 100 s
    alice, bob = tokens["alice"], tokens["bob"]
    assert [_infer(client, alice).status_code for _ in range(3)] == [200, 200, 200]
    r = _infer(client, alice)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 100
    assert "rate limit of 36 requests/h" in r.json()["error"]  # the v2 error form (0.01/s)
    r = client.post("/invocations", json={"dataframe_records": [ROW]}, headers=alice)
    assert r.status_code == 429 and r.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"  # MLflow's form
    assert _infer(client, bob).status_code == 200  # another token is served
    # metadata and metrics are not counted: alice may still read them
    assert client.get("/v2/models/quota-iris", headers=alice).status_code == 200
    metrics = client.get("/metrics", headers=alice).text
    assert 'trustforge_rate_limited_total{reason="rate"} 2.0' in metrics
    assert 'trustforge_rate_limited_total{reason="quota"} 0.0' in metrics
    assert "alice" not in metrics and "bob" not in metrics  # no caller in the labels


def test_the_bucket_refills_at_the_rate():
    t = [0.0]
    quota = QuotaLimiter(2.0, 2, clock=lambda: t[0])
    quota.admit("a"), quota.admit("a")
    with pytest.raises(RateLimited) as exc:
        quota.admit("a")
    assert exc.value.reason == "rate" and exc.value.retry_after == 1
    t[0] = 0.5  # half a second at 2/s: one request earned back, not two
    quota.admit("a")
    with pytest.raises(RateLimited):
        quota.admit("a")
    assert QuotaLimiter(5.0).burst == 5  # default burst: one second's worth


def test_the_daily_quota_renews_at_utc_midnight_and_refusals_do_not_use_it(served):
    client, svc, tokens = served(daily_quota=2)
    quota = client.app.state.quota
    day = 20_000 * 86_400
    now = [day + 86_400 - 30.0]  # 23:59:30 UTC
    quota._wall = lambda: now[0]
    alice = tokens["alice"]
    assert [_infer(client, alice).status_code for _ in range(2)] == [200, 200]
    r = _infer(client, alice)
    assert r.status_code == 429 and r.headers["retry-after"] == "30"  # until 00:00 UTC
    assert "daily quota of 2 requests" in r.json()["error"]
    assert quota.used_today("alice") == 2  # the refused request did not count
    assert _infer(client, tokens["bob"]).status_code == 200
    now[0] = day + 86_400 + 1.0  # the next UTC day
    assert _infer(client, alice).status_code == 200 and quota.used_today("alice") == 1
    assert 'trustforge_rate_limited_total{reason="quota"} 1.0' in client.get("/metrics", headers=alice).text


def test_429s_are_audited_once_per_caller_per_window(served):
    client, svc, tokens = served(rate_limit=0.01, burst=1)
    audit = svc.registry.audit
    assert _infer(client, tokens["alice"]).status_code == 200
    before = _last_seq(audit)
    codes = [_infer(client, tokens["alice"]).status_code for _ in range(40)] + [_infer(client, tokens["bob"]).status_code for _ in range(2)]
    assert codes == [429] * 40 + [200, 429]
    assert _last_seq(audit) == before  # nothing written per request
    client.app.state.quota.flush()
    entries = [e for e in audit.entries(limit=10) if e["seq"] > before and e["action"] == "serve_rate_limited"]
    by_actor = {e["actor"]: e["details"] for e in entries}
    assert sorted(by_actor) == ["alice", "bob"] and len(entries) == 2
    assert (by_actor["alice"]["rate"], by_actor["alice"]["quota"], by_actor["bob"]["rate"]) == (40, 0, 1)
    assert all(e["outcome"] == "denied" and e["object"] == svc.source.object for e in entries)


def test_the_last_window_and_pending_alerts_are_audited_when_the_app_shuts_down(trained):
    # Startup, requests and shutdown through the app's lifespan: nothing flushes by hand, and the
    # window (60 s) has not ended, so only the close hook can write these entries.
    from trustforge.registry import Registry

    settings, uri = trained
    svc = ModelService(uri, ServeConfig(workers=0, daily_quota=3), settings=settings)
    tokens = {}
    for user in ("alice", "bob"):
        if user not in {u["name"] for u in svc.registry.access.list_users()}:
            svc.registry.access.add_user(user, "viewer")
        tokens[user] = {"Authorization": f"Bearer {svc.registry.access.issue_token(user)}"}
    before = _last_seq(svc.registry.audit)
    rng = np.random.default_rng(1)
    varied = [dict(zip(COLS, map(float, IRIS[i]))) for i in rng.permutation(len(IRIS))[:120]]
    probe = [dict(zip(COLS, [5.1, 3.5, 1.4, 0.2 + 1e-3 * i])) for i in range(60)]
    with TestClient(create_app(svc, manage=True)) as client:
        codes = [_infer(client, tokens["bob"], varied[i : i + 60]).status_code for i in (0, 60)]
        codes += [_infer(client, tokens["alice"], probe).status_code for _ in range(5)]
    assert codes == [200] * 5 + [429] * 2
    with Registry(settings) as registry:
        entries = [e for e in registry.audit.entries(limit=50) if e["seq"] > before]
    limited = [(e["actor"], e["details"]["quota"]) for e in entries if e["action"] == "serve_rate_limited"]
    alerts = [e["actor"] for e in entries if e["action"] == "serve_probe_alert"]
    assert limited == [("alice", 2)] and alerts == ["alice"]


def test_without_tokens_each_address_is_a_caller(trained):
    settings, uri = trained
    svc = ModelService(uri, ServeConfig(workers=0, auth="none", rate_limit=0.01, burst=1), settings=settings).start()
    try:
        app = create_app(svc)
        assert TestClient(app, client=("127.0.0.2", 50000)).post("/invocations", json={"dataframe_records": [ROW]}).status_code == 200
        assert TestClient(app, client=("127.0.0.2", 50001)).post("/invocations", json={"dataframe_records": [ROW]}).status_code == 429
        assert TestClient(app, client=("127.0.0.3", 50000)).post("/invocations", json={"dataframe_records": [ROW]}).status_code == 200
    finally:
        svc.close()


def test_limits_off_by_default_and_memory_stays_bounded():
    quota = QuotaLimiter()
    assert not quota.enabled
    for _ in range(1000):
        quota.admit("a")  # no limit: never refused
    t = [0.0]
    quota = QuotaLimiter(1.0, 1, daily=5, max_principals=100, clock=lambda: t[0])
    for i in range(10_000):
        try:
            quota.admit(f"caller-{i}")
        except RateLimited:
            pass
    assert len(quota._buckets) <= 100 and len(quota._days) <= 101


# ---------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    "args, words",
    [
        (["--rate-limit", "0"], "--rate-limit must be a number of requests > 0"),
        (["--rate-limit", "-3/s"], "--rate-limit must be a number of requests > 0"),
        (["--rate-limit", "fast"], "--rate-limit must look like 20/s"),
        (["--rate-limit", "5/fortnight"], "--rate-limit must look like 20/s"),
        (["--rate-limit", "10/s", "--burst", "0"], "burst (--burst) must be a whole number in [1, 1000000]; got 0"),
        (["--burst", "5"], "burst (--burst) needs rate_limit (--rate-limit)"),
        (["--daily-quota", "0"], "daily_quota (--daily-quota) must be a whole number in [1, 1e9]; got 0"),
        (["--daily-quota", "-1"], "daily_quota (--daily-quota) must be a whole number"),
    ],
)
def test_bad_limit_flags_are_one_line_errors_naming_the_flag(args, words):
    result = CliRunner().invoke(cli_app, ["serve", "models:/quota-iris@champion", *args])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], result.output


def test_rates_parse_per_second_minute_and_hour():
    assert parse_rate("20/s") == 20 and parse_rate("600/min") == 10 and parse_rate("7200/h") == 2 and parse_rate("2.5") == 2.5
    assert parse_rate(None) is None
    with pytest.raises(SpecError, match="--rate-limit"):
        parse_rate("inf/s")


@pytest.mark.parametrize(
    ("flag", "says"), [("2/min", "2 requests/min"), ("1/min", "1 request/min"), ("5/h", "5 requests/h"), ("20/s", "20 requests/s")]
)
def test_the_429_message_gives_the_rate_in_the_unit_it_was_set_in(flag, says):
    # 2/min read "0.0333333 requests/s".
    limiter = QuotaLimiter(parse_rate(flag), burst=1, clock=lambda: 0.0)
    limiter.admit("alice")
    with pytest.raises(RateLimited) as refused:
        limiter.admit("alice")
    assert f"rate limit of {says} reached" in str(refused.value)


# ---------------------------------------------------------------------------- probing alert


def _warm(det: ProbeDetector, rng, rows: int = 200) -> None:
    """Ordinary traffic from three callers: varied iris-like rows (never the same flower twice)."""
    for i in range(rows):
        det.observe(f"ordinary-{i % 3}", rng.normal(IRIS.mean(axis=0), IRIS.std(axis=0)).astype(np.float32)[None])


def test_a_burst_of_near_duplicates_alerts_once_per_window_and_varied_traffic_does_not():
    t = [0.0]
    det = ProbeDetector(clock=lambda: t[0])
    rng = np.random.default_rng(0)
    base, std = IRIS[70], IRIS.std(axis=0)
    _warm(det, rng)
    kinds = [det.observe("mallory", (base + rng.normal(0, 0.02, 4).astype(np.float32) * std)[None]) for _ in range(100)]
    fired = [i for i, k in enumerate(kinds) if k]
    assert [kinds[i] for i in fired] == ["near_duplicate"] and fired[0] <= 70  # within 70 requests, once
    _warm(det, rng, 400)  # more ordinary traffic in the same window
    ordinary = [c for c in det._callers.values() if c is not det._callers["mallory"]]
    assert all(c.near < 0.5 * c.rows for c in ordinary) and [a["actor"] for a in det.take_alerts()] == ["mallory"]
    assert det.alerts.labels("near_duplicate")._value.get() == 1
    t[0] = 61.0  # the next window: a new burst alerts again
    kinds = [det.observe("mallory", (base + rng.normal(0, 0.02, 4).astype(np.float32) * std)[None]) for _ in range(100)]
    assert kinds.count("near_duplicate") == 1
    (alert,) = det.take_alerts()
    assert alert["action"] == "serve_probe_alert" and set(alert["details"]) >= {"rows", "near_duplicates", "ood"}
    assert "5.1" not in json.dumps(alert)  # counts only, never input values


def test_finite_difference_and_noisy_queries_on_an_image_alert_and_varied_digits_do_not():
    from sklearn.datasets import load_digits

    images = (load_digits().images[:, None] / 16).astype(np.float32)  # (N, 1, 8, 8): 64 features, projected onto 32
    det = ProbeDetector(clock=lambda: 0.0)
    for i in range(300):
        det.observe(f"ordinary-{i % 3}", images[i : i + 1])
    assert all(c.near < 0.1 * c.rows for c in det._callers.values())  # distinct handwritten digits are not near-duplicates
    x = images[400]
    kinds = []
    for i in range(64):  # one pixel nudged by 0.05 at a time, both ways: a gradient estimate
        for h in (0.05, -0.05):
            probe = x.copy()
            probe[0].flat[i] = np.clip(probe[0].flat[i] + h, 0, 1)
            kinds.append(det.observe("mallory", probe[None]))
    assert kinds.count("near_duplicate") == 1
    rng = np.random.default_rng(1)
    noisy = [np.clip(images[500] + 0.02 * rng.choice([-1, 1], x.shape), 0, 1).astype(np.float32)[None] for _ in range(100)]
    assert [det.observe("eve", q) for q in noisy].count("near_duplicate") == 1  # every pixel moved by +-0.02 of its range
    assert det._callers["eve"].near >= 80


@pytest.mark.parametrize("loader", ["load_iris", "load_wine", "load_breast_cancer", "load_digits"])
def test_distinct_rows_in_random_order_are_rarely_near_duplicates(loader):
    import sklearn.datasets

    data = getattr(sklearn.datasets, loader)().data.astype(np.float32)
    det = ProbeDetector(clock=lambda: 0.0)
    for i in np.random.default_rng(0).permutation(len(data))[:600]:
        assert det.observe("app", data[i : i + 1]) is None
    caller = det._callers["app"]
    assert caller.near <= 0.15 * caller.rows  # README: 0-13 %; an alert needs half


def test_out_of_distribution_counts_alert_and_alerts_are_capped_per_window():
    det = ProbeDetector(clock=lambda: 0.0, ood_min=20, max_alerts=3)
    assert [det.observe("eve", IRIS[i : i + 1], ood_count=5) for i in range(4)] == [None, None, None, "ood"]
    for caller in range(10):  # ten callers probing at once: three alerts, not ten
        for i in range(4):
            det.observe(f"c{caller}", IRIS[i : i + 1], ood_count=5)
    assert len(det.take_alerts()) == 3 and det.alerts.labels("ood")._value.get() == 3


def test_categories_texts_and_changing_layouts_are_compared_or_skipped_never_raised():
    det = ProbeDetector(clock=lambda: 0.0, warmup=10, batch_rows=4, near_min=8)
    rng = np.random.default_rng(3)
    for i in range(20):  # ordinary: varied ages, incomes and colours
        row = {"age": np.array([rng.normal(50, 10)]), "income": np.array([rng.normal(3000, 800)])}
        det.observe("ok", {**row, "color": np.array([["red", "green", "blue"][i % 3]], dtype=object)})
    same = {"age": np.array([50.0]), "income": np.array([3000.0]), "color": np.array(["red"], dtype=object)}
    kinds = [det.observe("repeat", same) for _ in range(12)]
    assert "near_duplicate" in kinds and det._callers["ok"].near < 0.5 * det._callers["ok"].rows
    other_colour = [det.observe("colours", {**same, "color": np.array([c], dtype=object)}) for c in "abcdefghijkl"]
    assert not any(other_colour)  # a different category is far, not a near-duplicate
    det.observe("odd", np.zeros((3, 2, 2), np.float32))  # another layout: statistics start afresh
    det.observe("odd", {"when": np.array(["2026-01-01"], dtype="datetime64[D]"), "x": np.array([1.0])})
    det.observe("odd", {})
    assert det.skipped == 0


def test_the_served_app_audits_a_probing_token_once(served):
    client, svc, tokens = served()
    audit = svc.registry.audit
    before = _last_seq(audit)
    rng = np.random.default_rng(1)
    varied = [dict(zip(COLS, map(float, IRIS[i]))) for i in rng.permutation(len(IRIS))[:120]]
    for start in (0, 60):  # the warm-up: ordinary rows from bob
        assert _infer(client, tokens["bob"], varied[start : start + 60]).status_code == 200
    probe = [dict(zip(COLS, [5.1, 3.5, 1.4, 0.2 + 1e-3 * i])) for i in range(60)]
    for _ in range(2):
        assert _infer(client, tokens["alice"], probe).status_code == 200
    client.app.state.quota.flush()
    alerts = [e for e in audit.entries(limit=20) if e["seq"] > before and e["action"] == "serve_probe_alert"]
    assert [(e["actor"], e["details"]["kind"]) for e in alerts] == [("alice", "near_duplicate")]
    assert 'trustforge_probe_alerts_total{kind="near_duplicate"} 1.0' in client.get("/metrics", headers=tokens["bob"]).text


def test_observe_costs_microseconds_per_request():
    det = ProbeDetector(clock=time.monotonic)
    rng = np.random.default_rng(2)
    _warm(det, rng)
    payloads = [{c: IRIS[i : i + 1, j].astype(np.float64) for j, c in enumerate(COLS)} for i in range(150)]
    started = time.perf_counter()
    for i in range(3000):
        det.observe("caller", payloads[i % 150])
    per_request_us = (time.perf_counter() - started) / 3000 * 1e6
    print(f"observe: {per_request_us:.1f} us/request")
    assert per_request_us < 200  # generous for a loaded CI machine; bench/probe_detector.py has the figure


# ---------------------------------------------------------------------------- the unauthenticated flood


async def _asgi_post(app, path: str, body: bytes, client: tuple[str, int]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": client,
        "server": ("testserver", 80),
    }
    status = []
    received = False

    async def receive():
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


@pytest.mark.parametrize("sources", [1, 10_000])
def test_10000_unauthenticated_requests_write_a_bounded_number_of_audit_entries(trained, sources):
    settings, uri = trained
    svc = ModelService(uri, ServeConfig(workers=0), settings=settings).start()
    try:
        audit = svc.registry.audit
        limiter = SourceLimiter(audit, svc.source.object, hold_s=0, max_sources=100)  # no 0.2 s hold: the test stays fast
        app = create_app(svc, Auth(svc.registry.access, audit, "token", obj=svc.source.object, limiter=limiter))
        body = json.dumps({"dataframe_records": [ROW]}).encode()
        before = _last_seq(audit)

        async def flood():
            addresses = [f"10.{a // 65536}.{a // 256 % 256}.{a % 256}" for a in (i % sources for i in range(10_000))]
            return [await _asgi_post(app, "/invocations", body, (address, 4000)) for address in addresses]

        codes = asyncio.run(flood())
        assert set(codes) <= {401, 429} and len(codes) == 10_000
        assert _last_seq(audit) == before  # nothing written per request
        limiter.flush()
        entries = [e for e in audit.entries(limit=500) if e["seq"] > before]
        assert {e["action"] for e in entries} == {"serve_denials"}
        assert len(entries) <= 101  # one per source (at most max_sources, then one shared), not 10,000
        assert sum(e["details"]["refused"] + e["details"]["limited"] for e in entries) == 10_000  # every request counted
        if sources == 1:
            assert len(entries) == 1 and codes.count(429) >= 9_900
    finally:
        svc.close()


def test_an_ood_alert_counts_every_row_its_ood_count_is_taken_from():
    # A 200-row request is compared for near-duplicates by its first 64 rows only, but the
    # guard flags among all 200: the alert's `rows` is what `ood` counts among (never fewer).
    det = ProbeDetector(clock=lambda: 0.0)
    rng = np.random.default_rng(0)
    batch = rng.normal(IRIS.mean(axis=0), IRIS.std(axis=0), (200, 4)).astype(np.float32)
    assert det.observe("mallory", batch, ood_count=150) == "ood"
    (alert,) = det.take_alerts()
    details = alert["details"]
    assert details["kind"] == "ood" and details["ood"] == 150 and details["rows"] == 200 and details["compared_rows"] == 64
    assert details["ood"] <= details["rows"]
