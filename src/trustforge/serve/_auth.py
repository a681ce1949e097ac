"""Who may call what: bearer tokens from the registry's access store, roles from `POLICY`.

Every route names one action of `trustforge.secure.POLICY` (the single source of who may do
what) or none:

| route                                                    | action  |
|----------------------------------------------------------|---------|
| GET /v2/health/live, /v2/health/ready, /ping             | (open)  |
| GET /docs, /openapi.json                                 | (open)  |
| GET /v2, /v2/models/{name}[/versions/{v}][/ready|/config] | read    |
| GET /v2/models/{name}/drift, /metrics, /health, /version | read    |
| POST /v2/models/{name}[/versions/{v}]/infer, /invocations | predict |

`predict` is granted to every role (viewer and up): whoever may read a model may load it
and compute its predictions anyway, and the applications that call a model need no right to
promote or register one. Starting a server needs `serve` (deployer, admin).

The probes are open because load balancers and Kubernetes call them without credentials;
`/docs` and `/openapi.json` are open because they describe the protocol, which is the same
for every model (a model's input names are in its metadata, which needs `read`), and the
interactive docs fetch the schema before anyone can type a token into them.

A request without a bearer token, or with a malformed, unknown, expired or revoked one, gets
401 with `WWW-Authenticate: Bearer`; a valid token whose role lacks the action gets 403.
A valid token is remembered for `cache_s` seconds (1 s by default): reading the database
cost more than everything else a small request needs. Expiry, revocation and role changes
therefore take effect within `cache_s`, without a restart (`cache_s=0` checks the database
on every request). Only successes are remembered (by the token's SHA-256, never the token);
every refusal is checked anew.

One lookup per token at a time (single flight): when a token's entry has expired, the first
request reads the database in a small thread pool and every request with the same token that
arrives meanwhile waits for that one answer, instead of each reading the database (at 32
clients the expiry of one entry used to send every in-flight request to the database). A
refusal shared that way is counted once per request.

Refusals are not written to the audit log one by one (anyone could then grow it as fast as
they can send requests): they are counted per source address by a `SourceLimiter`, which
writes one audit entry per source per window with the counts, and answers 429 (with
`Retry-After`) to a source that keeps being refused, before any database read or write.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from trustforge import secure
from trustforge.errors import AccessDenied
from trustforge.secure import Principal
from trustforge.serve._limits import SourceLimiter
from trustforge.serve._logging import log_event

__all__ = ["Auth", "authenticated", "bearer_token", "client_address", "require_read", "require_predict", "UNAUTHENTICATED"]

UNAUTHENTICATED = Principal(name="unauthenticated", role="admin", kind="no-auth")
_bearer = HTTPBearer(auto_error=False, description="an API token from `trustforge users token NAME`")


class Auth:
    """Checks one request's token and role.

    Args:
        access: the registry's `AccessStore` (None only without authentication).
        audit: the audit log that records refusals.
        mode: "token", "none" (no tokens; loopback only, checked at start) or "insecure"
            (no tokens; logs a warning on every request).
        obj: what access checks name (the served model's URI).
        cache_s: how long a valid token is remembered (0: never).
        limiter: counts refusals per source and limits sources that keep being refused;
            default: one that writes to `audit` (window 60 s, 30 refusals at once, then 1/s).
    """

    _MAX_CACHED = 10_000
    _KNOWN_S = 900.0  # a token accepted this recently passes the per-address limit (it is still checked)

    def __init__(
        self,
        access: secure.AccessStore | None,
        audit: secure.AuditLog | None,
        mode: Literal["token", "none", "insecure"] = "token",
        obj: str = "models:/",
        cache_s: float = 1.0,
        limiter: SourceLimiter | None = None,
    ):
        if mode == "token" and access is None:
            raise ValueError("token authentication needs an AccessStore")
        self.access = access
        # The same store without its audit log: its refusals are counted by the limiter instead.
        self._quiet = secure.AccessStore(access.engine, audit=None, keyring=access.keyring) if access is not None else None
        self.audit = audit
        self.mode = mode
        self.obj = obj
        self.cache_s = cache_s
        self.limiter = limiter or SourceLimiter(audit, obj)
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._known: dict[bytes, float] = {}
        self._flights: dict[bytes, Future] = {}  # token digest -> the database lookup under way
        self._flights_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.lookups = 0  # database reads of tokens (tests and benchmarks read it)

    def close(self) -> None:
        """Stop the lookup threads (the server calls this when it stops)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def known(self, token: str) -> bool:
        """True when this server accepted `token` in the last 15 minutes (not a proof of validity)."""
        until = self._known.get(_digest(token))
        return until is not None and until > time.monotonic()

    def retry_after(self, source: str, token: str | None) -> int | None:
        """Seconds to wait when `source` is limited and `token` is not one accepted before, else None."""
        if self.mode != "token" or (token and self.known(token)):
            return None
        return self.limiter.retry_after(source)

    def cached(self, token: str) -> Principal | None:
        """The principal of a token checked less than `cache_s` seconds ago, else None."""
        if self.cache_s <= 0:
            return None
        hit = self._cache.get(_digest(token))
        if hit is None or hit[1] <= time.monotonic():
            return None
        return hit[0]

    def anonymous(self, route: str, source: str = "unknown") -> HTTPException:
        """The 401 for a request without a token (counted; no database access)."""
        self.limiter.refused(source, "anonymous", "no bearer token", route)
        return HTTPException(401, "this route needs a bearer token (Authorization: Bearer tfk_...)", headers={"WWW-Authenticate": "Bearer"})

    def authenticate(self, token: str | None, route: str, source: str = "unknown") -> Principal:
        """The principal acting with `token` (blocking: it reads the database).

        Raises:
            HTTPException: 401 for no, malformed, unknown, expired or revoked tokens (counted
                per source by the limiter, which audits them per window).
        """
        if self.mode != "token":
            if self.mode == "insecure":
                log_event(logging.WARNING, "insecure_no_auth", route=route, detail="serving without authentication (--insecure-no-auth)")
            return UNAUTHENTICATED
        if not token:
            raise self.anonymous(route, source)
        try:
            return self._read(token)
        except AccessDenied as exc:
            raise self._invalid(exc, route, source) from None

    async def check(self, token: str | None, action: str | None, route: str, source: str = "unknown") -> Principal:
        """The principal acting with `token`, allowed to do `action` (one database read per
        expired cache entry, shared by the requests that wait for it; off the event loop).
        `action=None` checks only the token.

        Raises:
            HTTPException: 401 (no, malformed, unknown, expired or revoked token), 403 (the
                role may not do `action`); both counted per source by the limiter.
        """
        if self.mode != "token":
            return self.authenticate(None, route)
        if not token:
            raise self.anonymous(route, source)
        who = self.cached(token)
        if who is None:
            try:
                who = await asyncio.shield(asyncio.wrap_future(self._lookup(token)))
            except AccessDenied as exc:
                raise self._invalid(exc, route, source) from None
        if action is not None and not secure.allowed(who.role, action):
            self.authorize(who, action, route, source)  # counts, then raises 403
        return who

    def _lookup(self, token: str) -> Future:
        """The database lookup of `token` under way, started now if there is none."""
        digest = _digest(token)
        with self._flights_lock:
            flight = self._flights.get(digest)
            if flight is not None:
                return flight
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="trustforge-auth")
            flight = self._flights[digest] = self._pool.submit(self._read, token)
        flight.add_done_callback(lambda _: self._land(digest))
        return flight

    def _land(self, digest: bytes) -> None:
        with self._flights_lock:
            self._flights.pop(digest, None)

    def _read(self, token: str) -> Principal:
        """Check `token` in the database and remember it (blocking). Raises AccessDenied."""
        self.lookups += 1
        who = self._quiet.authenticate(token)  # reads the database
        digest = _digest(token)
        now = time.monotonic()
        if len(self._known) >= self._MAX_CACHED:
            self._known.clear()
        self._known[digest] = now + self._KNOWN_S
        if self.cache_s > 0:
            if len(self._cache) >= self._MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (who, now + self.cache_s)
        return who

    def _invalid(self, exc: AccessDenied, route: str, source: str) -> HTTPException:
        # A genuine token refused (revoked, expired) names its user and id: who keeps using it.
        self.limiter.refused(source, exc.user or "anonymous", _reason(str(exc)), route, token=exc.token_id)
        return HTTPException(401, str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def authorize(self, who: Principal, action: str, route: str = "unmatched", source: str = "unknown") -> None:
        """Return if `who`'s role may do `action` (POLICY); else count the refusal and raise 403."""
        try:
            secure.require(who, action, self.obj, None)
        except AccessDenied as exc:
            self.limiter.refused(source, who.name, f"role {who.role} may not {action}", route)
            raise HTTPException(403, str(exc)) from None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


_REASONS = (("malformed", "malformed"), ("not valid", "unknown or wrong"), ("expired", "expired"), ("user ", "user revoked"))


def _reason(message: str) -> str:
    """The kind of a refused token, from AccessStore's message (which never holds the secret)."""
    for needle, reason in _REASONS:
        if needle in message:
            return reason
    return "revoked" if "revoked" in message else "refused"


def client_address(scope: dict) -> str:
    """The request's source address (uvicorn applies trusted proxy headers before this)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _route(request: Request) -> str:
    return getattr(request.scope.get("route"), "path", "unmatched")


def bearer_token(scope: dict) -> str | None:
    """The token of an `Authorization: Bearer ...` header, else None."""
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            return (rest.strip() or None) if scheme.lower() == "bearer" else None
    return None


async def authenticated(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """The caller (401 unless the token is valid). Tests override this to act as any principal."""
    auth: Auth = request.app.state.auth
    token = credentials.credentials if credentials is not None else None
    return await auth.check(token, None, _route(request), client_address(request.scope))


def _needs(action: str):
    async def dependency(request: Request, who: Principal = Depends(authenticated)) -> Principal:
        auth: Auth = request.app.state.auth
        if not secure.allowed(who.role, action):
            auth.authorize(who, action, _route(request), client_address(request.scope))  # counts, then raises 403
        request.state.principal = who.name
        return who

    dependency.__name__ = f"require_{action}"
    return dependency


require_read = _needs("read")
require_predict = _needs("predict")
