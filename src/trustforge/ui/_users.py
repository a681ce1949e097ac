"""The users page (admins): users and their roles, API tokens (never their secrets), and the
forms that add a user, change a role, revoke a user, issue a token and revoke one.

Every change goes through `AccessStore` with `by=` the signed-in principal, which checks the
`users` right and audits the change in the same transaction. A new token is shown once, on
the answer to the form that issued it (Cache-Control: no-store), and is neither logged nor
audited; only its id is. Revoking a token or a user also ends the dashboard sessions opened
with it at once.
"""

from __future__ import annotations

import re
import secrets
import threading
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from trustforge import secure
from trustforge.errors import RegistryError
from trustforge.ui._render import paging, render
from trustforge.ui._session import BadForm, Session, check_csrf, in_thread, needs, read_form

router = APIRouter()

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # as `secure.validate_name`
TOKEN_ID = r"^[0-9a-f]{16}$"  # the non-secret part of `tfk_<id>_<secret>`
DEFAULT_TTL_DAYS = 90
MAX_TTL_DAYS = 365  # the dashboard issues tokens for at most a year (the CLI allows longer)
TOKENS_PER_PAGE = 50

# The flash messages after a change (`?done=CODE&user=NAME`): fixed texts, so a crafted link
# cannot put words of its own on the page.
DONE = {
    "user-added": "User {user} was added.",
    "role-changed": "The role of {user} was changed.",
    "user-revoked": "User {user} was revoked: their tokens no longer work and their sessions ended.",
    "token-revoked": "Token {token} was revoked and the sessions signed in with it ended.",
}


# The token form carries a one-time value (`nonce`) kept in the session: a reload of the answer
# (the browser sends the form again) is refused instead of issuing a second token.
_NONCES = "token_nonces"
_MAX_NONCES = 20  # the newest users pages of one session whose token forms still work
_nonce_lock = threading.Lock()


def _new_nonce(session: Session) -> str:
    value = secrets.token_urlsafe(24)
    with _nonce_lock:
        kept = session.meta.setdefault(_NONCES, [])
        kept.append(value)
        del kept[:-_MAX_NONCES]
    return value


def _use_nonce(session: Session, given: str) -> None:
    """Consume the form's one-time value.

    Raises:
        BadForm: 400 when it is missing (the form is incomplete); 409 when it is unknown (already
            used, or from a page too old or of another session).
    """
    if not given:
        raise BadForm("nonce: the token form is incomplete (it has no one-time value), so no token was issued; reload the users page", 400)
    with _nonce_lock:
        kept = session.meta.get(_NONCES, [])
        if given in kept:
            kept.remove(given)
            return
    raise BadForm(
        "nonce: this token form was already used (reloading the page sends it again) or is out of date, so no second token "
        "was issued; open the users page to issue another",
        409,
    )


def _access(request: Request) -> secure.AccessStore:
    return request.app.state.registry.access


def _users_link(show: str, page: int) -> str:
    """/users showing `show` tokens (live or all) at tokens page `page` (defaults left out)."""
    params = {k: v for k, v in (("show", show), ("tpage", page)) if (k, v) not in (("show", "live"), ("tpage", 1))}
    return "/users" + ("?" + urlencode(params) if params else "") + "#tokens-h"


def _back(done: str, **params: str) -> RedirectResponse:
    return RedirectResponse("/users?" + urlencode({"done": done, **params}), status_code=303)


def _role(form: dict[str, str]) -> str:
    role = form.get("role", "")
    if role not in secure.ROLES:
        raise RegistryError(f"role must be one of {', '.join(secure.ROLES)}")
    return role


def _ttl_days(form: dict[str, str]) -> int:
    text = form.get("ttl_days", "").strip() or str(DEFAULT_TTL_DAYS)
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_TTL_DAYS:
        raise RegistryError(f"ttl_days must be a whole number of days from 1 to {MAX_TTL_DAYS}")
    return int(text)


async def _form(request: Request, session: Session) -> dict[str, str]:
    form = await read_form(request)
    check_csrf(request, session, form)
    return form


