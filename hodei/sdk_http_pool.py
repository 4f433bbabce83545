"""Keep-alive HTTP/1.1 connections (the standard library's ``http.client``) for the
SDK's calls to ``hodei server``: plain requests and streams (a followed log, the event
feed).

httpx costs about 0.3 ms of CPU a call beyond the socket work (its URL and header
models, h11's state machine); on a submit that is a tenth of the whole round trip. Its
import (with rich and pygments, for its own command line, and httpcore at the first
request) is about 80 ms, a fifth of a warm ``hodei job run`` over the API. Like httpx,
``http.client`` writes a request's head and body separately; writing them as one, or
setting TCP_NODELAY, measured the same here.
What httpx does that this does not (a proxy from the environment, an injected
transport) stays on httpx, imported only then: :func:`fast_path_for` says when this
applies.

Behaviour kept from httpx as the SDK used it: TLS verified with httpx's own context
(the same CA bundle, ``SSL_CERT_FILE``/``SSL_CERT_DIR``), the same timeout for
connecting and for each read, no redirects followed, an idle connection dropped after
``keepalive_s`` or as soon as the server has closed it (checked before reuse, as
httpcore does).

A server may still close a kept-alive connection while the next request is on its way
(it saw no request yet: its idle timeout, or uvicorn closing after an error): the check
before reuse cannot see a FIN not yet arrived. So a request that fails on a *reused*
connection before any byte of a response (``RemoteDisconnected``, a reset, a broken
pipe) is sent once more on a new connection, as urllib3, httpx and Go's net/http do,
when that is safe: always for an idempotent method (GET, HEAD, PUT, DELETE, OPTIONS);
for POST only if sending it failed, so the server never had the whole request (hodei's
routes read the whole body before acting). A POST that was sent may have been done by
a server that died before answering, so it is not repeated: the caller sees
ServiceUnavailable, and a submit with an ``idempotency_key`` can be sent again safely.
A failure on a new connection, or after the response began, is never retried.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

MAX_IDLE = 20
"""Idle connections kept for reuse (httpx's ``max_keepalive_connections`` as set)."""

_STALE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)
"""How a connection the server had closed fails (no response byte read)."""
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def fast_path_for(url: str) -> bool:
    """Whether calls to ``url`` may bypass httpx: no proxy from the environment applies
    to it (httpx would use one: ``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return True
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    return bool(bypass(parts.hostname or "", proxies))


class Response:
    """A response read in full: status, body and content type."""

    __slots__ = ("body", "content_type", "status")

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type


class ConnectionPool:
    """Idle connections to one server, reused most recent first; thread-safe (a
    connection is used by one call at a time)."""

    def __init__(
        self, url: str, headers: Mapping[str, str], *, timeout_s: float, keepalive_s: float
    ) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers)
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._ssl = ssl_context() if self._https else None
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        """Send one request and read its whole response. Raises ``TimeoutError`` if the
        server does not answer in time, ``OSError`` or ``http.client.HTTPException`` if
        it cannot be reached or breaks the connection."""
        conn, reused = self._checkout()
        all_headers = {**self._headers, **(headers or {})}
        sent = False
        try:
            if timeout_s is not None:
                _set_timeout(conn, timeout_s)
            try:
                conn.request(method, self._prefix + target, body, all_headers)
                sent = True
                response = conn.getresponse()
            except _STALE:
                conn.close()
                if not reused or (sent and method.upper() not in _IDEMPOTENT):
                    raise
                # Closed by the server before it answered (see the module's docstring).
                conn = self._connection()
                if timeout_s is not None:
                    _set_timeout(conn, timeout_s)
                conn.request(method, self._prefix + target, body, all_headers)
                response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        if timeout_s is not None:
            _set_timeout(conn, self._timeout_s)
        if response.will_close:
            conn.close()
        else:
            self._checkin(conn)
        return Response(response.status, data, response.getheader("content-type") or "")

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        read_timeout_s: float | None = None,
    ) -> Iterator[http.client.HTTPResponse]:
        """A response to read as it comes (``readline``), on a connection of its own
        that is closed after: a stream usually ends with the server closing it, or with
        the caller stopping half-way. Connecting has the pool's timeout; each read then
        waits ``read_timeout_s`` (None: for ever). Raises as :meth:`request`."""
        conn = self._connection()
        try:
            conn.connect()
            _set_timeout(conn, read_timeout_s)
            conn.request(method, self._prefix + target, None, {**self._headers, **(headers or {})})
            yield conn.getresponse()
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def _checkout(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection for one request, and whether it is a reused one."""
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if now - since < self._keepalive_s and not _closed_by_peer(conn):
                return conn, True
            conn.close()
        return self._connection(), False

    def _connection(self) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout_s, context=self._ssl
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()


def ssl_context() -> ssl.SSLContext:
    """TLS verified as httpx verifies it (``httpx.create_ssl_context()``): the CA file
    in ``SSL_CERT_FILE``, else the directory in ``SSL_CERT_DIR``, else certifi's bundle."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _set_timeout(conn: http.client.HTTPConnection, seconds: float | None) -> None:
    conn.timeout = seconds  # for a connection not yet made
    if conn.sock is not None:
        conn.sock.settimeout(seconds)


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle connection is readable only if the server closed it (or sent what it
    should not have): either way it cannot carry another request."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):  # any descriptor number, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
