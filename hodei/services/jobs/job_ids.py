"""A job or a worker named by its id or by the start of it (the 8 hex digits timelines
and lists print), as a user types it."""

from __future__ import annotations

import re
from collections.abc import Callable
from uuid import UUID

from hodei.errors import InvalidInput, JobNotFound, NotFound, WorkerNotFound
from hodei.services.ports.store import Store

MIN_PREFIX = 8
"""Hex digits a prefix must have: the short ids hodei prints are this long."""

_HEX = re.compile(r"[0-9a-f]+")


def parse_id_ref(value: str | UUID, what: str) -> UUID | str:
    """A whole id, or a prefix of one (lowercase hex digits, dashes dropped), or a
    one-line :class:`InvalidInput` naming ``what`` ("job id", "worker id")."""
    if isinstance(value, UUID):
        return value
    text = str(value).strip()
    try:
        return UUID(text)
    except ValueError:
        pass
    digits = text.lower().replace("-", "")
    if MIN_PREFIX <= len(digits) < 32 and _HEX.fullmatch(digits):
        return digits
    shown = text if len(text) <= 40 else text[:37] + "..."
    raise InvalidInput(
        f"not a {what}: {shown!r} (give the whole id or at least its first {MIN_PREFIX} hex digits)"
    )


def parse_job_ref(value: str | UUID) -> UUID | str:
    """A whole job id, or a prefix of one, or a one-line :class:`InvalidInput`."""
    return parse_id_ref(value, "job id")


def parse_worker_ref(value: str | UUID) -> UUID | str:
    """A whole worker id, or a prefix of one, or a one-line :class:`InvalidInput`."""
    return parse_id_ref(value, "worker id")


def resolve_job_id(store: Store, value: str | UUID) -> UUID:
    """The id of the one job ``value`` names: :class:`JobNotFound` if no job's id starts
    with the prefix, :class:`InvalidInput` if more than one does. A whole id is
    returned as it is (whether the job exists is the caller's read)."""
    ref = parse_job_ref(value)
    if isinstance(ref, UUID):
        return ref
    with store.reading() as tx:
        return _one(ref, tx.jobs.ids_between, "job", JobNotFound)


def resolve_worker_id(store: Store, value: str | UUID) -> UUID:
    """The id of the one worker ``value`` names, as :func:`resolve_job_id` (with
    :class:`WorkerNotFound`)."""
    ref = parse_worker_ref(value)
    if isinstance(ref, UUID):
        return ref
    with store.reading() as tx:
        return _one(ref, tx.workers.ids_between, "worker", WorkerNotFound)


def _one(
    prefix: str,
    ids_between: Callable[..., list[UUID]],
    noun: str,
    not_found: type[NotFound],
) -> UUID:
    found = ids_between(UUID(prefix.ljust(32, "0")), UUID(prefix.ljust(32, "f")), limit=2)
    if not found:
        raise not_found(f"no {noun} id starts with {prefix}")
    if len(found) > 1:
        raise InvalidInput(f"more than one {noun} id starts with {prefix}; give more of the id")
    return found[0]
