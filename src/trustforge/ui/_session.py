"""Sign-in, sessions, CSRF and the role check of every page and action of the dashboard.

A user signs in with a registry API token (`trustforge users token NAME`). The token is kept in
this process's memory only, never on disk or in a cookie; the browser gets a random session id
in a cookie (HttpOnly, SameSite=Strict, Secure when served over TLS, expiring). Every request
authenticates the session's token against the registry again (`AccessStore.authenticate`), so a
revoked or expired token, a revoked user or a changed role takes effect on the next request.

Every change is a POST form that carries the session's CSRF token (field `csrf`, or header
`X-CSRF-Token`), compared in constant time; the sign-in form, which has no session yet, uses a
double-submit cookie. Such refusals (`CrossSite`) are audited by the app, summarised per source
address per minute. Every page and action names one action of `trustforge.secure.POLICY`
through `needs(action)`; a principal whose role lacks it gets 403, and the denial is audited.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qs

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from trustforge import secure
from trustforge.errors import AccessDenied
from trustforge.secure import Principal

__all__ = [
    "COOKIE",
    "SIGNIN_COOKIE",
    "Session",
    "Sessions",
    "NotSignedIn",
    "Forbidden",
    "BadForm",
    "CrossSite",
    "needs",
    "read_form",
    "check_csrf",
    "check_origin",
]

COOKIE = "tf_session"
SIGNIN_COOKIE = "tf_signin"  # the sign-in form's double-submit CSRF value
_MAX_FORM_BYTES = 64 * 1024


class NotSignedIn(Exception):
    """No valid session: the page redirects to /signin (an action answers 401)."""

    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason


class Forbidden(Exception):
    """The principal's role lacks the action (already audited): 403."""


class BadForm(Exception):
    """A form that is not url-encoded, too large, or misses or fails its CSRF token: 400/403."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class CrossSite(BadForm):
    """A change refused as possibly forged by another site (its Origin or Referer, or a missing or
    wrong CSRF token): 403. `reason` is a short fixed text for the audit log's summary."""

    def __init__(self, message: str, reason: str):
        super().__init__(message, 403)
        self.reason = reason


@dataclass
class Session:
    """One signed-in browser: the token stays here, the browser holds only `sid`."""

    sid: str
    token: str
    csrf: str
    user: str
    created: float
    expires: float  # absolute expiry (monotonic seconds)
    principal: Principal | None = None
    checked: float = 0.0  # when `principal` was last read from the registry (monotonic)
    meta: dict = field(default_factory=dict)


class Sessions:
    """The sessions of one dashboard process (in memory: a restart signs everyone out).

    Args:
        access: the registry's `AccessStore`; every request re-authenticates through it.
        ttl_s: how long a session lasts after sign-in.
        recheck_s: how long a session's principal is trusted before the token is read from the
            database again (0: on every request, the default; revocation then acts at once).
        max_sessions: the oldest sessions are dropped past this many.
    """

    def __init__(self, access: secure.AccessStore, *, ttl_s: float = 8 * 3600, recheck_s: float = 0.0, max_sessions: int = 10_000):
        self.access = access
        self.ttl_s = ttl_s
        self.recheck_s = recheck_s
        self.max_sessions = max_sessions
        self._by_sid: dict[str, Session] = {}
        self._lock = threading.Lock()
        # Sessions ended by an admin (token or user revoked) -> why: the browser's next request
        # is told its session ended, once. Bounded: the oldest are forgotten past _ENDED_MAX.
        self._ended: OrderedDict[str, str] = OrderedDict()

    _ENDED_MAX = 1000

    def _ended_by_admin(self, gone: list[str], reason: str) -> None:
        """Remember why the sessions `gone` ended (called with the lock held)."""
        for sid in gone:
            self._ended[sid] = reason
        while len(self._ended) > self._ENDED_MAX:
            self._ended.popitem(last=False)

    def create(self, token: str) -> Session:
        """Authenticate `token` and open a session for it.

        Raises:
            AccessDenied: the token is malformed, unknown, expired or revoked (audited by the store).
        """
        principal = self.access.authenticate(token)
        if principal.kind == "local-admin":  # authenticate(None); never from a form, but be explicit
            raise AccessDenied("sign in with an API token")
        now = time.monotonic()
        session = Session(
            sid=secrets.token_urlsafe(32),
            token=token.strip(),
            csrf=secrets.token_urlsafe(32),
            user=principal.name,
            created=now,
            expires=now + self.ttl_s,
            principal=principal,
            checked=now,
        )
        with self._lock:
            if len(self._by_sid) >= self.max_sessions:
                oldest = min(self._by_sid.values(), key=lambda s: s.created)
                self._by_sid.pop(oldest.sid, None)
            self._by_sid[session.sid] = session
        return session

    def end(self, sid: str | None) -> Session | None:
        """Forget a session (sign-out); returns it, or None when there was none."""
        if not sid:
            return None
        with self._lock:
            return self._by_sid.pop(sid, None)

    def end_token(self, token_id: str) -> int:
        """Forget every session signed in with the token whose id is `token_id`; returns how many."""
        prefix = f"tfk_{token_id}_"
        with self._lock:
            gone = [sid for sid, s in self._by_sid.items() if s.token.startswith(prefix)]
            for sid in gone:
                self._by_sid.pop(sid, None)
            self._ended_by_admin(gone, "your token was revoked by an administrator; sign in with a current one")
        return len(gone)

    def end_user(self, name: str) -> int:
        """Forget every session of user `name` (their user was revoked); returns how many."""
        with self._lock:
            gone = [sid for sid, s in self._by_sid.items() if s.user == name]
            for sid in gone:
                self._by_sid.pop(sid, None)
            self._ended_by_admin(gone, "your user was revoked by an administrator")
        return len(gone)

    def current(self, sid: str | None) -> Session:
        """The live session of `sid`, with its principal re-read from the registry.

        Raises:
            NotSignedIn: no such session, it expired, or its token no longer authenticates.
        """
        if not sid:
            raise NotSignedIn("")
        with self._lock:
            session = self._by_sid.get(sid)
            ended = self._ended.pop(sid, None) if session is None else None
        now = time.monotonic()
        if session is None:
            raise NotSignedIn(ended or "")
        if session.expires <= now:
            self.end(sid)
            raise NotSignedIn("your session expired; sign in again")
        if session.principal is None or now - session.checked >= self.recheck_s:
            try:
                session.principal = self.access.authenticate(session.token)
            except AccessDenied:
                self.end(sid)
                raise NotSignedIn("your token is no longer valid (revoked or expired); sign in with a current one") from None
            session.checked = now
        return session


