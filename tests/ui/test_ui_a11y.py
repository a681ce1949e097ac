"""Accessibility: axe-core (vendored in tests/ui/vendor, see its README) run in Chromium on the
dashboard's main pages finds no violation of impact serious or critical.

axe is injected as a context init script, not with `page.add_script_tag`: the dashboard's CSP
(`script-src 'self'`) refuses the inline <script> that add_script_tag writes, and an init script is
evaluated by the browser itself, outside the page's CSP. So the pages are checked exactly as served,
with their CSP in force (`bypass_csp=True` would also let inline styles apply that users never see).
"""

from __future__ import annotations

import pytest
from _browser import AXE, VIEWPORT, axe_violations, is_placeholder, record_drift, sign_in


def test_no_serious_or_critical_accessibility_violation_on_the_main_pages(chromium, live_ui, ui_workspace, tmp_path):
    record_drift(ui_workspace["registry"], tmp_path)  # so the drift page has its charts and table
    context = chromium.new_context(base_url=live_ui, viewport=VIEWPORT)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.set_default_timeout(15_000)
    a, b = ui_workspace["runs"]
    pages = {
        "runs": "/runs",
        "compare": f"/runs/compare?run={a}&run={b}",
        "run": f"/runs/{a}",
        "models": "/models",
        "model": "/models/iris-ui",
        "drift": "/drift",
        "drift of a model": "/drift/iris-ui",
        "audit": "/audit",
        "users": "/users",
    }
    found, missing = {}, []
    try:
        page.goto("/signin")
        found["sign-in"] = axe_violations(page)
        sign_in(page, live_ui, ui_workspace["tokens"]["admin"])
        for name, path in pages.items():
            answer = page.goto(path)
            if answer.status == 404 or is_placeholder(page):
                missing.append(name)  # transitional: the page's owner has not built it on this branch
                continue
            assert answer.status == 200, (name, answer.status)
            found[name] = axe_violations(page)
    finally:
        context.close()
    bad = {name: v for name, v in found.items() if v}
    assert not bad, bad
    assert "sign-in" in found and "runs" in pages
    if missing:
        pytest.skip(f"still the skeleton's placeholder on this branch (checked the others): {', '.join(missing)}")
