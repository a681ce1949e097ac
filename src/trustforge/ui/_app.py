"""The dashboard's application: sign-in and sign-out, the security middleware and error pages,
and the routers of the pages (runs, models, audit, drift, users)."""

from __future__ import annotations

import logging
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, unquote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from trustforge.errors import AccessDenied, TrustForgeError
from trustforge.registry import Registry
from trustforge.serve import SourceLimiter, client_address
from trustforge.settings import Settings
from trustforge.ui._render import SECURITY_HEADERS, render
from trustforge.ui._session import (
    COOKIE,
    SIGNIN_COOKIE,
    BadForm,
    CrossSite,
    Forbidden,
    NotSignedIn,
    Session,
    Sessions,
    check_csrf,
    check_origin,
    in_thread,
    needs,
    read_form,
)

__all__ = ["create_app"]

log = logging.getLogger("trustforge.ui")
_STATIC = Path(__file__).parent / "static"


def _safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path of this site only (no scheme, host or `//`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return "/runs"
    return target


def _bad_path(raw: bytes) -> bool:
    """Whether a request path tries to leave its folder: a `.` or `..` segment however it is
    encoded (`..`, `.%2e`, `%2e.`; `%2e%2e` anywhere), an encoded slash or backslash (which would
    hide a segment from the router), a backslash, or a NUL or other control character."""
    low = raw.lower()
    if b"/../" in low + b"/" or b"%2e%2e" in low or b"%2f" in low or b"%5c" in low or b"\\" in low or b"%00" in low:
        return True
    path = unquote(raw.decode("latin-1"))  # as the server decodes it for the router
    if "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        return True
    return any(segment in (".", "..") for segment in path.split("/"))


def create_app(
    settings: Settings | None = None, *, tls: bool = False, session_ttl_s: float = 8 * 3600, registry: Registry | None = None
) -> FastAPI:
    """The dashboard over the workspace of `settings` (default: from the environment).

    Args:
        tls: the app is served over HTTPS (session cookies get `Secure`).
        session_ttl_s: how long a sign-in lasts.
        registry: an open registry to use (tests); default: one opened here as the local admin,
            used only to reach the database, keys and audit log; every action runs as the
            signed-in principal (`Registry.acting_as`).
    """
    settings = settings or Settings.from_env()
    registry = registry or Registry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.limiter.start()  # writes each window's sign-in refusal counts to the audit log
        app.state.cross_site.start()
        yield
        app.state.limiter.close()
        app.state.cross_site.close()

    app = FastAPI(title="TrustForge dashboard", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.audit = registry.audit
    app.state.tls = tls
    # Sign-in refusals are counted per source address (one audit entry per source per window,
    # then 429), not written one by one: anyone could otherwise grow the log at will.
    app.state.limiter = SourceLimiter(registry.audit, "ui:/signin")
    # Forms refused as possibly forged by another site (Origin, Referer, CSRF token) are summarised
    # the same way, naming the signed-in user, the routes and the reasons; never answered 429,
    # since a forging page would spend the victim's address.
    app.state.cross_site = SourceLimiter(registry.audit, "ui")
    from trustforge import secure

    app.state.sessions = Sessions(secure.AccessStore(registry.engine, audit=None, keyring=registry.keyring), ttl_s=session_ttl_s)

    def secured(request: Request, response: Response) -> Response:
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if tls:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")  # redirects that set cookies too
        return response

    def clear_cookie(response: Response, name: str, path: str = "/") -> None:
        response.delete_cookie(name, path=path, secure=tls, httponly=True, samesite="strict")

    @app.middleware("http")
    async def headers(request: Request, call_next):
        raw = request.scope.get("raw_path", b"") or request.url.path.encode()
        if _bad_path(raw):
            response: Response = render(request, "error.html", {"title": "Bad request", "message": "the path is not valid"}, 400)
        else:
            response = await call_next(request)
        return secured(request, response)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn):
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response: Response = RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)
        else:
            response = render(request, "error.html", {"title": "Signed out", "message": exc.reason or "sign in first"}, 401)
        if exc.reason:
            response.set_cookie("tf_notice", "expired", max_age=60, httponly=True, samesite="strict", secure=tls)
        clear_cookie(response, COOKIE)
        return response

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        return render(request, "error.html", {"title": "Not allowed", "message": str(exc)}, 403)

    @app.exception_handler(BadForm)
    async def bad_form(request: Request, exc: BadForm):
        if isinstance(exc, CrossSite):
            session = getattr(request.state, "session", None)
            actor = session.user if session is not None else "anonymous"
            app.state.cross_site.refused(client_address(request.scope), actor, exc.reason, request.url.path[:200])
        return render(request, "error.html", {"title": "Refused", "message": str(exc)}, exc.status)

    @app.exception_handler(AccessDenied)
    async def denied(request: Request, exc: AccessDenied):
        return render(request, "error.html", {"title": "Not allowed", "message": str(exc)}, 403)

    # Library errors are written for the command line, where naming a file in full helps; a page
    # never shows where the workspace lives.
    local = sorted({str(settings.home), settings.home.as_posix()} - {"", "/"}, key=len, reverse=True)

    def unlocal(text: str) -> str:
        for prefix in local:
            text = text.replace(prefix, "the workspace")
        return text

    @app.exception_handler(TrustForgeError)
    async def library_error(request: Request, exc: TrustForgeError):
        return render(request, "error.html", {"title": "Refused", "message": unlocal(str(exc))}, 400)

    @app.exception_handler(RequestValidationError)
    async def bad_query(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return render(request, "error.html", {"title": "Bad request", "message": "; ".join(parts) or "invalid request"}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        titles = {404: "Not found", 405: "Method not allowed"}
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return render(request, "error.html", {"title": titles.get(exc.status_code, "Error"), "message": message}, exc.status_code)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.error("ui_error %s on %s", exc.__class__.__name__, request.url.path)
        # This handler runs outside the middleware above (Starlette calls it from its outermost
        # layer), so the security headers are added here.
        return secured(
            request, render(request, "error.html", {"title": "Internal error", "message": "an internal error; it is logged"}, 500)
        )

    app.mount("/static", StaticFiles(directory=_STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/runs", status_code=303)

    @app.get("/signin")
    def signin_page(request: Request, next: str | None = None) -> Response:
        value = secrets.token_urlsafe(24)
        notice = "your session ended; sign in again" if request.cookies.get("tf_notice") else ""
        response = render(request, "signin.html", {"next": _safe_next(next), "signin_csrf": value, "error": "", "notice": notice})
        response.set_cookie(SIGNIN_COOKIE, value, max_age=900, httponly=True, samesite="strict", secure=tls, path="/signin")
        if request.cookies.get("tf_notice"):
            clear_cookie(response, "tf_notice")
        return response

    @app.post("/signin")
    async def signin(request: Request) -> Response:
        source = client_address(request.scope)
        wait = app.state.limiter.retry_after(source)
        if wait is not None:
            return render(request, "error.html", {"title": "Too many attempts", "message": f"try again in {wait} s"}, 429)
        check_origin(request)  # a sign-in posted from another site (login CSRF) is refused
        form = await read_form(request)
        cookie = request.cookies.get(SIGNIN_COOKIE, "")
        if not cookie or not secrets.compare_digest(form.get("csrf", "").encode(), cookie.encode()):
            raise CrossSite("the sign-in form expired or came from another site; reload it and try again", "sign-in form token")
        token = form.get("token", "").strip()
        target = _safe_next(form.get("next"))
        try:
            session = await in_thread(app.state.sessions.create, token)
        except AccessDenied as exc:  # a genuine token refused (revoked, expired) names its user and id, as the server's refusals do
            app.state.limiter.refused(source, exc.user or "anonymous", "sign-in with an invalid token", "/signin", token=exc.token_id)
            ctx = {
                "next": target,
                "signin_csrf": cookie,
                "error": "That token is not valid (unknown, revoked, expired, or its record was changed outside TrustForge).",
                "notice": "",
            }
            return render(request, "signin.html", ctx, 401)
        app.state.sessions.end(request.cookies.get(COOKIE))  # a browser signing in again drops its old session
        await in_thread(app.state.audit.append, session.user, "ui_signin", "ui", "ok", {"role": session.principal.role})
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, session.sid, max_age=int(session_ttl_s), httponly=True, samesite="strict", secure=tls, path="/")
        clear_cookie(response, SIGNIN_COOKIE, path="/signin")
        return response

    @app.post("/signout")
    async def signout(request: Request, session: Session = Depends(needs("read"))) -> Response:
        form = await read_form(request)
        check_csrf(request, session, form)
        app.state.sessions.end(session.sid)
        await in_thread(app.state.audit.append, session.user, "ui_signout", "ui", "ok", None)
        response = RedirectResponse("/signin", status_code=303)
        clear_cookie(response, COOKIE)
        return response

    from trustforge.ui import _audit, _drift, _models, _runs, _users

    for module in (_runs, _models, _drift, _audit, _users):
        app.include_router(module.router)

    return app
