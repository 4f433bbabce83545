"""A job or a worker named by its id or by the start of it (the 8 hex digits timelines
and lists print), as a user types it."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from hodei.domain.specs import MIN_ID_PREFIX, id_ref
from hodei.errors import InvalidInput, JobNotFound, NotFound, WorkerNotFound
from hodei.services.ports.store import Store


def parse_id_ref(value: str | UUID, what: str) -> UUID | str:
    """A whole id, or a prefix of one (lowercase hex digits, dashes dropped), or a
    one-line :class:`InvalidInput` naming ``what`` ("job id", "worker id")."""
    if isinstance(value, UUID):
        return value
    text = str(value).strip()
    ref = id_ref(text)
    if ref is not None:
        return ref
    shown = text if len(text) <= 40 else text[:37] + "..."
    article = "an" if what[:1] in "aeiou" else "a"
    raise InvalidInput(
        f"not {article} {what}: {shown!r} "
        f"(give the whole id or at least its first {MIN_ID_PREFIX} hex digits)"
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


def resolve_aggregate_id(store: Store, value: str | UUID) -> UUID:
    """The id an events filter names: a whole id as it is (any aggregate: a job, a
    worker, a provider, a token), or the start of the one job's id, else of the one
    worker's id, that begins so. :class:`NotFound` if none does, :class:`InvalidInput`
    if more than one job (or, no job matching, more than one worker) does."""
    ref = parse_id_ref(value, "aggregate id")
    if isinstance(ref, UUID):
        return ref
    with store.reading() as tx:
        try:
            return _one(ref, tx.jobs.ids_between, "job", JobNotFound)
        except JobNotFound:
            pass
        try:
            return _one(ref, tx.workers.ids_between, "worker", WorkerNotFound)
        except WorkerNotFound:
            raise NotFound(f"no job or worker id starts with {ref}") from None


def whole_after_ids(store: Store, after: tuple[UUID | int | str, ...]) -> tuple[UUID | int, ...]:
    """A spec's ``after`` with each id prefix replaced by the one job's whole id
    (:class:`JobNotFound` if no job's id starts so, :class:`InvalidInput` if several do);
    whole ids and batch indices are kept."""
    out: list[UUID | int] = []
    with store.reading() as tx:
        for dep in after:
            if isinstance(dep, str):
                try:
                    out.append(_one(dep, tx.jobs.ids_between, "job", JobNotFound))
                except (JobNotFound, InvalidInput) as exc:
                    raise type(exc)(f"after: {exc}") from None
            else:
                out.append(dep)
    return tuple(dict.fromkeys(out))
