"""uvicorn's HTTP protocol (httptools), with a response's headers and body sent in one
write.

uvicorn writes a response's status line and headers as soon as the app starts it, and
the body in a second write: two ``send`` calls, and a client woken for the headers
alone goes back to wait for the body. Here a write is held until the next one, which
sends both at once, or until the end of the event loop's pass, whichever comes first:
a response of the API (start and body written in a row) leaves in one ``send``, at the
moment its body is written; a stream's chunks are never held past the pass.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _JoinedWrites:
    """A transport that joins each write to the one after it in the same pass."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        # Sent now, not at the end of the pass: the client is woken as early as before.
        joined, self._held = self._held + data, None
        self._write(joined)

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._write(held)

    def _write(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()  # what was written goes out before the connection closes
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (flow control, is_closing, get_extra_info, abort) as it is.
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """``hodei server``'s HTTP protocol: uvicorn's, writing through :class:`_JoinedWrites`."""

    def connection_made(self, transport: Any) -> None:
        # uvloop's transports are not asyncio.Transport instances, only alike.
        joined: Any = _JoinedWrites(transport, asyncio.get_running_loop())
        super().connection_made(joined)
