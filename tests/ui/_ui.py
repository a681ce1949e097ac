"""Helpers of the dashboard tests (imported by tests/ui/conftest.py and the tests)."""

from __future__ import annotations

import re

ROLES = ("viewer", "trainer", "deployer", "admin")

_QUIET = {"corruptions": False, "explain": False, "robustness": False}
SPECS = {
    "v1": {
        "name": "iris-ui",
        "data": {"source": "builtin:iris"},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"max_epochs": 12, "batch_size": 16, "optimizer": {"name": "adamw", "lr": 0.02}},
        "evaluate": _QUIET,
    },
    "v2": {
        "name": "iris-ui",
        "data": {"source": "builtin:iris"},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 4, "seed": 3, "optimizer": {"name": "adamw", "lr": 0.005}},
        "evaluate": _QUIET,
    },
}


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def signed_in_client(app, token: str | None):
    """A TestClient with a session for `token` (no session when None)."""
    from fastapi.testclient import TestClient

    client = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    if token is None:
        return client
    page = client.get("/signin")
    answer = client.post("/signin", data={"csrf": csrf_of(page.text), "token": token, "next": "/runs"})
    assert answer.status_code == 303, answer.text[:500]
    return client
