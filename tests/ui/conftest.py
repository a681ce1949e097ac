"""Fixtures of the dashboard tests: a workspace with two runs, a model with two versions, one
user (and token) per role, and test clients signed in as each.

Helpers the tests import live in `_ui.py` (a module named `conftest` is ambiguous across folders).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _ui import ROLES, SPECS, signed_in_client

from trustforge.settings import Settings


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Two small iris runs, trained once: {"v1": run folder, "v2": run folder, "keys": the keys that
    signed their packages}."""
    from trustforge.pipeline import run

    root = tmp_path_factory.mktemp("ui-runs")
    out = {}
    for key, spec in SPECS.items():
        result = run(spec, settings=Settings.from_env(root / "ws"), progress=False, register=False)
        out[key] = result.run_dir
    out["keys"] = Settings.from_env(root / "ws").keys_dir
    return out


@pytest.fixture
def ui_workspace(workspace, trained):
    """This test's workspace: the trained runs copied in, their packages registered as
    models:/iris-ui/1 and /2 (alias champion -> 1), and users viewer, trainer, deployer, admin.
    Returns {"registry": Registry (local admin), "tokens": {role: token}, "runs": [run names]}."""
    from trustforge.registry import Registry

    settings = Settings.from_env()
    shutil.copytree(trained["keys"], settings.keys_dir)  # the keys that signed the packages
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for key in ("v1", "v2"):
        dest = settings.runs_dir / trained[key].name
        shutil.copytree(trained[key], dest)
        names.append(dest.name)
    registry = Registry(settings)
    for key in ("v1", "v2"):
        registry.register(settings.runs_dir / trained[key].name / "package", name="iris-ui", run=trained[key].name)
    registry.set_alias("iris-ui", "champion", 1)
    tokens = {}
    for role in ROLES:
        registry.access.add_user(role, role)
        tokens[role] = registry.access.issue_token(role)
    yield {"registry": registry, "tokens": tokens, "runs": names, "settings": settings}
    registry.close()


@pytest.fixture
def ui_app(ui_workspace):
    """The dashboard over the test workspace (plain HTTP, as on loopback)."""
    from trustforge.ui import create_app

    return create_app(ui_workspace["settings"], registry=ui_workspace["registry"])


@pytest.fixture
def client_as(ui_app, ui_workspace):
    """`client_as(role)`: a TestClient signed in with that role's token (None: not signed in)."""
    return lambda role: signed_in_client(ui_app, ui_workspace["tokens"].get(role) if role else None)


# --- browser tests (ui-browser): Debian's Chromium via Playwright, the app on a loopback port ---


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, launched once per test module (never downloaded; skips without it)."""
    from _browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def live_ui(ui_app):
    """The test's dashboard served by uvicorn on 127.0.0.1 at a free port: its base URL."""
    from _browser import serve

    with serve(ui_app) as base:
        yield base


@pytest.fixture
def shots(tmp_path):
    """The folder for screenshots: $TRUSTFORGE_UI_SCREENSHOTS, else the test's tmp_path."""
    from _browser import screenshots_dir

    return screenshots_dir(tmp_path / "shots")


@pytest.fixture
def browser_as(chromium, live_ui, ui_workspace):
    """`browser_as(role)`: a page in a fresh browser context (own cookies), signed in through the
    sign-in form with that role's token (None: not signed in). Pages carry `page.base`; every
    browser error of the page's scripts is collected in `page.js_errors`, every URL it requested
    in `page.requested`."""
    from _browser import VIEWPORT, sign_in

    contexts = []

    def open_as(role):
        context = chromium.new_context(base_url=live_ui, viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.base = live_ui
        page.js_errors = []
        page.requested = []
        page.on("request", lambda req: page.requested.append(req.url))
        page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
        page.on("console", lambda msg: page.js_errors.append(msg.text) if msg.type == "error" else None)
        if role is not None:
            sign_in(page, live_ui, ui_workspace["tokens"][role])
        return page

    yield open_as
    for context in contexts:
        context.close()
