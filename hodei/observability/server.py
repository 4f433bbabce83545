"""The HTTP side of ``hodei serve``: ``/metrics``, ``/health``, ``/health/live`` and
``/health/ready`` as one WSGI app.

It runs on the standard library's WSGI server, threaded, as prometheus-client's own
``start_wsgi_server`` does: probes and scrapes are a few small requests a second, so a
framework or an ASGI stack would add dependencies and nothing else.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from hodei.bootstrap import Container
from hodei.listening import listen_errors
from hodei.observability.health import HealthChecker
from hodei.observability.metrics import build_registry

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

ROUTES = {
    "/metrics": "Prometheus metrics, computed from the database",
    "/health": "database and broker checks with durations and pool numbers (200 or 503)",
    "/health/ready": "readiness: the same checks, for orchestrators (200 or 503)",
    "/health/live": "liveness: 200 while the process runs",
}


class ObservabilityApp:
    """Routes requests to the metrics exposition or the health checks."""

    def __init__(self, container: Container) -> None:
        self._metrics = make_wsgi_app(build_registry(container.engine))
        self._health = HealthChecker(container.engine, container.app)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _json(start_response, 405, {"error": "only GET and HEAD"})
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/health/live":
            return _json(start_response, 200, {"status": "alive"})
        if path in ("/health", "/health/ready"):
            ok, body = self._health.report(full=path == "/health")
            return _json(start_response, 200 if ok else 503, body)
        if path == "/":
            return _json(start_response, 200, {"endpoints": ROUTES})
        return _json(start_response, 404, {"error": f"no such endpoint {path}"})


def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, indent=2).encode() + b"\n"
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
    start_response(
        f"{status} {reason[status]}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]


class _QuietHandler(WSGIRequestHandler):
    """Access lines go to hodei's logging at DEBUG instead of raw stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def _server_class(address: str) -> type[ThreadingWSGIServer]:
    if ":" not in address:
        return ThreadingWSGIServer

    class _V6Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6

    return _V6Server


def serve(container: Container, address: str, port: int) -> None:
    """Serve until SIGTERM or Ctrl-C; nothing here needs the database to be up.
    ServiceUnavailable if ``address:port`` cannot be taken."""
    with listen_errors(address, port):
        server = make_server(
            address,
            port,
            ObservabilityApp(container),
            server_class=_server_class(address),
            handler_class=_QuietHandler,
        )
    bound = server.server_address[1]
    logger.info("hodei serve: metrics and health on http://%s:%s", address, bound)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        container.close()
        logger.info("hodei serve stopped")
