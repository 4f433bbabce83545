"""What both backends of the SDK share: :class:`ClientBase` (the calls that only compose
others) and the checks of the caller's input. :mod:`hodei.sdk` (the database) and
:mod:`hodei.sdk_http` (a ``hodei server``) build on it, and neither imports the other
but for ``Client.from_env``'s choice of backend."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from hodei.domain.events import DomainEvent, EventType
from hodei.domain.inputs import number_problem, text_problem, utc_time
from hodei.domain.records import Job, LogLine
from hodei.domain.specs import JobSpec, RetryPolicy
from hodei.domain.states import JobState
from hodei.errors import InvalidInput
from hodei.services.ports.store import EventQuery

if TYPE_CHECKING:
    from hodei.bootstrap import Container

LOG_PAGE_LINES = 1000
"""Lines :meth:`Client.iter_logs` reads per query."""

# Ids and counts must fit the databases' 64-bit integers.
MAX_ID = 2**63 - 1


class ClientBase:
    """The SDK's calls that only compose the others, for both backends."""

    actor: str
    _closed: bool

    @property
    def _c(self) -> Container:
        raise NotImplementedError

    @property
    def container(self) -> Container:
        return self._c

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(
        self,
        spec: JobSpec | str | Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | Mapping[str, float] | None = None,
        labels: Mapping[str, str] | None = None,
        regions: Sequence[str] | str | None = None,
        provider: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        secret_env: Mapping[str, str] | None = None,
        priority: int | None = None,
        run_at: datetime | timedelta | str | None = None,
        concurrency_key: str | None = None,
        max_concurrency: int | None = None,
        after: Sequence[UUID | str | int] | None = None,
        after_any: bool | None = None,
    ) -> Job:
        """Submit one job: a :class:`JobSpec`, or a command (a shell string, or an argv
        list) plus the fields of :meth:`JobSpec.create`.

        ``secret_env``: variables the command gets like ``env``, but stored encrypted,
        never shown (show, list, events, timeline) and masked in the job's output.

        When and in what order (the job's gates): ``run_at`` (a time, or a timedelta
        from now) publishes it then, not before; ``after`` (job ids; in
        :meth:`submit_many`, also the index of a job of the same batch) waits until
        they have all ended, and cancels it (``dependency_failed``) if one did not
        succeed, unless ``after_any``; ``concurrency_key`` with ``max_concurrency``
        (default 1) lets at most that many jobs of the key run at once; ``priority``
        (0..9, default 5): higher starts first among the jobs waiting on a provider.

        Returns the stored job (the existing one if its idempotency key was seen
        before). Bad input raises :class:`~hodei.errors.InvalidJobSpec`; an unknown
        ``provider`` raises :class:`~hodei.errors.ProviderNotFound`.
        """
        fields: dict[str, Any] = {
            "name": name,
            "env": env,
            "working_dir": working_dir,
            "timeout_s": timeout_s,
            "max_attempts": max_attempts,
            "retry": retry,
            "labels": labels,
            "regions": regions,
            "provider": provider,
            "correlation_id": correlation_id,
            "idempotency_key": idempotency_key,
            "secret_env": secret_env,
            "priority": priority,
            "run_at": run_at,
            "concurrency_key": concurrency_key,
            "max_concurrency": max_concurrency,
            "after": after,
            "after_any": after_any,
        }
        if isinstance(spec, JobSpec):
            given = sorted(k for k, v in fields.items() if v is not None)
            if given:
                raise InvalidInput(
                    f"give either a JobSpec or a command with fields, not both ({given[0]})"
                )
        else:
            spec = JobSpec.create(spec, **fields)
        index = next((a for a in spec.after if isinstance(a, int)), None)
        if index is not None:
            raise InvalidInput(
                f"after: {index} is a batch index, only meaningful in submit_many; "
                "give a job id here"
            )
        return self.submit_many([spec])[0]

    def submit_many(self, specs: Iterable[JobSpec]) -> builtins.list[Job]:
        raise NotImplementedError

    def logs(
        self,
        job_id: str | UUID,
        *,
        after_id: int = 0,
        tail: int | None = None,
        limit: int | None = None,
    ) -> builtins.list[LogLine]:
        """A job's stored output lines in order, all of them unless asked for fewer:
        ``tail`` keeps only the last N, ``limit`` at most the first N (after ``after_id``).

        Each line has ``line`` (readable text) and ``data`` (exactly the bytes written,
        newline included). For output too large to hold in a list, iterate
        :meth:`iter_logs`, which reads it page by page."""
        return builtins.list(self.iter_logs(job_id, after_id=after_id, tail=tail, limit=limit))

    def iter_logs(self, *args: Any, **kwargs: Any) -> Iterator[LogLine]:
        raise NotImplementedError  # each backend's, with the arguments of ``logs``

    def events(
        self,
        *,
        types: Sequence[str] = (),
        aggregate_id: str | UUID | None = None,
        correlation_id: str | None = None,
        since: datetime | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> builtins.list[DomainEvent]:
        """Events in id order: from ``since`` or ``after_id`` on, else the latest ``limit``."""
        if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
            raise InvalidInput("since must be a timezone-aware datetime")
        if since is not None:
            # The store compares in UTC, which a time near year 1 or 9999 may not exist in.
            utc_since = utc_time(since)
            if utc_since is None:
                raise InvalidInput(f"since is out of range: {since.isoformat()}")
            since = utc_since
        event_types = checked_types(types)
        aggregate = self._aggregate_ref(aggregate_id) if aggregate_id is not None else None
        query = EventQuery(
            event_types=event_types,
            aggregate_ids=[aggregate] if isinstance(aggregate, UUID) else (),
            correlation_id=checked_text(correlation_id, "correlation_id"),
            since=since,
            after_id=None if after_id is None else checked_int(after_id, "after_id"),
            limit=checked_int(limit, "limit", 1, 10_000),
        )
        return self._events(query, aggregate if isinstance(aggregate, str) else None)

    def _events(
        self, query: EventQuery, aggregate_prefix: str | None = None
    ) -> builtins.list[DomainEvent]:
        """The events ``query`` matches; ``aggregate_prefix``: the start of an aggregate
        id that only the server can resolve (the API backend's)."""
        raise NotImplementedError

    def _aggregate_ref(self, value: str | UUID) -> UUID | str:
        """The aggregate an events filter names: a whole id, or (resolved by the
        backend) the start of a job's or a worker's id."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def parse_job_id(value: str | UUID) -> UUID:
    """A job id from user input, or a one-line :class:`InvalidInput`."""
    return parse_uuid(value, "job id")


def parse_uuid(value: str | UUID, what: str) -> UUID:
    """An id from user input (``what``: "worker id", "aggregate id", ...), or a one-line
    :class:`InvalidInput` that names it. The one parser of whole ids; a job's or a
    worker's id may also be a prefix (``services.jobs.job_ids``)."""
    if isinstance(value, UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        article = "an" if what[:1] in "aeiou" else "a"
        raise InvalidInput(f"not {article} {what}: {short(value)}") from None


def checked_text(value: str | None, what: str) -> str | None:
    """A filter or name from the caller, or a one-line :class:`InvalidInput` if it is
    not a string a database can be asked about (NUL bytes, lone surrogates)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{what} {problem}")
    return value


def checked_int(value: int, what: str, low: int = 0, high: int = MAX_ID) -> int:
    """A whole number in ``low..high`` from the caller, or a one-line InvalidInput."""
    problem = number_problem(value, low, high, whole=True)
    if problem is not None:
        raise InvalidInput(f"{what} {problem}")
    return int(value)


def check_seconds(value: float | None, what: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    problem = number_problem(value, 0, 365 * 86400)
    if problem is not None:
        raise InvalidInput(f"{what} {problem}")


def checked_states(
    state: str | JobState | Sequence[str | JobState] | None,
) -> builtins.list[JobState]:
    if state is None:
        return []
    if not isinstance(state, str | JobState | Sequence):
        raise InvalidInput(f"state must be a state name or a list of them, not {short(state)}")
    values = [state] if isinstance(state, str | JobState) else list(state)
    allowed = {s.value: s for s in JobState}
    found = [allowed.get(v.upper()) if isinstance(v, str) else v for v in values]
    if not all(isinstance(v, JobState) for v in found):
        raise InvalidInput(f"unknown state in {short(values)}; use one of {', '.join(allowed)}")
    return [v for v in found if isinstance(v, JobState)]


_EVENT_TYPES = {t.value.lower(): t.value for t in EventType}


def checked_types(types: str | Sequence[str] | None) -> builtins.list[str]:
    """Event type names as hodei records them, matched without regard to case
    (``jobheld`` is ``JobHeld``); None or none: every type. A name that is no event
    type is a one-line :class:`InvalidInput` listing the types."""
    if types is None:
        return []
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, Sequence) or isinstance(types, bytes | bytearray):
        raise InvalidInput(f"types must be a list of event type names, not {short(types)}")
    out: builtins.list[str] = []
    for name in types:
        if not isinstance(name, str):
            raise InvalidInput(f"an event type must be a string, got {type(name).__name__}")
        text = checked_text(name, "event type") or ""
        known = _EVENT_TYPES.get(text.strip().lower())
        if known is None:
            raise InvalidInput(
                f"unknown event type {short(text)}; use one of {', '.join(_EVENT_TYPES.values())}"
            )
        out.append(known)
    return builtins.list(dict.fromkeys(out))


def page_key(before: Job | None, after_key: object) -> tuple[datetime, UUID] | None:
    """The ``(created_at, id)`` a page of jobs starts after: of ``before`` (a job of the
    last page), else ``after_key``; a one-line :class:`InvalidInput` for anything else."""
    if before is not None:
        if not isinstance(before, Job):
            raise InvalidInput(f"before must be a Job (the last of a page), not {short(before)}")
        return (before.created_at, before.id)
    if after_key is None:
        return None
    if (
        not isinstance(after_key, tuple)
        or len(after_key) != 2
        or not isinstance(after_key[0], datetime)
        or after_key[0].tzinfo is None
        or not isinstance(after_key[1], UUID)
    ):
        raise InvalidInput(f"after_key must be a (created_at, id) pair, not {short(after_key)}")
    return (after_key[0], after_key[1])


def check_instance(value: object, kind: type, what: str) -> None:
    """None, or a ``kind``; else a one-line :class:`InvalidInput` naming ``what``."""
    if value is not None and not isinstance(value, kind):
        raise InvalidInput(f"{what} must be a {kind.__name__}, not {short(value)}")


def provider_name(name: str) -> str:
    checked = checked_text(name, "provider name")
    if not checked:
        raise InvalidInput("give a provider name")
    return checked


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def schedule_name(name: str) -> str:
    checked = checked_text(name, "schedule name")
    if not checked:
        raise InvalidInput("give a schedule name")
    return checked


def schedule_spec(
    name: str, spec: JobSpec | str | Sequence[str], fields: Mapping[str, Any]
) -> JobSpec:
    """The job a schedule submits: a JobSpec as given, or a command plus fields; its
    name defaults to the schedule's."""
    if isinstance(spec, JobSpec):
        if fields:
            raise InvalidInput(
                f"give either a JobSpec or a command with fields, not both ({sorted(fields)[0]})"
            )
        return spec
    known = set(JobSpec.__dataclass_fields__) - {"command"}
    unknown = sorted(set(fields) - known - {"timeout_s"})
    if unknown:
        raise InvalidInput(f"unknown job field {unknown[0]!r}")
    values = dict(fields)
    if values.get("name") is None and isinstance(name, str):
        values["name"] = name
    return JobSpec.create(spec, **values)
