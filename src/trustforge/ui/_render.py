"""Pages: Jinja2 templates (autoescaped) with what every page needs (who is signed in, the CSRF
token, which actions the role allows), and the security headers of every answer."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from trustforge import secure

__all__ = ["render", "paging", "SECURITY_HEADERS", "NAV", "templates"]

# No inline script or style anywhere: scripts and styles are files under /static. Data a script
# needs travels in <script type="application/json"> blocks, which are never executed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # never sent to another site; "no-referrer" made our own forms post Origin: null
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

# The navigation: (path, label, action the role needs to see it).
NAV = (
    ("/runs", "Runs", "read"),
    ("/models", "Models", "read"),
    ("/drift", "Drift", "read"),
    ("/audit", "Audit", "audit_verify"),
    ("/users", "Users", "users"),
)

templates = Environment(
    loader=PackageLoader("trustforge.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200) -> HTMLResponse:
    """`template` filled with `context` plus `me` (the principal or None), `csrf` (the session's
    token, "" without a session), `can(action)`, `nav` and `path` (the current path)."""
    session = getattr(request.state, "session", None)
    principal = session.principal if session is not None else None
    role = principal.role if principal is not None else None

    def can(action: str) -> bool:
        return role is not None and secure.allowed(role, action)

    page = templates.get_template(template).render(
        me=principal,
        csrf=session.csrf if session is not None else "",
        can=can,
        nav=[(href, label) for href, label, action in NAV if can(action)],
        path=request.url.path,
        tls=request.app.state.tls,
        **(context or {}),
    )
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


def paging(total: int, page: int, per: int) -> dict[str, int]:
    """Server-side paging of `total` items, `per` a page: the page asked for, capped at the last
    one (there is always a page 1), and `start`, the index of its first item."""
    pages = max(1, -(-total // per))
    page = min(page, pages)
    return {"page": page, "per": per, "pages": pages, "total": total, "start": (page - 1) * per}
