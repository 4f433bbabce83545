"""uvicorn's HTTP protocol (httptools), with each response's bytes sent in one write.

uvicorn writes a response's status line and headers as soon as the app starts it, and
the body in a second write: two ``send`` calls, and a client woken for the headers
alone goes back to wait for the body. Here what one pass of the event loop writes goes
out together at the end of that pass: a response of the API (start and body sent in a
row) is one ``send``; a stream's chunks still go out as soon as they are written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _OneWritePerPass:
    """A transport that joins the writes of one event-loop pass into one write."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()  # what was written goes out before the connection closes
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (flow control, is_closing, get_extra_info, abort) as it is.
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """``hodei server``'s HTTP protocol: uvicorn's, writing through :class:`_OneWritePerPass`."""

    def connection_made(self, transport: Any) -> None:
        # uvloop's transports are not asyncio.Transport instances, only alike.
        joined: Any = _OneWritePerPass(transport, asyncio.get_running_loop())
        super().connection_made(joined)
