"""The FastAPI app: both protocols' routes over one predict path, errors as JSON, metrics, logs.

`create_app(service)` builds the app around a `ModelService`. Dependencies (`get_service`,
`authenticated`) come through `Depends`, so tests can override them. One pure-ASGI gate in
front of everything gives each request an id, refuses bodies over `max_request_bytes` before
anything parses them (413), measures it (duration, in flight, status) and logs one JSON line
without the payload.

The inference routes (`/v2/models/.../infer`, `/invocations`) are *plain*: documented like
the others (their FastAPI endpoints give the OpenAPI operation), but answered by a handler
that takes the request and checks the token and path parameters itself, with no dependency
injection (which took about a quarter of the server's own time per request). The app
(`_ServerApp`) dispatches them before Starlette's middleware and router, through the same gate
and exception handlers.

Errors are JSON bodies naming the field at fault: `{"error": "..."}` everywhere (the v2
protocol's form, which `tritonclient` reads), and MLflow's `{"error_code", "message"}` on
`/invocations`.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, request_response

from trustforge import __version__
from trustforge._shown import recorded
from trustforge.errors import TrustForgeError
from trustforge.serve._auth import Auth, bearer_token, client_address, require_predict, require_read
from trustforge.serve._batching import BatcherClosed, QueueFull
from trustforge.serve._expect import check_request
from trustforge.serve._formats import CONTENT_TYPES
from trustforge.serve._logging import log_event
from trustforge.serve._metrics import CONTENT_TYPE, ServeMetrics
from trustforge.serve._ood import OodVerdict, ood_headers, split_ood
from trustforge.serve._protocol import (
    config_inputs,
    config_outputs,
    dumps,
    encode_infer,
    encode_scoring,
    imputed_headers,
    parse_infer,
    parse_invocation,
    resolve_outputs,
)
from trustforge.serve._quota import ProbeDetector, QuotaLimiter, RateLimited
from trustforge.serve._schemas import (
    ErrorBody,
    InferenceRequest,
    InferenceResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    ScoringError,
    ScoringRequest,
    ScoringResponse,
    ServerMetadata,
)
from trustforge.serve._service import InternalError, ModelService, Runtime, WorkerCrashed
from trustforge.serve._signature import RequestError

__all__ = ["create_app", "get_service"]

# Request ids: a random prefix per process and a counter (os.urandom per request costs more
# than the rest of a small request on a busy virtual machine).
_ID_PREFIX = uuid.uuid4().hex[:8] + "-"
_ids = itertools.count(1)
_OFFLOAD_BYTES = 256 * 1024  # bodies above this are parsed in a thread, off the event loop
_MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "REQUEST_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    422: "INVALID_PARAMETER_VALUE",  # rows refused as out of distribution (--ood refuse)
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_NAME_MAX, _VERSION_MAX = 256, 64
_NAME = Path(..., description="the served model's name", max_length=_NAME_MAX)
_VERSION = Path(..., description="the served version's number", max_length=_VERSION_MAX)


async def get_service(request: Request) -> ModelService:
    """The model service behind the app (tests override this dependency)."""
    return request.app.state.service


async def _public(request: Request) -> None:
    """Who may read metadata and readiness with `--public-metadata`: anyone (no token asked)."""
    request.state.principal = "anonymous"


def _runtime(service: ModelService, name: str, version: str | None) -> Runtime:
    rt = service.current
    if rt is None:
        raise StarletteHTTPException(503, "no model is loaded yet", headers={"Retry-After": "1"})
    if name != rt.name:
        raise StarletteHTTPException(404, f"model {name[:100]!r} is not served here; this server serves {rt.name!r}")
    if version is not None and version != rt.version:
        raise StarletteHTTPException(404, f"version {version[:40]!r} of {rt.name!r} is not served; this server serves version {rt.version}")
    return rt


def _count_imputed(metrics: ServeMetrics, model: str, imputed: dict[str, int]) -> None:
    """Add a served request's filled-in values to `trustforge_imputed_values_total{model, column}`."""
    for column, count in imputed.items():
        if count:
            metrics.imputed.labels(model, column).inc(count)


