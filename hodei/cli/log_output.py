"""Printing a job's output lines: their exact bytes, stdout's to stdout, the rest to stderr.

A line's bytes are written as stored (``LogLine.data``), not its text re-encoded, so
``hodei job logs ID > out`` gives back what the command wrote, NUL bytes and bytes that
are not UTF-8 included.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any, BinaryIO

from hodei.domain.records import LogLine


class LineWriter:
    """Writes lines to the binary side of stdout and stderr.

    ``live``: flush after every line (``--follow``, ``job run``), so a reader sees each as
    it comes; otherwise the buffers fill and flush as they go, and :meth:`flush` ends."""

    def __init__(self, *, prefix: bool = False, live: bool = False) -> None:
        self._prefix = prefix
        self._live = live
        # Text written through click before us must come out first.
        sys.stdout.flush()
        sys.stderr.flush()
        self._out: BinaryIO = sys.stdout.buffer
        self._err: BinaryIO = sys.stderr.buffer

    def write(self, line: LogLine) -> None:
        target = self._out if line.stream == "stdout" else self._err
        if self._prefix:
            target.write(f"[{line.stream}] ".encode())
        target.write(line.data)
        if self._prefix and not line.data.endswith(b"\n"):
            target.write(b"\n")  # a prefixed line must not run into the next one
        if self._live:
            target.flush()

    def write_json(self, line: LogLine) -> None:
        self._out.write(json.dumps(log_dict(line)).encode() + b"\n")
        if self._live:
            self._out.flush()

    def flush(self) -> None:
        self._out.flush()
        self._err.flush()


def log_dict(line: LogLine) -> dict[str, Any]:
    """A line for ``--output json``: ``data_base64`` (the exact bytes) only where ``line``
    and a newline are not them."""
    out: dict[str, Any] = {
        "id": line.id,
        "ts": line.ts.isoformat(timespec="milliseconds"),
        "attempt": line.attempt_no,
        "stream": line.stream,
        "line": line.line,
    }
    if line.data != line.plain_data:
        out["data_base64"] = base64.b64encode(line.data).decode("ascii")
    return out
