"""Connections between the SDK and ``hodei server`` outlive a pause of the caller."""

from __future__ import annotations

import time

import httpx
import pytest

from hodei.errors import HodeiError
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


def test_the_call_after_an_internal_error_works(embedded_settings: Settings) -> None:
    """After a 500, uvicorn closes the connection (Starlette raises the error again once
    the answer is sent): the answer says ``Connection: close``, so the SDK's next call
    goes on a new connection. It reused the closing one and failed with
    ConnectionResetError ('cannot reach the hodei API'), most times."""
    with running_server(embedded_settings) as server:
        client = server.client("viewer")
        direct = server.direct
        try:
            broken = direct.submit("true", run_at="2030-01-01T00:00:00+00:00")
            fine = direct.submit("true", run_at="2030-01-01T00:00:00+00:00")
            # A stored spec this hodei cannot read: a real internal error on GET.
            with direct.container.store.engine.begin() as tx:
                tx.exec_driver_sql("UPDATE jobs SET spec = '{}' WHERE id = ?", (broken.id.hex,))
            answer = httpx.get(
                f"{server.url}/v1/jobs/{broken.id}",
                headers={"Authorization": f"Bearer {server.tokens['viewer']}"},
            )
            assert (answer.status_code, answer.headers.get("connection")) == (500, "close")
            for _ in range(5):
                with pytest.raises(HodeiError, match="internal error: KeyError"):
                    client.get(broken.id)
                assert client.get(str(fine.id)[:8]).id == fine.id
        finally:
            client.close()
