"""The server's transport wrapper: a response's headers and body in one write, nothing
lost, reordered or held past the event loop's pass."""

from __future__ import annotations

import asyncio
from typing import Any

from hodei.api.http_protocol import _JoinedWrites


class _Transport:
    """Records what reaches the socket."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


def _run(steps: Any) -> _Transport:
    async def main() -> _Transport:
        transport = _Transport()
        joined = _JoinedWrites(transport, asyncio.get_running_loop())
        await steps(joined, transport)
        return transport

    return asyncio.run(main())


def test_a_response_goes_out_in_one_write_as_soon_as_its_body_is_written() -> None:
    async def steps(joined: Any, transport: _Transport) -> None:
        joined.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
        assert transport.writes == []  # the headers wait for the body
        joined.write(b"{}")
        assert transport.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
        await asyncio.sleep(0)
        assert len(transport.writes) == 1

    _run(steps)


def test_chunks_of_a_stream_are_not_held_past_the_pass_nor_reordered() -> None:
    async def steps(joined: Any, transport: _Transport) -> None:
        for chunk in (b"a", b"b", b"c"):
            joined.write(chunk)
            await asyncio.sleep(0)
        assert transport.writes == [b"a", b"b", b"c"]
        for chunk in (b"d", b"e", b"f"):
            joined.write(chunk)
        await asyncio.sleep(0)
        assert transport.writes == [b"a", b"b", b"c", b"de", b"f"]

    _run(steps)


def test_close_sends_what_was_written_first() -> None:
    async def steps(joined: Any, transport: _Transport) -> None:
        joined.write(b"last words")
        joined.close()
        await asyncio.sleep(0)
        assert (transport.writes, transport.closed) == ([b"last words"], True)

    _run(steps)


def test_other_calls_reach_the_transport() -> None:
    async def steps(joined: Any, transport: _Transport) -> None:
        assert joined.get_extra_info("peername") == ("127.0.0.1", 1)
        assert joined.is_closing() is False

    _run(steps)
