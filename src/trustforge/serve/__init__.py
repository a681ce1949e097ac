"""Serving: an authenticated, batched, observable HTTP server for one registered model.

    service = ModelService("models:/iris@champion", ServeConfig(workers=2)).start()
    app = create_app(service)            # FastAPI; or `trustforge serve models:/iris@champion`

Two protocols over one predict path (`Model.predict`): the Open Inference Protocol v2 (as
KServe, Triton and MLServer speak it; `tritonclient.http` works unchanged, binary tensor data
included) and MLflow scoring (`/invocations`). Requests are checked against the package's
signature, authenticated with registry tokens, batched dynamically, run in worker processes
(eager PyTorch or ONNX Runtime) and measured (Prometheus `/metrics`, JSON logs). A server
that follows an alias swaps to the version it points to without dropping requests.
"""

from __future__ import annotations

from trustforge._extras import require

require("serve", "trustforge serve")  # FastAPI, uvicorn, ...: one error naming the extra, before any of them is imported

from typing import TYPE_CHECKING

from trustforge._lazy import lazy_names

if TYPE_CHECKING:
    from trustforge.serve._app import create_app, get_service
    from trustforge.serve._auth import Auth, authenticated, client_address
    from trustforge.serve._config import ServeConfig, is_loopback
    from trustforge.serve._limits import SourceLimiter
    from trustforge.serve._metrics import ServeMetrics
    from trustforge.serve._quota import ProbeDetector, QuotaLimiter, RateLimited, parse_rate
    from trustforge.serve._run import serve
    from trustforge.serve._service import ModelService, ModelSource, Runtime
    from trustforge.serve._signature import RequestError, Signature

# Imported on first use: a model worker or drift-monitor process (`python -m
# trustforge.serve._worker`) imports this package first, and needs neither the web application
# nor the service around it (a second of imports in each process a server starts).
_LAZY = {
    **dict.fromkeys(("create_app", "get_service"), "trustforge.serve._app"),
    **dict.fromkeys(("Auth", "authenticated", "client_address"), "trustforge.serve._auth"),
    **dict.fromkeys(("ServeConfig", "is_loopback"), "trustforge.serve._config"),
    "SourceLimiter": "trustforge.serve._limits",
    "ServeMetrics": "trustforge.serve._metrics",
    **dict.fromkeys(("ProbeDetector", "QuotaLimiter", "RateLimited", "parse_rate"), "trustforge.serve._quota"),
    "serve": "trustforge.serve._run",
    **dict.fromkeys(("ModelService", "ModelSource", "Runtime"), "trustforge.serve._service"),
    **dict.fromkeys(("RequestError", "Signature"), "trustforge.serve._signature"),
}

__all__ = [
    "create_app",
    "get_service",
    "serve",
    "ServeConfig",
    "ModelService",
    "ModelSource",
    "Runtime",
    "Auth",
    "authenticated",
    "client_address",
    "SourceLimiter",
    "ServeMetrics",
    "Signature",
    "RequestError",
    "is_loopback",
    "QuotaLimiter",
    "ProbeDetector",
    "RateLimited",
    "parse_rate",
]


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