def needs(action: str) -> Callable:
    """A FastAPI dependency: the signed-in session, whose role may do `action` (POLICY).

    Raises (to the app's handlers):
        NotSignedIn: no live session.
        Forbidden: the role lacks `action`; the denial is written to the audit log first.
    """
    if action not in secure.ACTIONS:
        raise ValueError(f"unknown action {action!r}")

    def dependency(request: Request) -> Session:
        sessions: Sessions = request.app.state.sessions
        session = sessions.current(request.cookies.get(COOKIE))
        principal = session.principal
        assert principal is not None
        request.state.session = session  # the 403 page still shows who is signed in
        try:
            secure.require(principal, action, f"ui:{request.url.path}", request.app.state.audit)
        except AccessDenied as exc:
            raise Forbidden(str(exc)) from None
        return session

    dependency.action = action  # type: ignore[attr-defined]  # read by the route table's tests
    return dependency


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded form of a POST (one value per field; at most 64 KiB).

    Raises:
        BadForm: another content type, a larger body, or a field given twice.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise BadForm("the form is larger than 64 KiB", 413)
    if not body and not kind:
        return {}  # an empty POST: an empty form (its CSRF check then refuses it)
    if kind != "application/x-www-form-urlencoded":
        raise BadForm("send the form as application/x-www-form-urlencoded", 415)
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise BadForm("the form is not valid url-encoded UTF-8") from None
    if any(len(v) > 1 for v in parsed.values()):
        raise BadForm("a form field was given more than once")
    return {k: v[0] for k, v in parsed.items()}


def check_origin(request: Request) -> None:
    """Refuse a POST whose Origin header names another site, or is "null" (an opaque origin: a
    sandboxed frame, a `data:` page, or a cross-site form under `Referrer-Policy: no-referrer`;
    the dashboard's own pages send `same-origin`, so their forms carry their real Origin).
    Without an Origin (an old browser, or not a browser), a Referer of another site is refused;
    with neither, the CSRF token decides.

    Raises:
        CrossSite: 403.
    """
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    origin = request.headers.get("origin")
    if origin == "null":
        raise CrossSite("the request came from a page of no known site (Origin: null); refused", "Origin: null")
    if origin is not None and origin != own:
        raise CrossSite("the request came from another site (Origin does not match); refused", "cross-origin (Origin)")
    referer = request.headers.get("referer")
    if origin is None and referer is not None and referer != own and not referer.startswith(own + "/"):
        raise CrossSite("the request came from another site (Referer does not match); refused", "cross-origin (Referer)")


def check_csrf(request: Request, session: Session, form: dict[str, str]) -> None:
    """Refuse a change whose CSRF token (form field `csrf` or header `X-CSRF-Token`) is missing or
    not this session's, or whose Origin is another site.

    Raises:
        CrossSite: 403, naming what was wrong (never the expected value).
    """
    check_origin(request)
    given = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not given:
        raise CrossSite("the form has no CSRF token; reload the page and try again", "no CSRF token")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), session.csrf.encode()):
        raise CrossSite("the form's CSRF token is wrong or from an earlier session; reload the page and try again", "wrong CSRF token")


async def in_thread(fn: Callable, *args, **kwargs):
    """Run blocking library work (database, files) off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)