@router.get("/users")
async def users_page(
    request: Request,
    done: str | None = Query(None, max_length=32),
    user: str | None = Query(None, pattern=NAME),
    token: str | None = Query(None, pattern=TOKEN_ID),
    show: str = Query("live", pattern="^(live|all)$"),
    tpage: int = Query(1, ge=1, le=1_000_000),
    session: Session = Depends(needs("users")),
) -> HTMLResponse:
    """Users and tokens (needs `users`, admins only); tokens paged in the database, live ones
    only unless `show=all` (revoked and expired tokens pile up over the years)."""
    access = _access(request)
    users = await in_thread(access.list_users)
    live_only = show == "live"
    at = paging(await in_thread(access.count_tokens, live_only=live_only), tpage, TOKENS_PER_PAGE)
    tokens = await in_thread(access.list_tokens, live_only=live_only, limit=TOKENS_PER_PAGE, offset=at["start"])
    message = DONE.get(done or "", "")
    flash = message.format(user=user or "the user", token=token or "") if message else ""
    ctx = {
        "title": "Users and tokens",
        "users": users,
        "tokens": tokens,
        "show": show,
        "tokens_at": at,
        "tokens_prev": _users_link(show, at["page"] - 1) if at["page"] > 1 else None,
        "tokens_next": _users_link(show, at["page"] + 1) if at["page"] < at["pages"] else None,
        "tokens_toggle": _users_link("all" if live_only else "live", 1),
        "roles": secure.ROLES,
        "flash": flash,
        "default_ttl": DEFAULT_TTL_DAYS,
        "max_ttl": MAX_TTL_DAYS,
        "nonce": _new_nonce(session),
    }
    return render(request, "users.html", ctx)


@router.post("/users")
async def add_user(request: Request, session: Session = Depends(needs("users"))) -> Response:
    """Add a user with a role (form: name, role)."""
    form = await _form(request, session)
    name = secure.validate_name(form.get("name", "").strip())
    role = _role(form)
    await in_thread(_access(request).add_user, name, role, by=session.principal)
    return _back("user-added", user=name)


@router.post("/users/{name}/role")
async def change_role(request: Request, name: str = Path(pattern=NAME), session: Session = Depends(needs("users"))) -> Response:
    """Give a user another role (form: role); re-enables a revoked user, as `users grant` does. An
    admin cannot change their own role here (demoted, they would lock themselves out mid-page)."""
    form = await _form(request, session)
    role = _role(form)
    if session.principal is not None and name == session.principal.name:
        raise RegistryError(f"name: you cannot change your own role ({name}); another admin can, or use `trustforge users grant`")
    await in_thread(_access(request).grant, name, role, by=session.principal)
    return _back("role-changed", user=name)


@router.post("/users/{name}/revoke")
async def revoke_user(request: Request, name: str = Path(pattern=NAME), session: Session = Depends(needs("users"))) -> Response:
    """Disable a user and revoke all their tokens; their dashboard sessions end now. An admin
    cannot revoke themselves here (they would lock themselves out mid-page)."""
    await _form(request, session)
    if session.principal is not None and name == session.principal.name:
        raise RegistryError(f"name: you cannot revoke yourself ({name}); another admin can, or use `trustforge users revoke`")
    await in_thread(_access(request).revoke, name, by=session.principal)
    request.app.state.sessions.end_user(name)
    return _back("user-revoked", user=name)


@router.post("/users/{name}/tokens")
async def issue_token(request: Request, name: str = Path(pattern=NAME), session: Session = Depends(needs("users"))) -> Response:
    """Issue a token (form: ttl_days) and show it once; it is never stored, logged or audited."""
    form = await _form(request, session)
    ttl = _ttl_days(form)
    _use_nonce(session, form.get("nonce", ""))
    token = await in_thread(_access(request).issue_token, name, ttl_days=ttl, by=session.principal)
    token_id = token.split("_")[1]
    ctx = {"title": "New token", "user": name, "token": token, "token_id": token_id, "ttl": ttl}
    response = render(request, "token_issued.html", ctx)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: str = Path(pattern=TOKEN_ID), session: Session = Depends(needs("users"))) -> Response:
    """Revoke one token by id; the dashboard sessions signed in with it end now."""
    await _form(request, session)
    await in_thread(_access(request).revoke_token, token_id, by=session.principal)
    request.app.state.sessions.end_token(token_id)
    return _back("token-revoked", token=token_id)
