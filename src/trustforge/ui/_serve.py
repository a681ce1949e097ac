"""Starting the dashboard: uvicorn on loopback by default; any other address needs TLS (or an
explicit `--insecure-no-tls`), since the session cookie and the tokens typed into the sign-in form
would otherwise cross the network in clear."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from trustforge._net import bind_port
from trustforge.errors import SecurityError, SpecError, TrustForgeError
from trustforge.serve import is_loopback
from trustforge.settings import Settings

__all__ = ["run_ui", "check_bind", "check_port", "QuietErrors"]


def check_port(port: int) -> None:
    """Refuse a port the dashboard cannot listen on (the socket layer would take 99999 as 34463).

    Raises:
        SpecError: `port` is not a whole number in [1, 65535] (a usage error: exit 2).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise SpecError(f"--port must be in [1, 65535]; got {port!r}")


def check_bind(host: str, tls_cert: Path | None, tls_key: Path | None, insecure_no_tls: bool) -> bool:
    """Whether the dashboard serves TLS; refuses the combinations that must not run.

    Raises:
        SecurityError: a non-loopback `host` without TLS and without `insecure_no_tls`.
        TrustForgeError: only one of `tls_cert`, `tls_key`, or a file that is missing.
    """
    if (tls_cert is None) != (tls_key is None):
        raise TrustForgeError("--tls-cert and --tls-key go together: give both or neither")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not Path(path).is_file():
            raise TrustForgeError(f"{flag}: {Path(path).name} is not a readable file")
    tls = tls_cert is not None
    if not tls and not is_loopback(host) and not insecure_no_tls:
        raise SecurityError(
            f"--host {host} is not a loopback address and no TLS certificate is given: sign-in tokens and session "
            "cookies would cross the network in clear; give --tls-cert and --tls-key (or --insecure-no-tls to accept that)"
        )
    return tls


class QuietErrors:
    """The dashboard app, minus the traceback the server would log for an unhandled error.

    The app's last-resort handler answers such an error with a 500 page and logs the error's
    class and the request path; Starlette then raises it again, and uvicorn would log the
    whole traceback, whose messages can hold local paths or data. Here it ends instead.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception:  # noqa: BLE001 - answered (500) and logged by the app's handler already
            return


def run_ui(
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    insecure_no_tls: bool = False,
    settings: Settings | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C (blocking)."""
    from trustforge._extras import require

    require("serve", "trustforge ui")
    import uvicorn

    from trustforge.ui._app import create_app

    check_port(port)
    tls = check_bind(host, tls_cert, tls_key, insecure_no_tls)
    app = create_app(settings, tls=tls)
    config = uvicorn.Config(
        QuietErrors(app),
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    where = f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"
    # Bound here, as `serve` binds: a port in use is one error naming --port, not uvicorn's own line.
    with contextlib.closing(bind_port(host, port)) as sock:
        _announcing_server(config, where).run(sockets=[sock])


def _announcing_server(config, where: str):
    """uvicorn's server, which also says where the dashboard listens once its socket is bound
    (not before: a port in use is not announced)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(f"trustforge ui: the dashboard is at {where} (Ctrl-C stops it)", file=sys.stderr, flush=True)

    return Server(config)
