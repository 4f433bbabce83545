"""Printing results as tables or JSON."""

from __future__ import annotations

import json
import os
import select
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_OPTION = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Print a table for people or JSON for programs.",
)


def text_or_json_option(help: str | None = None) -> Callable[[F], F]:
    """``--output text|json`` for commands that print text (streams, one id) by default."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help=help,
    )


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Left-aligned columns sized to their content."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_fields(fields: Mapping[str, Any]) -> None:
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        click.echo(f"{key + ':':<{width + 1}} {_cell(value)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``12s ago`` style ages; ``never`` for None."""
    if moment is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


CLOSED_OUTPUT_EXIT_CODE = 141
"""128 + SIGPIPE: what a Unix tool exits with when its reader went away (``| head``)."""


class OutputClosed(Exception):
    """stdout or stderr is a pipe (or socket) whose reader has gone: the command stops
    quietly, as a Unix tool killed by SIGPIPE does. Not an OSError, so that click's own
    handling of EPIPE (a silent exit 1) does not take it."""


def output_closed() -> bool:
    """Whether stdout or stderr has lost its reader: a broken pipe from anything else (a
    socket to a server) is an error to report, not a reason to stop quietly."""
    return any(_closed(stream) for stream in (sys.stdout, sys.stderr))


def _closed(stream: Any) -> bool:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # not a file (captured in-process): a write to it cannot break
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    # Linux flags a pipe's write end POLLERR once no reader is left; a socket, POLLHUP.
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def silence_closed_output() -> None:
    """Point the closed stdout/stderr at /dev/null, so that Python's last flush at exit
    does not print `Exception ignored ... BrokenPipeError`."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        if _closed(stream):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
