"""HTTP faces shared by the processes: an ASGI app on uvicorn (the OpenAI-compatible API, the swarm monitor)
and Prometheus metrics on prometheus-client's own thread (peers, bootstrap nodes)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

log = logging.getLogger("molink.http")


def serve_app(app: Any, host: str, port: int, banner: str, log_level: str = "warning") -> None:
    """Serve ``app`` with uvicorn on HOST:PORT until Ctrl-C. ``banner`` is printed once the port listens,
    with ``{url}`` replaced by http://HOST:PORT (connections made after the line wait in the listen backlog
    until uvicorn takes them)."""
    import signal
    import socket

    import uvicorn

    sock = socket.create_server((host, port))
    print(banner.format(url=f"http://{host}:{sock.getsockname()[1]}"), flush=True)
    # uvicorn shuts down gracefully on Ctrl-C, then raises the signal again for the handler before it: make
    # that Python's KeyboardInterrupt (a process may have started with SIGINT at its default: death)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(uvicorn.Config(app, log_level=log_level)).run(sockets=[sock])


def serve_metrics(port: int, listen: str, registry: Any) -> None:
    """Prometheus metrics of ``registry`` at http://HOST:port/metrics (a prometheus-client thread), HOST being
    the host of ``listen`` (a process's HOST:PORT), so metrics are exposed where its data port is."""
    from prometheus_client import start_http_server

    host = listen.rpartition(":")[0] or "127.0.0.1"
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics at http://%s:%d/metrics", host, port)
