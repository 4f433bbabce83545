"""A job named by its id or by the start of it (the 8 hex digits timelines and lists
print), as a user types it."""

from __future__ import annotations

import re
from uuid import UUID

from hodei.errors import InvalidInput, JobNotFound
from hodei.services.ports.store import Store

MIN_PREFIX = 8
"""Hex digits a prefix must have: the short ids hodei prints are this long."""

_HEX = re.compile(r"[0-9a-f]+")


def parse_job_ref(value: str | UUID) -> UUID | str:
    """A whole job id, or a prefix of one (lowercase hex digits, dashes dropped), or a
    one-line :class:`InvalidInput`."""
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
        f"not a job id: {shown!r} (give the whole id or at least its first {MIN_PREFIX} hex digits)"
    )


def resolve_job_id(store: Store, value: str | UUID) -> UUID:
    """The id of the one job ``value`` names: :class:`JobNotFound` if no job's id starts
    with the prefix, :class:`InvalidInput` if more than one does. A whole id is
    returned as it is (whether the job exists is the caller's read)."""
    ref = parse_job_ref(value)
    if isinstance(ref, UUID):
        return ref
    low = UUID(ref.ljust(32, "0"))
    high = UUID(ref.ljust(32, "f"))
    with store.reading() as tx:
        found = tx.jobs.ids_between(low, high, limit=2)
    if not found:
        raise JobNotFound(f"no job id starts with {ref}")
    if len(found) > 1:
        raise InvalidInput(f"more than one job id starts with {ref}; give more of the id")
    return found[0]
