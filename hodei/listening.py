"""Taking a TCP port to listen on, with one error for every server command.

``hodei server``, ``hodei serve`` and ``hodei flower`` all say the same thing, on one
line and with exit 5, when their address cannot be taken (a port in use, an address
that is not this host's, a port below 1024 without the right): not the traceback or
log lines of the library underneath.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from hodei.errors import ServiceUnavailable


@contextlib.contextmanager
def listen_errors(address: str, port: int) -> Iterator[None]:
    """Turn an OSError of binding ``address:port`` into ServiceUnavailable (exit 5)."""
    try:
        yield
    except OSError as exc:
        raise ServiceUnavailable(
            f"cannot listen on {address}:{port}: {exc.strerror or exc}"
        ) from None


def listen(address: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound to ``address:port`` and listening (an IPv6 address if it has a
    colon), as uvicorn would make it; ServiceUnavailable if it cannot be taken."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        with listen_errors(address, port):
            # A restarted server takes its port back at once, whatever connections of
            # the last one are still in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)  # for the processes of --workers N
    return sock
