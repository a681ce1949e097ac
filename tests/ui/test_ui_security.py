"""The dashboard's security matrix, over every route the app has (read from `app.routes`, so the
routes of every page module are covered as they are added):

- every route but `/` and `/signin` names its action through `needs(action)`;
- each page x {no session, viewer, trainer, deployer, admin}: 303 to the sign-in page, 200 or
  403 exactly as `secure.allowed(role, action)` says;
- each change x role with a valid CSRF token: allowed roles succeed, the others get 403, an
  audited denial, and nothing changes; without a session: 401;
- CSRF missing, wrong or another session's, an Origin of another site, a body of another type:
  403/415 and nothing changes;
- traversal and junk in every path and query parameter: never 500, never content from outside;
- on every answer above (errors and redirects included): the Content-Security-Policy without
  'unsafe-inline', and neither a token's secret nor the workspace's local path;
- the session cookie's flags, sign-in CSRF and Origin, the open-redirect guard, session
  fixation, the sign-in limiter, and the 500 page.

A route added later needs a line in SAMPLE_PATH (its path parameters), SAMPLE_QUERY (a query its
page cannot do without) or FORMS (its form): the tests fail naming what is missing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

import anyio
import pytest
import sqlalchemy as sa
from _ui import ROLES, csrf_of, signed_in_client
from fastapi.routing import APIRoute
from starlette.routing import Mount

from trustforge import secure

EXEMPT = {"/", "/signin"}  # no action: the way in
EVERYONE = (None, *ROLES)
OUTSIDE = "CANARY-outside-the-runs-folder-7f3a"  # planted outside runs/: must never be served
SAMPLE_USER = "matrix-user"


# Sample values of path parameters, by name (and, for `name`, by the page it belongs to).
def _sample_path(ctx: "Ctx", path: str, param: str) -> str:
    if param == "name":
        return ctx.user if path.startswith("/users/") else "iris-ui"
    table = {
        "run": ctx.ws["runs"][0],
        "version": "1",
        "alias": "champion",
        "token_id": ctx.token_id,
        "user": ctx.user,
    }
    if param not in table:
        pytest.fail(f"{path}: add a sample value for the path parameter {param!r} to the security matrix")
    return table[param]


# Query parameters a page needs to answer 200 at all.
def _sample_query(ctx: "Ctx", path: str) -> list[tuple[str, str]]:
    return {"/runs/compare": [("run", ctx.ws["runs"][0]), ("run", ctx.ws["runs"][1])]}.get(path, [])


# The form of each change (besides `csrf`), the status of a success, and what to restore before
# each allowed attempt so that a second allowed role can do the same change again.
@dataclass
class Form:
    data: dict = field(default_factory=dict)
    ok: int = 303
    prepare: object = None  # callable(ctx) or None


FORMS = {
    "/signout": Form(),
    "/users": Form({"role": "viewer"}),  # + a fresh name per attempt
    "/users/{name}/role": Form({"role": "trainer"}),
    "/users/{name}/revoke": Form(prepare=lambda ctx: ctx.reg.access.grant(ctx.user, "viewer")),
    "/users/{name}/tokens": Form({"ttl_days": "7"}, ok=200),  # the answer shows the new token once
    "/tokens/{token_id}/revoke": Form(),
    "/models/{name}/aliases": Form({"alias": "staging", "version": "2"}),
    "/models/{name}/aliases/{alias}/delete": Form(prepare=lambda ctx: ctx.reg.set_alias("iris-ui", "champion", 1)),
    "/models/{name}/versions/{version}/tags": Form({"key": "stage", "value": "qa"}),
}

TRAVERSALS = (
    "..",
    "../..",
    "%2e%2e",
    ".%2e",
    "%2e.",
    "%2e%2e%2f",
    "..%2f..%2fcanary.txt",
    "%2f",
    "a%2fb",
    "%5c",
    "..%5c..%5ccanary.txt",
    "%00",
    "a%00b",
    "%252e%252e%252f",
    "~",
    "%2fetc%2fpasswd",
    "A" * 3000,
)
QUERY_JUNK = (
    "..",
    "../../canary.txt",
    "..\\..\\canary.txt",
    "%2e%2e%2f",
    "/etc/passwd",
    "a\x00b",
    "\\\\server\\share",
    "A" * 5000,
    "-1",
    "0",
    "99999999999999999999",
    "<script>",
)


@dataclass
class Ctx:
    ws: dict
    app: object
    user: str = SAMPLE_USER
    token_id: str = ""
    secrets: list = field(default_factory=list)
    n: int = 0

    @property
    def reg(self):
        return self.ws["registry"]

    def client(self, role):
        return signed_in_client(self.app, self.ws["tokens"][role] if role else None)

    def fresh_user(self) -> None:
        """A new sample user (viewer) with a token: what /users/{name}/... and /tokens/{id}/... act on."""
        self.n += 1
        self.user = f"{SAMPLE_USER}-{self.n}"
        self.reg.access.add_user(self.user, "viewer")
        token = self.reg.access.issue_token(self.user)
        self.token_id = token.split("_")[1]
        self.secrets.append(token.split("_", 2)[2])


@pytest.fixture
def ctx(ui_workspace, ui_app):
    settings = ui_workspace["settings"]
    (settings.home / "canary.txt").write_text(OUTSIDE)
    outside = settings.home / "outside-run"
    outside.mkdir()
    for name in ("report.html", "card.md", "summary.json", "MODEL_CARD.md"):
        (outside / name).write_text(OUTSIDE)
    (settings.runs_dir / "linked-run").symlink_to(outside, target_is_directory=True)
    c = Ctx(ui_workspace, ui_app, secrets=[t.split("_", 2)[2] for t in ui_workspace["tokens"].values()])
    c.fresh_user()
    return c


@dataclass
class _Route:
    """One endpoint: its full path, its route and the actions its router adds (included routers)."""

    path: str
    route: APIRoute
    router_actions: tuple = ()

    @property
    def dependant(self):
        return self.route.dependant


def _walk(routes, prefix: str = "", actions: tuple = ()):
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router (FastAPI >= 0.16x)
        if inner is not None:
            include = getattr(route, "include_context", None)
            deps = getattr(include, "dependencies", None) or []
            more = tuple(a for a in (getattr(d.dependency, "action", None) for d in deps) if a)
            yield from _walk(inner.routes, prefix + (getattr(include, "prefix", "") or ""), actions + more)
        elif isinstance(route, APIRoute):
            yield _Route(prefix + route.path, route, actions)
        elif isinstance(route, Mount) and route.path == "/static":
            continue
        else:
            pytest.fail(f"a route of an unknown kind ({type(route).__name__}): teach the security matrix to read it")


def _routes(app) -> list[tuple[str, str, _Route]]:
    """(method, path, route) of every API route of the app, included routers flattened (the static
    files are a mount of files, not routes)."""
    out = []
    for r in _walk(app.routes):
        for method in sorted(r.route.methods):
            out.append((method, r.path, r))
    return out


def _action(route: _Route) -> str | None:
    """The action of the route's `needs(action)` dependency (its own, a sub-dependency's or its router's)."""
    stack = list(route.route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        action = getattr(dep.call, "action", None)
        if action is not None:
            return action
        stack.extend(dep.dependencies)
    return route.router_actions[0] if route.router_actions else None


def _fill(ctx: Ctx, path: str, override: dict | None = None) -> str:
    def value(match: re.Match) -> str:
        param = match.group(1).split(":")[0]
        return (override or {}).get(param) or _sample_path(ctx, path, param)

    return re.sub(r"\{([^}]+)\}", value, path)


def _check_answer(ctx: Ctx, answer, where: str, *, token_page: bool = False) -> list[str]:
    """What is wrong with any answer: no CSP, 'unsafe-inline', a secret or the local path in it."""
    problems = []
    csp = answer.headers.get("content-security-policy", "")
    if not csp:
        problems.append(f"{where}: no Content-Security-Policy ({answer.status_code})")
    else:
        problems += [f"{where}: {p}: {csp}" for p in _csp_problems(csp)]
    if answer.headers.get("x-content-type-options") != "nosniff":
        problems.append(f"{where}: no X-Content-Type-Options: nosniff")
    text = answer.text + " ".join(f"{k}: {v}" for k, v in answer.headers.items())
    home = ctx.ws["settings"].home
    if str(home) in text or home.as_posix() in unquote(text):
        problems.append(f"{where}: the workspace's local path is in the answer")
    if OUTSIDE in text:
        problems.append(f"{where}: content from outside the runs folder was served")
    if "root:x:0:0" in text:
        problems.append(f"{where}: /etc/passwd was served")
    leaked = [s for s in ctx.secrets if s in text]
    if leaked and not token_page:
        problems.append(f"{where}: a token secret is in the answer")
    if answer.status_code >= 500:
        problems.append(f"{where}: {answer.status_code}")
    return problems


def _csp_problems(csp: str) -> list[str]:
    """What is wrong with a CSP: script allowed inline or by eval, or from anywhere but this site.

    'unsafe-inline' is refused everywhere, with one exception: the style of a document that runs
    no script at all and is sandboxed (a run's stored report.html, served under its own policy:
    `script-src 'none'; sandbox; default-src 'none'`): with nothing to fetch and nothing to run,
    inline style can neither load nor send anything.
    """
    rules = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            rules[words[0].lower()] = words[1:]
    problems = []
    script = rules.get("script-src", rules.get("default-src"))
    if script is None:
        problems.append("no script-src or default-src")
    elif any(w in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:") for w in script):
        problems.append("script may run inline, by eval or from elsewhere")
    if rules.get("default-src") != ["'none'"]:
        problems.append("default-src is not 'none'")
    if "frame-ancestors" not in rules:
        problems.append("no frame-ancestors")
    isolated = rules.get("script-src") == ["'none'"] and "sandbox" in rules
    for name, words in rules.items():
        if "'unsafe-eval'" in words or ("'unsafe-inline'" in words and not (name == "style-src" and isolated)):
            problems.append(f"{name} allows unsafe-inline or unsafe-eval")
    return problems


def test_the_csp_check_itself():
    from trustforge.ui._render import CSP

    assert _csp_problems(CSP) == []
    report = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; sandbox; frame-ancestors 'none'"
    assert _csp_problems(report) == []
    assert _csp_problems(report.replace("; sandbox", ""))  # inline style in a document that is not sandboxed
    assert _csp_problems(CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'"))
    assert _csp_problems(CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'"))
    assert _csp_problems("default-src 'self'")


def _snapshot(engine) -> dict:
    """Every row of every table but the audit log's (the audit log only grows)."""
    with engine.connect() as conn:
        names = [t for t in sa.inspect(conn).get_table_names() if not t.startswith("audit")]
        return {t: sorted(map(tuple, conn.execute(sa.text(f'SELECT * FROM "{t}"')).all()), key=repr) for t in names}


def _oks(ctx: Ctx) -> int:
    return ctx.reg.audit.count(outcome="ok")


# -- the route table -------------------------------------------------------------------------------


def test_every_route_names_an_action_of_the_policy(ui_app):
    routes = _routes(ui_app)
    assert routes, "no routes found"
    missing = [f"{m} {p}" for m, p, r in routes if p not in EXEMPT and _action(r) is None]
    assert not missing, f"routes without a needs(action) dependency: {missing}"
    assert all(_action(r) in secure.ACTIONS for m, p, r in routes if p not in EXEMPT)
    changes = [p for m, p, r in routes if m not in ("GET", "HEAD") and p not in EXEMPT]
    assert all(m in ("GET", "HEAD", "POST") for m, p, r in routes), "a route with another method than GET or POST"
    assert not [p for p in changes if p not in FORMS], "add the form of these changes to FORMS"
    assert {"/audit", "/users"} <= {p for m, p, r in routes if m == "GET"}


# The action each route of the dashboard's contract must name (issue 19); a route not listed here
# is still checked to name some action of the policy.
CONTRACT = {
    ("GET", "/runs"): "read",
    ("GET", "/runs/compare"): "read",
    ("GET", "/runs/{run}"): "read",
    ("GET", "/runs/{run}/report"): "read",
    ("GET", "/runs/{run}/report/raw"): "read",
    ("GET", "/runs/{run}/card"): "read",
    ("GET", "/models"): "read",
    ("GET", "/models/{name}"): "read",
    ("POST", "/models/{name}/aliases"): "alias",
    ("POST", "/models/{name}/aliases/{alias}/delete"): "alias",
    ("POST", "/models/{name}/versions/{version}/tags"): "tag",
    ("GET", "/drift"): "read",
    ("GET", "/drift/{name}"): "read",
    ("GET", "/audit"): "audit_verify",
    ("GET", "/users"): "users",
    ("POST", "/users"): "users",
    ("POST", "/users/{name}/role"): "users",
    ("POST", "/users/{name}/revoke"): "users",
    ("POST", "/users/{name}/tokens"): "users",
    ("POST", "/tokens/{token_id}/revoke"): "users",
    ("POST", "/signout"): "read",
}


def test_each_route_of_the_contract_names_its_action(ui_app):
    found = {(m, p): _action(r) for m, p, r in _routes(ui_app)}
    wrong = {k: (found[k], v) for k, v in CONTRACT.items() if k in found and found[k] != v}
    assert not wrong, f"routes naming another action than the contract's (found, expected): {wrong}"


# -- pages x roles ----------------------------------------------------------------------------------


def test_each_page_answers_each_role_exactly_as_the_policy_says(ctx):
    problems = []
    clients = {role: ctx.client(role) for role in EVERYONE}
    for method, path, route in _routes(ctx.app):
        if method != "GET" or path in EXEMPT:
            continue
        action = _action(route)
        url = _fill(ctx, path)
        query = _sample_query(ctx, path)
        for role in EVERYONE:
            before = ctx.reg.audit.count(actor=role, outcome="denied") if role else 0
            answer = clients[role].get(url, params=query)
            where = f"GET {url} as {role or 'no session'}"
            problems += _check_answer(ctx, answer, where)
            if role is None:
                expected = 303
                if answer.status_code == 303 and not answer.headers["location"].startswith("/signin?next="):
                    problems.append(f"{where}: redirected to {answer.headers['location']} instead of the sign-in page")
            else:
                expected = 200 if secure.allowed(role, action) else 403
                if expected == 403 and ctx.reg.audit.count(actor=role, outcome="denied") != before + 1:
                    problems.append(f"{where}: the denial was not audited")
            if answer.status_code != expected:
                problems.append(f"{where}: {answer.status_code}, expected {expected}")
    assert not problems, "\n".join(problems)


def test_other_methods_are_refused_with_the_headers(ctx):
    admin = ctx.client("admin")
    problems = []
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
        for url in ("/users", "/audit", "/signin", "/runs"):
            answer = admin.request(method, url)
            problems += _check_answer(ctx, answer, f"{method} {url}")
            if answer.status_code != 405:
                problems.append(f"{method} {url}: {answer.status_code}, expected 405")
    assert not problems, "\n".join(problems)


# -- changes x roles, CSRF and Origin -----------------------------------------------------------------


def _form_for(ctx: Ctx, path: str) -> dict:
    form = FORMS.get(path)
    if form is None:
        pytest.fail(f"POST {path}: add its form to FORMS in the security matrix")
    data = dict(form.data)
    if path == "/users":
        ctx.n += 1
        data["name"] = f"added-{ctx.n}"
    return data


def _post_routes(app) -> list[tuple[str, _Route]]:
    return [(p, r) for m, p, r in _routes(app) if m == "POST" and p not in EXEMPT]


def test_each_change_is_allowed_only_to_the_roles_the_policy_names_and_denials_are_audited(ctx):
    problems = []
    for path, route in _post_routes(ctx.app):
        action = _action(route)
        form = FORMS.get(path) or Form()
        ctx.fresh_user()
        url = _fill(ctx, path)
        for role in EVERYONE:  # admin last: a success may change what the others see
            client = ctx.client(role)
            data = _form_for(ctx, path)
            if role is not None:
                data["csrf"] = csrf_of(client.get("/runs").text)
            allowed = role is not None and secure.allowed(role, action)
            if allowed and path == "/users/{name}/tokens":  # the token form's one-time value
                data["nonce"] = re.search(r'name="nonce" value="([^"]+)"', client.get("/users").text).group(1)
            if allowed and form.prepare is not None:
                form.prepare(ctx)
            before, denied = _snapshot(ctx.reg.engine), ctx.reg.audit.count(outcome="denied")
            answer = client.post(url, data=data)
            where = f"POST {url} as {role or 'no session'}"
            problems += _check_answer(ctx, answer, where, token_page=path == "/users/{name}/tokens")
            if role is None:
                expected = 401
            else:
                expected = form.ok if allowed else 403
            if answer.status_code != expected:
                problems.append(f"{where}: {answer.status_code}, expected {expected}: {answer.text[-300:]!r}")
            if answer.status_code == 303:
                location = answer.headers["location"]
                if not location.startswith("/") or location.startswith("//"):
                    problems.append(f"{where}: redirected off the site to {location}")
            if not allowed:
                if _snapshot(ctx.reg.engine) != before:
                    problems.append(f"{where}: refused, but something changed")
                grew = ctx.reg.audit.count(outcome="denied") - denied
                if role is not None and grew != 1:
                    problems.append(f"{where}: {grew} denials audited, expected 1")
                if role is not None:
                    last = ctx.reg.audit.entries(limit=1, outcome="denied")[0]
                    if (last["actor"], last["action"]) != (role, action):
                        problems.append(f"{where}: the audited denial names {last['actor']}/{last['action']}")
    assert not problems, "\n".join(problems)


def test_a_change_without_the_sessions_csrf_token_or_from_another_site_is_refused_and_changes_nothing(ctx):
    problems = []
    for path, route in _post_routes(ctx.app):
        role = next(r for r in reversed(ROLES) if secure.allowed(r, _action(route)))
        ctx.fresh_user()
        url = _fill(ctx, path)
        client, other = ctx.client(role), ctx.client(role)  # two sessions of the same user
        own, others = csrf_of(client.get("/runs").text), csrf_of(other.get("/runs").text)
        assert own != others
        if FORMS.get(path) and FORMS[path].prepare:
            FORMS[path].prepare(ctx)
        attempts = {
            "no csrf": ({}, {}, 403),
            "empty csrf": ({"csrf": ""}, {}, 403),
            "wrong csrf": ({"csrf": "x" * len(own)}, {}, 403),
            "a prefix of the csrf": ({"csrf": own[:-1]}, {}, 403),
            "another session's csrf": ({"csrf": others}, {}, 403),
            "another site": ({"csrf": own}, {"origin": "http://evil.example"}, 403),
            "another scheme": ({"csrf": own}, {"origin": "https://127.0.0.1"}, 403),
            "csrf in a header only, from another site": ({}, {"x-csrf-token": own, "origin": "http://evil.example"}, 403),
            # a probe: an opaque origin, and another site's Referer without an Origin, passed
            "Origin: null": ({"csrf": own}, {"origin": "null"}, 403),
            "no Origin, another site's Referer": ({"csrf": own}, {"referer": "http://evil.example/"}, 403),
        }
        for what, (extra, headers, expected) in attempts.items():
            before, oks = _snapshot(ctx.reg.engine), _oks(ctx)
            answer = client.post(url, data={**_form_for(ctx, path), **extra}, headers=headers)
            where = f"POST {url} as {role} with {what}"
            problems += _check_answer(ctx, answer, where)
            if answer.status_code != expected:
                problems.append(f"{where}: {answer.status_code}, expected {expected}")
            if _snapshot(ctx.reg.engine) != before or _oks(ctx) != oks:
                problems.append(f"{where}: refused, but something changed")
        # Another body type (a cross-site form can send text/plain without a preflight).
        before = _snapshot(ctx.reg.engine)
        answer = client.post(url, content=f"csrf={own}", headers={"content-type": "text/plain"})
        if answer.status_code != 415 or _snapshot(ctx.reg.engine) != before:
            problems.append(f"POST {url} as text/plain: {answer.status_code}, expected 415 and no change")
        # The session's own token still works afterwards (the refusals did not end the session).
        if client.get("/runs").status_code != 200:
            problems.append(f"POST {url}: the refusals ended the session")
    assert not problems, "\n".join(problems)


# -- traversal and junk -------------------------------------------------------------------------------


def _raw_get(app, raw_path: str, cookie: str | None) -> tuple[int, dict, str]:
    """GET a raw path exactly as a client like `curl --path-as-is` sends it (no dot-segment
    normalisation, no re-encoding), decoded for the router as uvicorn does."""
    messages = []
    raw = raw_path.encode("latin-1")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")] + ([(b"cookie", f"tf_session={cookie}".encode())] if cookie else []),
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }

    received = []

    async def receive():
        if received:  # after the (empty) body, the client just waits for the answer
            await anyio.sleep_forever()
        received.append(1)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    async def call():
        try:
            await app(scope, receive, send)
        except Exception:  # noqa: BLE001 - Starlette re-raises after its 500 page; the status says it
            pass

    anyio.run(call)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    headers = {k.decode().lower(): v.decode("latin-1") for k, v in start["headers"]}
    return start["status"], headers, body.decode("utf-8", "replace")


class _Answer:
    def __init__(self, status, headers, text):
        self.status_code, self.headers, self.text = status, headers, text


def test_traversal_in_every_path_parameter_never_reaches_outside_content_nor_fails(ctx):
    admin = ctx.client("admin")
    cookie = admin.cookies.get("tf_session")
    problems = []
    for method, path, route in _routes(ctx.app):
        params = re.findall(r"\{([^}:]+)", path)
        if not params or path in EXEMPT:
            continue
        for param in params:
            # linked-run: a link inside runs/ to a folder outside it (a valid name, so only for runs)
            extra = ("linked-run",) if param == "run" else ()
            for attack in (*TRAVERSALS, *extra, ctx.ws["settings"].home.as_posix().lstrip("/")):
                url = _fill(ctx, path, {param: attack})
                where = f"{method} {path} with {param}={attack[:40]!r}"
                if method == "GET":
                    status, headers, text = _raw_get(ctx.app, url, cookie)
                    answer = _Answer(status, headers, text)
                else:
                    before = _snapshot(ctx.reg.engine)
                    data = {**_form_for(ctx, path), "csrf": csrf_of(admin.get("/runs").text)}
                    answer = admin.post(url, data=data)
                    if _snapshot(ctx.reg.engine) != before:
                        problems.append(f"{where}: something changed")
                problems += _check_answer(ctx, answer, where)
                if answer.status_code < 400:
                    problems.append(f"{where}: {answer.status_code}, expected a 4xx refusal")
    assert not problems, "\n".join(problems[:40])


def test_junk_in_every_query_parameter_never_fails_nor_reaches_outside_content(ctx):
    admin = ctx.client("admin")
    problems = []
    for method, path, route in _routes(ctx.app):
        if method != "GET" or path in EXEMPT:
            continue
        url = _fill(ctx, path)
        names = [p.alias or p.name for p in route.dependant.query_params]
        for name in names:
            for junk in QUERY_JUNK:
                query = [q for q in _sample_query(ctx, path) if q[0] != name] + [(name, junk)]
                answer = admin.get(url, params=query)
                problems += _check_answer(ctx, answer, f"GET {path}?{name}={junk[:30]!r}")
    for junk in QUERY_JUNK:  # the sign-in page's `next`
        answer = ctx.client(None).get("/signin", params={"next": junk})
        problems += _check_answer(ctx, answer, f"GET /signin?next={junk[:30]!r}")
    assert not problems, "\n".join(problems[:40])


def test_encoded_dot_segments_and_slashes_are_refused_before_any_route(ctx):
    cookie = ctx.client("admin").cookies.get("tf_session")
    for raw in (
        "/runs/.%2e",
        "/runs/%2e.",
        "/runs/%2E%2E/report",
        "/runs/..",
        "/runs/./x",
        "/users/a%2fb/role",
        "/static/.%2e/_app.py",
        "/runs/a\\b",
    ):
        status, headers, text = _raw_get(ctx.app, raw, cookie)
        assert status == 400 and "the path is not valid" in text, raw
        assert "unsafe-inline" not in headers["content-security-policy"]
    status, _, text = _raw_get(ctx.app, "/static/ui.css", None)
    assert status == 200 and "TrustForge dashboard" in text  # a plain static path still works


# -- sign-in, cookies, redirects, limiter ---------------------------------------------------------------


def _signin(client, token: str, **headers):
    page = client.get("/signin")
    return client.post("/signin", data={"csrf": csrf_of(page.text), "token": token, "next": "/runs"}, headers=headers)


def _cookie(answer, name: str) -> str:
    found = [c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert found, f"no {name} cookie set"
    return found[0]


@pytest.mark.parametrize("tls", [False, True])
def test_session_cookie_flags(ui_workspace, tls):
    from fastapi.testclient import TestClient

    from trustforge.ui import create_app

    app = create_app(ui_workspace["settings"], registry=ui_workspace["registry"], tls=tls, session_ttl_s=3600)
    client = TestClient(app, base_url=f"{'https' if tls else 'http'}://127.0.0.1", follow_redirects=False)
    page = client.get("/signin")
    signin_cookie = _cookie(page, "tf_signin")
    answer = _signin(client, ui_workspace["tokens"]["viewer"])
    assert answer.status_code == 303
    session = _cookie(answer, "tf_session")
    flags = [f.strip().lower() for f in session.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "max-age=3600" in flags and "path=/" in flags
    assert ("secure" in flags) is tls and ("secure" in signin_cookie.lower()) is tls
    assert "tfk_" not in session and len(session.split(";")[0]) > 40  # a random id, never the token
    assert answer.headers.get("cache-control") == "no-store"
    assert ("strict-transport-security" in answer.headers) is tls
    # Cookies are cleared with the same flags (sign-out).
    out = client.post("/signout", data={"csrf": csrf_of(client.get("/runs").text)})
    cleared = [f.strip().lower() for f in _cookie(out, "tf_session").split(";")]
    assert "max-age=0" in cleared and "httponly" in cleared and "samesite=strict" in cleared and ("secure" in cleared) is tls


def test_sign_in_needs_its_form_token_and_this_sites_origin(ui_app, ui_workspace):
    from fastapi.testclient import TestClient

    token = ui_workspace["tokens"]["admin"]
    client = TestClient(ui_app, base_url="http://127.0.0.1", follow_redirects=False)
    page = client.get("/signin")
    value = csrf_of(page.text)
    assert client.post("/signin", data={"token": token}).status_code == 403
    assert client.post("/signin", data={"csrf": ("y" if value[0] == "x" else "x") + value[1:], "token": token}).status_code == 403
    evil = client.post("/signin", data={"csrf": value, "token": token}, headers={"origin": "http://evil.example"})
    assert evil.status_code == 403 and "tf_session" not in evil.headers.get("set-cookie", "")
    # a probe: Origin null (a cross-site form under Referrer-Policy: no-referrer) signed in
    opaque = client.post("/signin", data={"csrf": value, "token": token}, headers={"origin": "null"})
    assert opaque.status_code == 403 and "tf_session" not in opaque.headers.get("set-cookie", "")
    # the dashboard's own forms carry their Origin: its pages do not ask for "no-referrer", which makes it null
    assert page.headers["referrer-policy"] == "same-origin"
    bare = TestClient(ui_app, base_url="http://127.0.0.1", follow_redirects=False)  # no form cookie
    assert bare.post("/signin", data={"csrf": value, "token": token}).status_code == 403
    assert client.post("/signin", data={"csrf": value, "token": token}).status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example",
        "\\\\evil.example",
        " //evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "",
    ],
)
def test_next_never_leaves_the_site(ui_app, ui_workspace, target):
    from fastapi.testclient import TestClient

    client = TestClient(ui_app, base_url="http://127.0.0.1", follow_redirects=False)
    page = client.get("/signin", params={"next": target})
    assert 'value="/runs"' in page.text  # the form carries only a safe target
    answer = client.post("/signin", data={"csrf": csrf_of(page.text), "token": ui_workspace["tokens"]["viewer"], "next": target})
    assert answer.status_code == 303 and answer.headers["location"] == "/runs"


def test_signing_in_never_keeps_a_planted_or_earlier_session_id(ui_app, ui_workspace):
    from fastapi.testclient import TestClient

    client = TestClient(ui_app, base_url="http://127.0.0.1", follow_redirects=False)
    client.cookies.set("tf_session", "planted-by-an-attacker")
    first = _signin(client, ui_workspace["tokens"]["viewer"])
    sid = _cookie(first, "tf_session").split(";")[0].split("=", 1)[1]
    assert sid != "planted-by-an-attacker"
    client.cookies.set("tf_session", sid)
    second = _signin(client, ui_workspace["tokens"]["viewer"])
    new_sid = _cookie(second, "tf_session").split(";")[0].split("=", 1)[1]
    assert new_sid != sid
    with pytest.raises(Exception):  # the earlier session ended with the new sign-in
        ui_app.state.sessions.current(sid)
    ui_app.state.sessions.current(new_sid)


def test_the_sign_in_limiter_answers_429_after_a_burst_and_audits_the_refusals(ui_workspace):
    from fastapi.testclient import TestClient

    from trustforge.ui import create_app

    app = create_app(ui_workspace["settings"], registry=ui_workspace["registry"])
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        assert app.state.limiter._thread is not None  # started with the app: windows are written while it runs
        value = csrf_of(client.get("/signin").text)
        statuses = []
        for i in range(40):
            answer = client.post("/signin", data={"csrf": value, "token": f"tfk_{i:016x}_" + "A" * 43})
            assert "unsafe-inline" not in answer.headers["content-security-policy"]
            statuses.append(answer.status_code)
        assert statuses[0] == 401 and statuses[-1] == 429 and statuses.count(401) == app.state.limiter.burst
        assert "tf_session" not in answer.headers.get("set-cookie", "")
    summary = ui_workspace["registry"].audit.entries(limit=1, action="serve_denials")
    assert summary and summary[0]["object"] == "ui:/signin" and summary[0]["outcome"] == "denied"
    assert "A" * 43 not in str(summary[0]["details"])


def test_a_revoked_tokens_sign_in_refusals_name_its_user_and_token_id(ui_workspace):
    """As the server's refusals do: a genuine token refused (here revoked) is audited under its
    user, with its id counted (never its secret); it was `anonymous`."""
    from fastapi.testclient import TestClient

    from trustforge.ui import create_app

    token = ui_workspace["tokens"]["trainer"]
    token_id = token.split("_")[1]
    ui_workspace["registry"].access.revoke_token(token_id)
    app = create_app(ui_workspace["settings"], registry=ui_workspace["registry"])
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        value = csrf_of(client.get("/signin").text)
        assert client.post("/signin", data={"csrf": value, "token": token}).status_code == 401
    [entry] = ui_workspace["registry"].audit.entries(limit=1, action="serve_denials")
    assert entry["object"] == "ui:/signin" and entry["details"]["actors"] == {"trainer": 1}
    secret = token.split("_", 2)[2]  # base64url: it may hold "_" itself (a secret starting with one split to "" and failed a CI run)
    assert entry["details"]["tokens"] == {token_id: 1} and secret not in str(entry["details"])


def test_cross_site_refusals_are_audited_once_per_source_naming_user_routes_and_reasons(ui_workspace):
    """A forged change (another site's Origin or Referer, no or a wrong CSRF token) leaves a trace
    in the audit log, summarised per source per window: a flood of them is one entry, and the
    victim is never answered 429 for them."""
    from fastapi.testclient import TestClient

    from trustforge.ui import create_app

    audit = ui_workspace["registry"].audit
    app = create_app(ui_workspace["settings"], registry=ui_workspace["registry"])
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        assert _signin(client, ui_workspace["tokens"]["deployer"]).status_code == 303
        csrf = csrf_of(client.get("/models/iris-ui").text)
        seq = audit.entries(limit=1)[0]["seq"]
        url = "/models/iris-ui/aliases"
        form = {"alias": "evil", "version": "1"}
        forged = [
            ({**form, "csrf": csrf}, {"origin": "http://evil.example"}),
            ({**form, "csrf": csrf}, {"origin": "null"}),
            ({**form, "csrf": csrf}, {"referer": "http://evil.example/page"}),
            ({**form, "csrf": "x" * len(csrf)}, {}),
            (form, {}),
        ]
        for data, headers in forged * 20:
            assert client.post(url, data=data, headers=headers).status_code == 403
        assert client.post("/signin", data={"csrf": "x", "token": "t"}).status_code == 403  # a forged sign-in
        assert client.post(url, data={**form, "csrf": csrf}).status_code == 303  # never limited
        assert audit.entries(limit=1)[0]["action"] == "alias"  # counted, not written one by one
    [entry] = [e for e in audit.entries(limit=20, action="serve_denials") if e["seq"] > seq]
    assert entry["object"] == "ui" and entry["outcome"] == "denied" and entry["actor"] == "anonymous"  # two actors
    details = entry["details"]
    assert details["refused"] == 101 and details["limited"] == 0
    assert details["actors"] == {"deployer": 100, "anonymous": 1}
    assert details["routes"] == {url: 100, "/signin": 1}
    assert details["reasons"] == {
        "cross-origin (Origin)": 20,
        "Origin: null": 20,
        "cross-origin (Referer)": 20,
        "wrong CSRF token": 20,
        "no CSRF token": 20,
        "sign-in form token": 1,
    }
    assert csrf not in str(entry)


def test_an_internal_error_answers_500_with_the_headers_and_nothing_of_the_error(ui_app, ui_workspace, caplog):
    from fastapi.testclient import TestClient

    home = ui_workspace["settings"].home

    @ui_app.get("/explode")
    def explode():
        raise RuntimeError(f"could not read {home}/secret.db")

    client = TestClient(ui_app, base_url="http://127.0.0.1", follow_redirects=False, raise_server_exceptions=False)
    answer = client.get("/explode")
    assert answer.status_code == 500 and "internal error" in answer.text
    assert str(home) not in answer.text and "RuntimeError" not in answer.text
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and answer.headers["x-frame-options"] == "DENY"
    assert str(home) not in caplog.text


def test_the_server_wrapper_keeps_tracebacks_out_of_the_server_log():
    from trustforge.ui._serve import QuietErrors

    sent = []

    async def failing(scope, receive, send):
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"internal error"})
        raise RuntimeError(os.sep + "local" + os.sep + "path")

    async def send(message):
        sent.append(message)

    anyio.run(QuietErrors(failing), {"type": "http"}, None, send)  # no exception reaches the server
    assert sent[0]["status"] == 500
    with pytest.raises(RuntimeError):  # the app's startup and shutdown still fail loudly
        anyio.run(QuietErrors(failing), {"type": "lifespan"}, None, send)


def test_a_library_error_naming_a_local_file_is_shown_without_the_path(ui_app, ui_workspace, client_as):
    from trustforge.errors import RegistryError

    home = ui_workspace["settings"].home

    @ui_app.get("/refuse")
    def refuse():
        raise RegistryError(f"{home / 'artifacts' / 'x'} is missing")

    answer = client_as("viewer").get("/refuse")
    assert answer.status_code == 400 and "the workspace/artifacts/x is missing" in answer.text
    assert str(home) not in answer.text