def _apply_ood(metrics: ServeMetrics, model: str, verdict: OodVerdict | None, policy: str) -> dict | None:
    """Count a request's out-of-distribution rows and apply the policy: refuse (422 naming
    the rows and their scores) or return what the response says about them (None: no detector)."""
    if verdict is None:
        return None
    rows = verdict.rows
    if rows and policy == "refuse":
        metrics.ood.labels(model, "refused").inc(len(rows))
        raise StarletteHTTPException(422, str(verdict.refusal()))
    if rows:
        metrics.ood.labels(model, "flagged").inc(len(rows))
    return verdict.body(policy)


def request_message(exc: RequestError, manifest: dict[str, Any] | None) -> str:
    """What a 400 says: a model trained with `data.protect` quotes no detected personal value.
    Each value the message quotes is masked whole before it is cut to its short form (a cut
    `jonathan.private.per...` is no longer an email to the detector), then the rest of the
    message is masked too (a message from a worker quotes values whole)."""
    record = (manifest or {}).get("pii")
    if not record:
        return exc.shown()
    from trustforge.data import mask_message

    return mask_message(exc.shown(lambda text: mask_message(text, record)), record)


def _error_body(path: str, status: int, message: str) -> bytes:
    if path == "/invocations":
        # MLflow's codes have none for 405 and the like: a client's mistake is BAD_REQUEST, never
        # INTERNAL_ERROR, which tells a client the server failed (and its retry logic to retry).
        code = _MLFLOW_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
        return dumps({"error_code": code, "message": message})
    return dumps({"error": message})


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(_error_body(request.url.path, status, message), status_code=status, headers=headers, media_type="application/json")


async def _parse(fn: Callable[..., Any], body: bytes, *args: Any) -> Any:
    if len(body) > _OFFLOAD_BYTES:
        return await run_in_threadpool(fn, body, *args)
    return fn(body, *args)


_BODY = "trustforge.body"  # the scope key under which `_Gate` leaves the body it read


async def _request_body(request: Request) -> bytes:
    """The request's body: as `_Gate` read it (every request passes the gate), else read now."""
    body = request.scope.get(_BODY)
    return body if body is not None else await request.body()


def _path_param(request: Request, name: str, limit: int) -> str:
    """A path parameter of a plain route, checked as its `Path(max_length=...)` documents."""
    value = request.path_params[name]
    if len(value) > limit:
        raise RequestError(f"path.{name}: String should have at most {limit} characters")
    return value


async def _caller(request: Request, auth: Auth, action: str, quota: QuotaLimiter | None = None) -> str:
    """Check a plain route's token and role (401/403 as HTTPException), then the caller's rate
    limit and quota (RateLimited); returns the caller's key for the limits. The gate logs the principal."""
    scope = request.scope
    source = client_address(scope)
    who = await auth.check(bearer_token(scope), action, getattr(scope.get("route"), "path", "unmatched"), source)
    scope.setdefault("state", {})["principal"] = who.name
    key = who.name if who.kind != "no-auth" else f"address {source}"  # without tokens, every address is a caller
    if quota is not None:
        quota.admit(key)
    return key


def _plain(app: FastAPI, handler: Callable[[Request], Any]) -> None:
    """Answer the routes whose endpoint is `handler`'s documented face with `handler` alone (no
    dependency injection), through Starlette's router and, for the app's own calls, `_ServerApp`'s direct dispatch."""
    for route in app.router.routes:
        if isinstance(route, APIRoute) and getattr(route.endpoint, "plain", None) is handler:
            route.app = request_response(handler)
            if isinstance(app, _ServerApp):
                app.direct[id(route)] = handler


