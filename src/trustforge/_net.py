"""Binding the address a server (`serve`, `ui`) listens on."""

from __future__ import annotations

import errno
import socket

__all__ = ["bind_port"]


def bind_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn binds one, for `serve` and `ui` to hand to
    uvicorn: bound before anything slow runs, so an address in use is one clear error at once.

    Raises:
        OSError: the address cannot be bound (the port in use, a port below 1024 without the right,
            an unknown host), its message naming `--port` or `--host`.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            what = f"--port {port} is in use on {host} (another server listens there); stop it or choose another --port"
        elif exc.errno == errno.EACCES:
            what = f"--port {port} on {host}: {reason} (ports below 1024 need privileges); choose another --port"
        else:
            what = f"cannot listen on --host {host} --port {port}: {reason}"
        raise OSError(exc.errno, what) from None
    return sock
