"""Small things of every page: the site's icon."""

from __future__ import annotations


def test_every_page_links_the_icon_and_it_is_served(client_as):
    client = client_as("viewer")
    page = client.get("/runs")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page.text
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml") and "<svg" in icon.text
    assert "<script" not in icon.text


def test_wide_tables_scroll_in_their_box_at_800_px(browser_as, shots):
    from _browser import shoot

    page = browser_as("admin")
    page.set_viewport_size({"width": 800, "height": 900})
    for path, name in (("/users", "users-800"), ("/models/iris-ui", "model-800"), ("/audit", "audit-800")):
        page.goto(page.base + path)
        shoot(page, shots, name)  # fails when the page itself is wider than the window
    assert not [e for e in page.js_errors if "404" in e], page.js_errors  # the icon is found
    assert any(u.endswith("/static/favicon.svg") for u in page.requested)
