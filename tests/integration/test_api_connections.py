"""Connections between the SDK and ``hodei server`` outlive a pause of the caller."""

from __future__ import annotations

import time

import pytest

from hodei.settings import Settings
from tests.api_server import running_server


@pytest.mark.slow
def test_an_idle_connection_is_reused_after_more_than_five_seconds(
    embedded_settings: Settings,
) -> None:
    """uvicorn and httpx both drop an idle connection after 5 s by default, so a caller
    that pauses longer pays a new connection (with TLS, a new handshake), and may send on
    one the server is closing. The server keeps it 65 s and the client 50 s (the SDK's
    own connections, hodei.sdk_http_pool, for plain calls)."""
    with running_server(embedded_settings) as server:
        client = server.client("viewer")
        try:
            ports = []
            for pause in (6, 0):
                client.whoami()
                assert client._pool is not None
                (conn, _), *_ = client._pool._idle
                ports.append(conn.sock.getsockname())
                time.sleep(pause)
            assert ports[0] == ports[1], "a new connection was opened"
        finally:
            client.close()
