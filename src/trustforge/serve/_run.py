"""`trustforge serve`: check who starts it and where it listens, load the model, run uvicorn."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
import socket
from typing import Any

from trustforge import secure
from trustforge._net import bind_port
from trustforge.serve._config import ServeConfig
from trustforge.serve._logging import configure_logging, log_event, stop_logging
from trustforge.serve._pii import mask_logs
from trustforge.settings import Settings

__all__ = ["serve"]

# uvicorn's C parser and event loop where installed (dependencies; measured +10-30 % requests/s
# over h11 + asyncio at 1-32 clients, same run); its pure-Python ones otherwise.
_HTTP = "httptools" if importlib.util.find_spec("httptools") else "h11"
_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def serve(source: str, config: ServeConfig, *, settings: Settings | None = None, public_key: str | None = None) -> None:
    """Serve a model until interrupted (SIGINT/SIGTERM: stop accepting, finish requests, stop workers).

    The acting principal (`TRUSTFORGE_TOKEN`, else the local workspace admin) needs the
    `serve` action on the model; requests then need their own tokens (see `_auth`).

    Raises:
        SecurityError: no authentication on an address other machines can reach (without
            `auth="insecure"`).
        AccessDenied: the principal may not serve (audited).
        TrustForgeError: the model cannot be resolved, verified, loaded or exported.
        OSError: the address cannot be bound (`--port` in use, say); nothing was loaded.
    """
    from trustforge.registry import Registry
    from trustforge.serve._service import ModelSource

    config.check_binding()
    configure_logging()
    try:
        mask_logs(config.pii_in_logs, config.host)  # personal data in a log field becomes its type tag (serve._pii)
        settings = settings or Settings.from_env()
        source = ModelSource(source, public_key)
        with _sigterm_stops(), Registry(settings) as registry:
            secure.require(registry.principal, "serve", source.object, registry.audit)
            if config.auth != "token":
                log_event(
                    logging.WARNING,
                    "no_auth",
                    host=config.host,
                    mode=config.auth,
                    detail="every route is open to anyone who can reach this address",
                )
            # Bound before the model loads: a port in use is one error at once, not after the load.
            with contextlib.closing(bind_port(config.host, config.port)) as sock:
                _serve_on(sock, source, config, settings, registry, public_key)
    finally:
        stop_logging()  # every record written, and no writer thread left behind (tests, notebooks)


def _serve_on(sock: socket.socket, source: Any, config: ServeConfig, settings: Settings, registry: Any, public_key: str | None) -> None:
    """Load the model and serve it on the bound socket `sock` until interrupted."""
    import uvicorn

    from trustforge.serve._app import create_app
    from trustforge.serve._service import ModelService

    service = ModelService(source, config, settings=settings, registry=registry, public_key=public_key)
    service.start()
    try:
        app = create_app(service)
        log_event(
            logging.INFO,
            "listening",
            host=config.host,
            port=sock.getsockname()[1],  # the one chosen for `--port 0`
            model=service.current.name,
            version=service.current.version,
            auth=config.auth,
            http=_HTTP,
            loop=_LOOP,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=max(5, int(config.request_timeout_s)),
                server_header=False,
                http=_HTTP,
                loop=_LOOP,
            )
        )
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # as `uvicorn.run`: Ctrl-C (and SIGTERM, see `_sigterm_stops`) stops it
            pass
    finally:
        service.close()


@contextlib.contextmanager
def _sigterm_stops():
    """Within the block, SIGTERM stops the server as Ctrl-C does, so that `service.close` runs.

    uvicorn handles SIGTERM itself while it serves (stops listening, finishes the requests in
    flight), but then raises the signal again under the handler it found. With the default one
    that ended the process on the spot, before the `finally` that closes the service: the last
    window's 429 counts and probing alerts (`_quota`) were never audited. Raised as
    KeyboardInterrupt instead, uvicorn returns normally (it swallows that), and the service closes.
    A second SIGTERM kills as usual.
    """

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, previous)
        raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (uvicorn installs no handler there either)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
