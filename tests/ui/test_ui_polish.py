"""Small things of every page: the site's icon."""

from __future__ import annotations


def test_every_page_links_the_icon_and_it_is_served(client_as):
    client = client_as("viewer")
    page = client.get("/runs")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page.text
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml") and "<svg" in icon.text
    assert "<script" not in icon.text
