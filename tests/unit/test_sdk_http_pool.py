"""The SDK's keep-alive connections (hodei.sdk_http_pool) against a small real server:
reuse, a connection the server closed, expiry, ``Connection: close``, timeouts, TLS
verified as httpx verifies it, and when a proxy from the environment sends calls
through httpx instead."""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hodei.errors import NotFound, ServiceUnavailable
from hodei.sdk_http import HttpClient
from hodei.sdk_http_pool import ConnectionPool, fast_path_for


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    seen: list[str] = []  # "METHOD path" of each request read, in order

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if self.path.startswith("/late-drop"):
            # Answered as kept alive, then closed a moment later without reading the
            # next request (as uvicorn does after an error): the client's check before
            # reuse cannot see it coming.
            time.sleep(0.3)
            self.close_connection = True

    def do_GET(self) -> None:  # the client's port, so a test sees which connection
        _Handler.seen.append(f"GET {self.path}")
        if self.path.startswith("/hangup"):  # closes without an answer
            self.close_connection = True
            return
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path.startswith("/missing"):
            body = b'{"code": "NotFound", "detail": "no such job"}'
            self._reply(404, body, "application/problem+json")
            return
        body = f"{self.client_address[1]} {self.path} {self.headers.get('Authorization')}"
        self._reply(200, body.encode(), "text/plain", close=self.path.startswith("/close"))

    def do_POST(self) -> None:
        _Handler.seen.append(f"POST {self.path}")
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._reply(201, body, self.headers["Content-Type"])

    def _reply(self, status: int, body: bytes, ctype: str, *, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if self.path.startswith("/drop"):  # closes without saying so
            self.close_connection = True


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _port(pool: ConnectionPool, path: str = "/") -> str:
    return pool.request("GET", path).body.decode().split()[0]


def test_a_connection_is_reused_with_the_headers_and_the_url_path(server: str) -> None:
    pool = ConnectionPool(
        server + "/base/", {"Authorization": "Bearer t"}, timeout_s=5, keepalive_s=50
    )
    try:
        first = pool.request("GET", "/v1/x?a=1").body.decode().split()
        second = pool.request("GET", "/v1/y").body.decode().split()
        assert first[1:] == ["/base/v1/x?a=1", "Bearer", "t"]
        assert first[0] == second[0]
    finally:
        pool.close()


def test_a_connection_the_server_closed_is_not_reused(server: str) -> None:
    pool = ConnectionPool(server, {}, timeout_s=5, keepalive_s=50)
    try:
        dropped = _port(pool, "/drop")
        time.sleep(0.2)  # the server's FIN arrives
        assert _port(pool) != dropped  # and no error
        told = _port(pool, "/close")
        assert _port(pool) != told
    finally:
        pool.close()


def test_a_get_on_a_reused_connection_the_server_closed_is_sent_again_once(
    server: str,
) -> None:
    """The server closes a kept-alive connection just as the next request goes out: an
    idempotent request is sent once more on a new connection, not failed (it failed with
    ConnectionResetError, as the SDK's next call after a 500 from hodei server did)."""
    pool = ConnectionPool(server, {}, timeout_s=5, keepalive_s=50)
    try:
        dropped = _port(pool, "/late-drop")
        _Handler.seen.clear()
        assert _port(pool, "/after") != dropped
        assert _Handler.seen == ["GET /after"]  # the lost one never reached the handler
        # Once only: a server that hangs up on every request is an error, not a loop.
        _port(pool)
        _Handler.seen.clear()
        with pytest.raises((OSError, http.client.HTTPException)):
            pool.request("GET", "/hangup")
        assert _Handler.seen == ["GET /hangup", "GET /hangup"]
        # Nor is a failure on a new connection retried.
        _Handler.seen.clear()
        with pytest.raises((OSError, http.client.HTTPException)):
            pool.request("GET", "/hangup")
        assert _Handler.seen == ["GET /hangup"]
    finally:
        pool.close()


def test_a_post_that_was_sent_is_not_sent_again(server: str) -> None:
    """A POST the server may have acted on (it was sent; no answer came) is not repeated:
    the caller decides (a submit with an idempotency key can be sent again safely)."""
    pool = ConnectionPool(server, {}, timeout_s=5, keepalive_s=50)
    try:
        _port(pool, "/late-drop")
        _Handler.seen.clear()
        with pytest.raises((OSError, http.client.HTTPException)):
            pool.request("POST", "/echo", b"{}", {"Content-Type": "application/json"})
        assert _Handler.seen == []
        assert pool.request("POST", "/echo", b"{}", {"Content-Type": "application/json"}).body
    finally:
        pool.close()


def test_an_idle_connection_expires(server: str) -> None:
    pool = ConnectionPool(server, {}, timeout_s=5, keepalive_s=0.1)
    try:
        first = _port(pool)
        time.sleep(0.2)
        assert _port(pool) != first
    finally:
        pool.close()


def test_the_client_maps_status_timeouts_and_refusals_to_hodei_errors(server: str) -> None:
    client = HttpClient(server, "hodei_pat_x", timeout_s=0.3)
    try:
        assert client._pool is not None
        assert client._request("POST", "/echo", json={"a": "é"}) == '{"a":"é"}'.encode()
        with pytest.raises(NotFound, match="no such job"):
            client._request("GET", "/missing")
        with pytest.raises(ServiceUnavailable, match="did not answer"):
            client._request("GET", "/slow")
        assert client._request("GET", "/slow", timeout=5).split()[1] == b"/slow"
    finally:
        client.close()
    gone = HttpClient(server.rsplit(":", 1)[0] + ":1", None)
    with pytest.raises(ServiceUnavailable, match="cannot reach"):
        gone._request("GET", "/")
    gone.close()


def test_a_proxy_from_the_environment_sends_calls_through_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert fast_path_for("http://api.example:8000")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert fast_path_for("http://api.example:8000")
    assert not fast_path_for("https://api.example")
    monkeypatch.setenv("NO_PROXY", "api.example")
    assert fast_path_for("https://api.example")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example:3128")
    assert not fast_path_for("http://other.example")
    assert HttpClient("http://other.example", None)._pool is None


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hodei test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_is_verified_with_httpx_trust_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        untrusted = HttpClient(url, None)
        with pytest.raises(ServiceUnavailable, match="cannot reach"):
            untrusted._request("GET", "/")  # not in the CA bundle: refused
        untrusted.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # as httpx honours it
        trusted = HttpClient(url, None)
        assert trusted._pool is not None
        first = trusted._request("GET", "/a").split()
        assert first[1] == b"/a"
        assert trusted._request("GET", "/b").split()[0] == first[0]  # kept alive
        trusted.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


class _StreamHandler(http.server.BaseHTTPRequestHandler):
    """A chunked stream of three lines; ``/cut`` drops the connection after two."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, line in enumerate((b"one\n", b"two\r\n", b"three\n")):
            if i == 2 and self.path.startswith("/cut"):
                self.wfile.flush()
                self.connection.shutdown(2)  # mid-stream, no terminating chunk
                self.close_connection = True
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


@pytest.mark.parametrize("through", ["stdlib", "httpx"])
def test_a_stream_yields_its_lines_and_a_cut_is_lost_not_ended(through: str) -> None:
    # Both paths (the standard library's, httpx's for a proxy) read lines as they come
    # and tell a stream cut mid-way from one the server ended: the SDK resumes the first.
    import httpx

    from hodei.sdk_http import _StreamLost

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StreamHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    transport = httpx.HTTPTransport() if through == "httpx" else None
    client = HttpClient(url, "hodei_pat_x", timeout_s=5, transport=transport)
    try:
        assert (client._pool is None) == (through == "httpx")
        with client._stream("/whole", {"a": 1}) as lines:
            assert list(lines) == [b"one", b"two", b"three"]
        seen = []
        with pytest.raises(_StreamLost), client._stream("/cut", None) as lines:
            seen.extend(lines)
        assert seen == [b"one", b"two"]
    finally:
        client.close()
        httpd.shutdown()
        httpd.server_close()
