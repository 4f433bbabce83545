"""``hodei events list|follow``: the audit log, filtered or live."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from hodei.cli.jobs import timeline_row
from hodei.cli.output import OUTPUT_OPTION, print_json, print_table, text_or_json_option
from hodei.cli.params import id_range
from hodei.cli.remote import cli_client
from hodei.cli.serialize import event_to_dict
from hodei.domain.events import DomainEvent
from hodei.errors import InvalidInput

if TYPE_CHECKING:
    from hodei.sdk import AnyClient


def client(ctx: click.Context) -> AnyClient:
    """A CLI client: over the API when HODEI_API_URL is set, else the database."""
    return cli_client(ctx)


# ASCII digits only (\d also matches other scripts' digits); fullmatch, so no newline.
_DURATION = re.compile(r"\s*([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*(ms|s|m|h|d|w)?\s*")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=100 * 365)
"""The longest duration an option takes (``--since``, doctor's windows)."""


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """``90s``, ``5m``, ``2h``, ``7d`` (a bare number is seconds), at most 100 years."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise InvalidInput(f"{what} must look like 30s, 5m, 2h or 7d, got {text!r:.60}")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidInput(f"{what} must be at most 100 years, got {text.strip()!r:.60}")
    return timedelta(seconds=seconds)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration back from now (``5m``) or an ISO 8601 time (UTC if it has no zone)."""
    if _DURATION.fullmatch(text):
        return (now or datetime.now(UTC)) - parse_duration(text, "--since")
    try:
        moment = datetime.fromisoformat(text.strip())
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        # A time near year 1 or 9999 may not exist in UTC; the database needs UTC.
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"--since must be a duration (5m, 2h) or an ISO time, got {text!r:.60}"
        ) from None


FILTERS = [
    click.option(
        "--type", "types", multiple=True, help="Only this event type, any case (repeatable)."
    ),
    click.option(
        "--aggregate",
        help="Only the events of this job, worker, token or provider id (or the start of a "
        "job's or worker's id, 8+ hex digits).",
    ),
    click.option("--correlation-id", help="Only the events of this workflow."),
]


@click.group()
def events() -> None:
    """The audit log: every state change, who caused it and when."""


@events.command("list")
@FILTERS[0]
@FILTERS[1]
@FILTERS[2]
@click.option("--since", help="From this long ago (30s, 5m, 2h, 1d) or this ISO time.")
@click.option("--from-id", type=id_range(), help="From this event id on.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@OUTPUT_OPTION
@click.pass_context
def list_events(
    ctx: click.Context,
    types: tuple[str, ...],
    aggregate: str | None,
    correlation_id: str | None,
    since: str | None,
    from_id: int | None,
    limit: int,
    output: str,
) -> None:
    """Events in order: from --since or --from-id on, or else the latest --limit.

    \b
      hodei events list --since 5m --type JobFailed
      hodei events list --aggregate 2cf98dd9-d8cd-4b22-870b-d9b17fe4a5ea
    """
    found = client(ctx).events(
        types=types,
        aggregate_id=aggregate,
        correlation_id=correlation_id,
        since=parse_since(since) if since else None,
        after_id=from_id - 1 if from_id else None,
        limit=limit,
    )
    if output == "json":
        print_json([event_to_dict(e) for e in found])
        return
    print_table(
        [timeline_row(e) for e in found],
        ["id", "time", "event", "entity", "actor", "correlation_id", "summary"],
    )


@events.command("follow")
@FILTERS[0]
@FILTERS[1]
@FILTERS[2]
@click.option(
    "--from-id",
    type=id_range(),
    help="Start with this event id (default: only new events). To resume after a "
    "follower stopped, pass the last id it printed plus one.",
)
@text_or_json_option("json: one JSON object per line.")
@click.pass_context
def follow(
    ctx: click.Context,
    types: tuple[str, ...],
    aggregate: str | None,
    correlation_id: str | None,
    from_id: int | None,
    output: str,
) -> None:
    """Print events as they are committed, until interrupted.

    On PostgreSQL it listens on the hodei_events channel; on SQLite it polls. Either
    way it reads by event id, so a reconnect neither skips nor repeats an event and
    the ids it prints always increase.
    """
    stream = client(ctx).follow_events(
        types=types, from_id=from_id, correlation_id=correlation_id, aggregate_id=aggregate
    )
    try:
        for event in stream:
            click.echo(_json_line(event) if output == "json" else _text_line(event))
    finally:
        stream.close()


def _json_line(event: DomainEvent) -> str:
    return json.dumps(event_to_dict(event), default=str, separators=(",", ":"))


def _text_line(event: DomainEvent) -> str:
    row = timeline_row(event)
    when = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    cid = f" [{event.correlation_id}]" if event.correlation_id else ""
    return (
        f"{when} #{event.id} {row['event']} {row['entity']} by {row['actor']}{cid} {row['summary']}"
    )