class _ServerApp(FastAPI):
    """The server's app: the inference routes are dispatched before Starlette's middleware and router.

    A POST whose route (the first route matching it in full, exactly as the router chooses) is
    a plain inference route goes through the same `_Gate` (request id, per-address limit, body
    limit, metrics, log line) to the same handler (token, role, limits, validation: every
    check), and its errors to the same exception handlers, without the seven layers of
    middleware and the dependency-injection stack between them (about a fifth of the server
    process's CPU per small request). Everything else, and any app given more middleware or
    a root path, takes the usual path.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direct: dict[int, Callable[[Request], Any]] = {}  # id(route) -> plain handler (routes are not hashable)
        self._gate: _Gate | None = None
        self._post_routes: list | None = None
        # (path, root_path) -> (route, its child scope) of a direct route, or None: what `_match`
        # found for that path (bounded: paths are the clients' choice)
        self._matched: dict[tuple[str, str], tuple[Any, dict] | None] = {}

    def _prepare(self) -> None:
        gates = [m for m in self.user_middleware if m.cls is _Gate]
        if len(self.user_middleware) != 1 or not gates or not self.direct:
            self._post_routes = []  # another middleware: everything goes through the stack
            return
        self._gate = _Gate(self._dispatch, *gates[0].args, **gates[0].kwargs)
        # The routes that could take a POST in full, in the router's order (others answer it PARTIAL or NONE).
        self._post_routes = [r for r in self.router.routes if getattr(r, "methods", None) is None or "POST" in r.methods]

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not self.root_path:
            if self._post_routes is None:
                self._prepare()
            if "path_params" in scope:  # not as uvicorn calls an app: match afresh
                found = self._match(scope)
            else:
                key = (scope["path"], scope.get("root_path", ""))
                found = self._matched.get(key, False)
                if found is False:
                    found = self._match(scope)
                    if len(self._matched) >= 256:
                        self._matched.clear()
                    self._matched[key] = found
            if found is not None:
                route, child = found
                scope["app"] = self
                scope["router"] = self.router
                scope.update(child)
                scope["path_params"] = dict(child["path_params"])  # each request its own
                await self._gate(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _match(self, scope: dict) -> tuple[Any, dict] | None:
        """(route, child scope) when the route the router would choose for this POST is a
        direct one, else None. The answer depends only on the path (and the scope's root path),
        so `__call__` remembers it per path."""
        for route in self._post_routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return (route, {**child, "route": route}) if id(route) in self.direct else None
        return None

    async def _dispatch(self, scope: dict, receive: Callable, send: Callable) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self.direct[id(scope["route"])](request)
        except Exception as exc:  # noqa: BLE001 - answered by the app's handler for it, as Starlette would
            handler = _handler_for(self.exception_handlers, exc)
            if handler is None:
                raise
            response = (
                await handler(request, exc) if inspect.iscoroutinefunction(handler) else await run_in_threadpool(handler, request, exc)
            )
        await response(scope, receive, send)


def _handler_for(handlers: dict, exc: Exception) -> Callable | None:
    """The exception handler Starlette would pick: by status code for an HTTPException, else by
    the exception's classes in order, else the handler of 500."""
    if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return handlers.get(500)


def _metadata(rt: Runtime, backend: str) -> dict[str, Any]:
    return {
        "name": rt.name,
        "versions": [rt.version],
        "platform": "trustforge_onnxruntime" if backend == "onnx" else "trustforge_pytorch",
        "inputs": rt.signature.metadata_inputs(),
        "outputs": [s.metadata() for s in rt.signature.outputs],
    }


_ERRORS = {
    400: {"model": ErrorBody, "description": "the request is malformed or does not fit the model's signature"},
    401: {"model": ErrorBody, "description": "no valid bearer token"},
    403: {"model": ErrorBody, "description": "the token's role may not do this"},
    404: {"model": ErrorBody, "description": "no such model or version on this server"},
    429: {
        "model": ErrorBody,
        "description": "too many refusals from this address, or the caller's rate limit or daily quota; retry after Retry-After seconds",
    },
}
_INFER_ERRORS = {
    **_ERRORS,
    413: {"model": ErrorBody, "description": "the body is larger than the server accepts"},
    422: {"model": ErrorBody, "description": "rows out of distribution for this model, refused (--ood refuse)"},
    503: {"model": ErrorBody, "description": "the queue is full; retry after Retry-After seconds"},
}


def _body(schema: str, binary: bool = False, tables: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if tables:  # /invocations: CSV as MLflow reads it, and Parquet
        content["text/csv"] = {"schema": {"type": "string"}, "description": "a header row of column names, then one row per record"}
        for kind in CONTENT_TYPES[2:]:
            content[kind] = {"schema": {"type": "string", "format": "binary"}, "description": "a Parquet file"}
    if binary:
        content["application/octet-stream"] = {
            "schema": {"type": "string", "format": "binary"},
            "description": "the JSON header (Inference-Header-Content-Length bytes) then binary tensor data",
        }
    return {"requestBody": {"required": True, "content": content}}


def create_app(service: ModelService, auth: Auth | None = None, *, manage: bool = False) -> FastAPI:
    """The HTTP app serving `service`.

    Args:
        service: the model service (started already unless `manage`).
        auth: how requests are authenticated; default: bearer tokens against the service's
            registry (or none, per `service.config.auth`).
        manage: start the service when the app starts and close it when the app stops.
    """
    config = service.config
    if auth is None:
        if config.auth == "token":
            auth = Auth(service.registry.access, service.registry.audit, "token", obj=service.source.object, cache_s=config.auth_cache_s)
        else:
            auth = Auth(None, None, config.auth, obj=service.source.object)
    metrics: ServeMetrics = service.metrics
    if auth.mode == "token":
        auth.limiter.start()  # writes each window's refusal counts to the audit log
        service.on_close(auth.limiter.close)
        service.on_close(auth.close)
    quota = _quota(service, metrics)
    detector = quota.detector  # files each served request's rows per caller (probing alerts)

    lifespan = _managed(service) if manage else None
    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        # FastAPI's own OpenTelemetry hooks check for providers on every request; this server
        # exports Prometheus metrics itself, so they stay off.
        options["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = _ServerApp(
        title="TrustForge model server",
        version=__version__,
        lifespan=lifespan,
        description="Open Inference Protocol v2 and MLflow scoring for one TrustForge model. "
        "Every route but the health probes needs `Authorization: Bearer <token>`.",
        **options,
    )
    app.state.service = service
    app.state.auth = auth
    read_meta = _public if config.public_metadata else require_read  # --public-metadata: probes need no token
    app.state.metrics = metrics
    app.state.quota = quota
    app.add_middleware(_Gate, max_body=config.max_request_bytes, metrics=metrics, auth=auth)

    # ------------------------------------------------------------------ errors

    @app.exception_handler(RequestError)
    async def _bad_request(request: Request, exc: RequestError) -> Response:
        rt = service.current
        return _error(
            request, exc.status, request_message(exc, rt.model.manifest if rt is not None else None)
        )  # 400; 415 for a content type /invocations does not read

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        err = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in err.get("loc", ()))
        return _error(request, 400, f"{where}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")

    @app.exception_handler(RateLimited)
    async def _rate_limited(request: Request, exc: RateLimited) -> Response:
        return _error(request, 429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(QueueFull)
    async def _full(request: Request, exc: QueueFull) -> Response:
        return _error(request, 503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(BatcherClosed)
    async def _closed(request: Request, exc: BatcherClosed) -> Response:
        return _error(request, 503, str(exc), {"Retry-After": "1"})

    @app.exception_handler(asyncio.TimeoutError)
    async def _timeout(request: Request, exc: Exception) -> Response:
        return _error(request, 504, f"no prediction within {config.request_timeout_s:g} s")

    @app.exception_handler(WorkerCrashed)
    @app.exception_handler(InternalError)
    async def _model_failed(request: Request, exc: Exception) -> Response:
        return _error(request, 500, str(exc))

    @app.exception_handler(TrustForgeError)
    async def _library(request: Request, exc: TrustForgeError) -> Response:
        log_event(logging.ERROR, "request_failed", route=request.url.path, error=recorded(exc))
        return _error(request, 500, f"{exc.__class__.__name__}: the server could not answer; see its log")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log_event(logging.ERROR, "internal_error", route=request.url.path, error=exc.__class__.__name__)
        return _error(request, 500, "internal error; see the server log")

    # ------------------------------------------------------------------ v2: health and metadata

    @app.get("/v2/health/live", response_model=Live, tags=["v2"], summary="Liveness (open)")
    async def live() -> Live:
        return Live(live=True)

    @app.get(
        "/v2/health/ready",
        response_model=Ready,
        tags=["v2"],
        summary="Readiness (open)",
        responses={503: {"model": Ready, "description": "no model worker is ready"}},
    )
    async def ready(svc: ModelService = Depends(get_service)) -> Response:
        ok = svc.current is not None and svc.current.ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2", response_model=ServerMetadata, tags=["v2"], summary="Server metadata", responses=_ERRORS)
    async def server_metadata(_=Depends(read_meta)) -> ServerMetadata:
        return ServerMetadata(
            name="trustforge", version=__version__, extensions=["binary_tensor_data", "classification", "model_configuration"]
        )

    @app.get("/v2/models/{model_name}", response_model=ModelMetadata, tags=["v2"], summary="Model metadata", responses=_ERRORS)
    async def model_metadata(model_name: str = _NAME, svc: ModelService = Depends(get_service), _=Depends(read_meta)) -> dict:
        return _metadata(_runtime(svc, model_name, None), config.backend)

    @app.get(
        "/v2/models/{model_name}/versions/{model_version}",
        response_model=ModelMetadata,
        tags=["v2"],
        summary="Model version metadata",
        responses=_ERRORS,
    )
    async def version_metadata(
        model_name: str = _NAME, model_version: str = _VERSION, svc: ModelService = Depends(get_service), _=Depends(read_meta)
    ) -> dict:
        return _metadata(_runtime(svc, model_name, model_version), config.backend)

    async def _model_ready(svc: ModelService, name: str, version: str | None) -> Response:
        rt = _runtime(svc, name, version)
        return JSONResponse({"name": rt.name, "ready": rt.ready}, status_code=200 if rt.ready else 503)

    @app.get("/v2/models/{model_name}/ready", response_model=ModelReady, tags=["v2"], summary="Model readiness", responses=_ERRORS)
    async def model_ready(model_name: str = _NAME, svc: ModelService = Depends(get_service), _=Depends(read_meta)) -> Response:
        return await _model_ready(svc, model_name, None)

    @app.get(
        "/v2/models/{model_name}/versions/{model_version}/ready",
        response_model=ModelReady,
        tags=["v2"],
        summary="Model version readiness",
        responses=_ERRORS,
    )
    async def version_ready(
        model_name: str = _NAME, model_version: str = _VERSION, svc: ModelService = Depends(get_service), _=Depends(read_meta)
    ) -> Response:
        return await _model_ready(svc, model_name, model_version)

    def _config(rt: Runtime) -> dict:
        return {
            "name": rt.name,
            "platform": _metadata(rt, config.backend)["platform"],
            "max_batch_size": config.max_batch_size,
            "dynamic_batching": {
                "max_queue_delay_microseconds": int(config.max_latency_ms * 1000),
                "default_queue_policy": {"max_queue_size": config.max_queue},
            },
            "instance_group": [{"count": max(1, config.workers), "kind": "KIND_CPU"}],
            "input": config_inputs(rt.signature),
            "output": config_outputs(rt.signature),
            "parameters": {"ood": rt.ood_guard},
        }

    @app.get("/v2/models/{model_name}/config", tags=["v2"], summary="Model configuration (Triton's extension)", responses=_ERRORS)
    async def model_config(model_name: str = _NAME, svc: ModelService = Depends(get_service), _=Depends(read_meta)) -> dict:
        return _config(_runtime(svc, model_name, None))

    @app.get(
        "/v2/models/{model_name}/versions/{model_version}/config",
        tags=["v2"],
        summary="Model configuration of a version (Triton's extension)",
        responses=_ERRORS,
    )
    async def version_config(
        model_name: str = _NAME, model_version: str = _VERSION, svc: ModelService = Depends(get_service), _=Depends(read_meta)
    ) -> dict:
        return _config(_runtime(svc, model_name, model_version))

    # ------------------------------------------------------------------ v2: inference

    async def _infer(request: Request, svc: ModelService, name: str, version: str | None, caller: str) -> Response:
        body = await _request_body(request)
        header_length = request.headers.get("inference-header-content-length")
        for _attempt in range(2):  # a swap between parsing and queueing: parse again for the new version
            rt = _runtime(svc, name, version)
            parsed = await _parse(parse_infer, body, header_length, rt.signature)
            expect = check_request(metrics.expect, rt.model, rt.name, parsed.payload, parsed.imputed)  # data.expect: 400 or flags
            try:
                columns = await rt.predict(parsed.payload)
                columns, verdict = split_ood(columns)
                if detector is not None:  # before a refusal: refused out-of-distribution probes count too
                    detector.observe(caller, parsed.payload, ood_count=len(verdict.rows) if verdict is not None else 0)
                ood = _apply_ood(metrics, rt.name, verdict, config.ood)
                content, headers = encode_infer(resolve_outputs(columns, rt.signature), parsed, rt.name, rt.version, ood=ood)
            except BatcherClosed:
                continue
            except (RequestError, StarletteHTTPException):  # refused after all (the model's 400, the guard's 422)
                expect.count(metrics.expect, rt.name, "refused")
                raise
            expect.count(metrics.expect, rt.name, "flagged")  # only what is answered counts as flagged
            _count_imputed(metrics, rt.name, parsed.imputed)
            return Response(content, headers={**headers, **expect.headers()})
        raise BatcherClosed("the model version changed twice during this request; retry")

    async def infer_plain(request: Request) -> Response:
        caller = await _caller(request, auth, "predict", quota)
        name = _path_param(request, "model_name", _NAME_MAX)
        version = _path_param(request, "model_version", _VERSION_MAX) if "model_version" in request.path_params else None
        return await _infer(request, service, name, version, caller)

    @app.post(
        "/v2/models/{model_name}/infer",
        response_model=InferenceResponse,
        tags=["v2"],
        summary="Inference",
        responses=_INFER_ERRORS,
        openapi_extra=_body("InferenceRequest", binary=True),
    )
    async def infer(request: Request, model_name: str = _NAME, _=Depends(require_predict)) -> Response:
        return await infer_plain(request)  # the OpenAPI operation; requests go to infer_plain directly

    infer.plain = infer_plain  # type: ignore[attr-defined]

    @app.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        response_model=InferenceResponse,
        tags=["v2"],
        summary="Inference on a version",
        responses=_INFER_ERRORS,
        openapi_extra=_body("InferenceRequest", binary=True),
    )
    async def infer_version(
        request: Request, model_name: str = _NAME, model_version: str = _VERSION, _=Depends(require_predict)
    ) -> Response:
        return await infer_plain(request)

    infer_version.plain = infer_plain  # type: ignore[attr-defined]

    @app.get("/v2/models/{model_name}/drift", tags=["monitoring"], summary="Drift of the inputs served so far", responses=_ERRORS)
    async def drift(model_name: str = _NAME, svc: ModelService = Depends(get_service), _=Depends(require_read)) -> dict:
        rt = _runtime(svc, model_name, None)
        if rt.monitor is None:
            return {
                "model_name": rt.name,
                "model_version": rt.version,
                "enabled": False,
                "reason": "the package has no reference statistics (or drift monitoring is not installed)",
                "drift": None,
            }
        status = await run_in_threadpool(rt.drift.status) if rt.drift is not None else await run_in_threadpool(rt.monitor.status)
        return {"model_name": rt.name, "model_version": rt.version, "enabled": True, "drift": status}

    # ------------------------------------------------------------------ MLflow scoring

    @app.post(
        "/invocations",
        response_model=ScoringResponse,
        tags=["mlflow"],
        summary="MLflow scoring",
        responses={k: {**v, "model": ScoringError} for k, v in _INFER_ERRORS.items() if k != 404},
        openapi_extra=_body("ScoringRequest", tables=True),
    )
    async def invocations(request: Request, _=Depends(require_predict)) -> Response:
        return await invocations_plain(request)  # the OpenAPI operation; requests go to invocations_plain directly

    async def invocations_plain(request: Request) -> Response:
        caller = await _caller(request, auth, "predict", quota)
        kind = request.headers.get("content-type")
        body = await _request_body(request)
        for _attempt in range(2):
            rt = service.current
            if rt is None:
                raise StarletteHTTPException(503, "no model is loaded yet", headers={"Retry-After": "1"})
            parsed = await _parse(parse_invocation, body, kind, rt.signature, config.max_request_bytes)
            expect = check_request(metrics.expect, rt.model, rt.name, parsed.payload, parsed.imputed)  # data.expect: 400 or flags
            try:
                columns = await rt.predict(parsed.payload)
                columns, verdict = split_ood(columns)
                if detector is not None:  # before a refusal: refused out-of-distribution probes count too
                    detector.observe(caller, parsed.payload, ood_count=len(verdict.rows) if verdict is not None else 0)
                ood = _apply_ood(metrics, rt.name, verdict, config.ood)
                content = encode_scoring(columns, ood=ood)
            except BatcherClosed:
                continue
            except (RequestError, StarletteHTTPException):  # refused after all (the model's 400, the guard's 422)
                expect.count(metrics.expect, rt.name, "refused")
                raise
            expect.count(metrics.expect, rt.name, "flagged")  # only what is answered counts as flagged
            _count_imputed(metrics, rt.name, parsed.imputed)
            return Response(
                content, media_type="application/json", headers={**imputed_headers(parsed.imputed), **ood_headers(ood), **expect.headers()}
            )
        raise BatcherClosed("the model version changed twice during this request; retry")

    invocations.plain = invocations_plain  # type: ignore[attr-defined]

    @app.get(
        "/ping",
        tags=["mlflow"],
        summary="Health (open)",
        response_model=Ready,
        responses={503: {"model": Ready, "description": "no model worker is ready"}},
    )
    async def ping(svc: ModelService = Depends(get_service)) -> Response:
        ok = svc.current is not None and svc.current.ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/health", tags=["mlflow"], summary="Health", response_model=Ready, responses=_ERRORS)
    async def health(svc: ModelService = Depends(get_service), _=Depends(read_meta)) -> Response:
        ok = svc.current is not None and svc.current.ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/version", tags=["mlflow"], summary="Server and model version", responses=_ERRORS)
    async def version(svc: ModelService = Depends(get_service), _=Depends(read_meta)) -> dict:
        rt = svc.current
        return {
            "trustforge": __version__,
            "model_name": rt.name if rt else None,
            "model_version": rt.version if rt else None,
            "backend": config.backend,
            "ood": rt.ood_guard if rt else None,
        }

    @app.get("/metrics", tags=["monitoring"], summary="Prometheus metrics", responses=_ERRORS, response_class=Response)
    async def prometheus(_=Depends(require_read)) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (InferenceRequest, ScoringRequest):
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(js.pop("$defs", {}))
                components[model.__name__] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _plain(app, infer_plain)
    _plain(app, invocations_plain)
    return app


def _quota(service: ModelService, metrics: ServeMetrics) -> QuotaLimiter:
    """The per-caller limits and probing detector of `service.config`, writing to its audit log."""
    config = service.config
    detector = ProbeDetector(counter=metrics.probe_alerts) if config.probe_alert else None
    registry = getattr(service, "registry", None)
    quota = QuotaLimiter(
        config.rate_limit,
        config.burst,
        config.daily_quota,
        audit=getattr(registry, "audit", None),
        obj=service.source.object,
        counter=metrics.rate_limited,
        detector=detector,
    )
    if quota.enabled or detector is not None:
        quota.start()  # writes each window's 429 counts and the probing alerts to the audit log
        service.on_close(quota.close)
    return quota


def _managed(service: ModelService) -> Callable:
    """A lifespan that starts `service` with the app and closes it when the app stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.close)

    return lifespan


# Routes anyone may call (probes and the protocol's description): never limited.
_OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class _Gate:
    """Pure ASGI, in front of every route: request id, per-address limit, body limit, metrics, one log line."""

    def __init__(self, app: Any, *, max_body: int, metrics: ServeMetrics, auth: Auth | None = None):
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.auth = auth
        # The metrics' children by label values, bound once (`.labels()` on every request cost more than the count).
        self._timers: dict[tuple[str, str], Any] = {}
        self._counts: dict[tuple[str, int], Any] = {}

    def _limited(self, scope: dict) -> int | None:
        """Retry-After seconds for a source that keeps being refused (429 before any route runs)."""
        if self.auth is None or scope["path"] in _OPEN_PATHS:
            return None
        return self.auth.retry_after(client_address(scope), bearer_token(scope))

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = f"{_ID_PREFIX}{next(_ids):x}"
        status = [500]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            wait = self._limited(scope)
            if wait is not None:
                limiter = self.auth.limiter
                if limiter.held < limiter.max_held and limiter.hold_s > 0:
                    limiter.held += 1
                    try:
                        await asyncio.sleep(limiter.hold_s)  # slows a flooding connection down (see _limits)
                    finally:
                        limiter.held -= 1
                await _send_error(send_with_id, scope["path"], 429, f"too many refused requests from this address; retry in {wait} s", wait)
                return
            if scope["method"] in ("POST", "PUT", "PATCH"):
                refused = _declared_too_big(scope, self.max_body)
                if refused is None:
                    body, refused = await _read_body(receive, self.max_body)
                    if refused is None:
                        scope[_BODY] = body
                        receive = _replay(body, receive)
                if refused is not None:
                    await _send_error(send_with_id, scope["path"], *refused)
                    return
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            method, code = scope["method"], status[0]
            timer = self._timers.get((route, method))
            if timer is None:
                timer = self._timers[(route, method)] = self.metrics.request_seconds.labels(route=route, method=method)
            timer.observe(elapsed)
            count = self._counts.get((route, code))
            if count is None:
                count = self._counts[(route, code)] = self.metrics.responses.labels(route=route, status=str(code))
            count.inc()
            principal = (scope.get("state") or {}).get("principal")
            log_event(
                logging.INFO,
                "request",
                request_id=request_id,
                method=scope["method"],
                route=route,
                status=status[0],
                ms=round(elapsed * 1000, 3),
                principal=principal,
            )


def _declared_too_big(scope: dict, limit: int) -> tuple[int, str] | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return 400, "Content-Length is not an integer"
            if n > limit:
                return 413, f"the body has {n} bytes; this server accepts at most {limit}"
    return None


async def _read_body(receive: Callable, limit: int) -> tuple[bytes, tuple[int, str] | None]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", (400, "the client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", (413, f"the body is larger than the {limit} bytes this server accepts")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, receive: Callable) -> Callable:
    """A `receive` that hands the app the body already read, then the client's own messages."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # only a disconnect can come now

    return replay


async def _send_error(send: Callable, path: str, status: int, message: str, retry_after: int | None = None) -> None:
    body = _error_body(path, status, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
