"""What an API-mode worker may do (the ``/v1/worker`` API's use cases).

Such a worker holds no database URL: it exchanges its bootstrap token for a credential
at registration and calls ``hodei server``, which runs the same use cases as a worker
with the database (register, heartbeat, claim, finish, cancel checks, output) for the
caller the credential names, and only on attempts that worker holds. A credential is
valid until it expires (each recorded heartbeat moves that on) and only while its worker
is live: the worker's own LOST or TERMINATED ends it, in the transaction that wrote that
state, so nothing can forget to revoke it. Every refused call is a WorkerRequestRefused
event on the worker's timeline.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID

from hodei.domain.event_builders import worker_event
from hodei.domain.events import Actor, EventType
from hodei.domain.principals import WORKER_CREDENTIAL_PREFIX, WorkerCredential
from hodei.domain.records import Job, LogLine, Worker
from hodei.domain.states import JobState, WorkerState
from hodei.errors import Conflict, Forbidden, JobNotFound, Unauthorized
from hodei.services.fleet.workers import Pulse, WorkerReport, heartbeat, register_worker
from hodei.services.jobs.attempts import Claim, Outcome, claim_attempt, finish_attempt
from hodei.services.operators.api_tokens import hash_token
from hodei.services.ports.clock import Clock
from hodei.services.ports.store import Store, Transaction

logger = logging.getLogger(__name__)

# A credential works only for a worker in one of these states: registered and not yet
# LOST or TERMINATED. A DRAINING worker finishes what it runs, but claims nothing new;
# a DEGRADED one (its broker is unreachable) heartbeats, finishes and says when it is back.
CREDENTIAL_STATES = frozenset(
    {
        WorkerState.REGISTERED,
        WorkerState.READY,
        WorkerState.BUSY,
        WorkerState.DEGRADED,
        WorkerState.DRAINING,
    }
)


@dataclass(frozen=True)
class Registration:
    """A registered worker and its credential's secret (handed to it once)."""

    worker: Worker
    credential: str
    expires_at: datetime


def register_with_credential(
    store: Store, clock: Clock, token: str, *, infra_ref: str | None, ttl_s: float
) -> Registration:
    """Consume ``token`` and register its worker, with a new credential in the same
    transaction (a worker READY without one cannot happen)."""
    secret = WORKER_CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    expires_at = now + timedelta(seconds=ttl_s)

    def store_credential(tx: Transaction, worker: Worker) -> None:
        tx.worker_credentials.put(
            WorkerCredential(worker.id, hash_token(secret), expires_at, created_at=now)
        )

    worker = register_worker(store, clock, token, infra_ref=infra_ref, also=store_credential)
    return Registration(worker, secret, expires_at)


def authenticate_worker(
    store: Store, clock: Clock, secret: str | None, *, action: str, **about: Any
) -> Worker:
    """The live worker ``secret`` is the credential of, or :class:`Unauthorized`. A known
    credential of a worker that is no longer live (or that expired) is recorded as a
    refusal of ``action`` (``about``: the job and attempt it was for)."""
    if not secret or not secret.startswith(WORKER_CREDENTIAL_PREFIX):
        raise Unauthorized("not a hodei worker credential")
    with store.reading() as tx:
        found = tx.worker_credentials.find(hash_token(secret))
    if found is None:
        raise Unauthorized("unknown worker credential")
    worker, expires_at = found
    if worker.state not in CREDENTIAL_STATES:
        why = f"the worker is {worker.state}"
    elif expires_at <= clock.now():
        why = "the credential expired"
    else:
        return worker
    record_refusal(store, clock, worker, action, f"credential revoked: {why}", **about)
    raise Unauthorized(f"worker credential revoked: {why}")


def record_refusal(
    store: Store, clock: Clock, worker: Worker, action: str, reason: str, **about: Any
) -> None:
    """A WorkerRequestRefused event on ``worker``'s timeline, and one warning line."""
    payload: dict[str, Any] = {k: str(v) for k, v in about.items() if v is not None}
    with store.transaction() as tx:
        tx.events.add(
            worker_event(
                worker,
                EventType.WORKER_REQUEST_REFUSED,
                actor=Actor.worker(worker.id),
                now=clock.now(),
                action=action,
                reason=reason,
                **payload,
            )
        )
    logger.warning(
        "refused %s from worker %s: %s",
        action,
        worker.id,
        reason,
        extra={"worker_id": str(worker.id), **payload},
    )


def _refuse(
    store: Store, clock: Clock, worker: Worker, action: str, reason: str, **about: Any
) -> NoReturn:
    record_refusal(store, clock, worker, action, reason, **about)
    raise Forbidden(f"{action} refused: {reason}")


def heartbeat_as(
    store: Store,
    clock: Clock,
    worker: Worker,
    *,
    record: bool,
    report: WorkerReport | None,
    ttl_s: float,
) -> tuple[Pulse, datetime | None]:
    """The worker's heartbeat; a recorded one also moves its credential's expiry on
    (returned; None when not recorded)."""
    pulse = heartbeat(
        store,
        clock,
        worker.id,
        record=record,
        report=None if report is None else (lambda: report),
    )
    if not record:
        return pulse, None
    expires_at = clock.now() + timedelta(seconds=ttl_s)
    with store.transaction() as tx:
        tx.worker_credentials.renew(worker.id, expires_at)
    return pulse, expires_at


def claim_as(
    store: Store, clock: Clock, worker: Worker, *, job_id: UUID, attempt: int, task_id: str
) -> Claim:
    """:func:`claim_attempt` for ``worker``: only a job of its own queue, and never an
    attempt another worker runs (Forbidden, recorded); Conflict while it drains."""
    about = {"job_id": job_id, "attempt": attempt}
    if worker.state is WorkerState.DRAINING:
        raise Conflict(f"worker {worker.id} is draining: it claims nothing new")
    with store.reading() as tx:
        job = tx.jobs.get(job_id)
    if job is None:
        return Claim(False, "no such job")
    if job.queue != worker.queue:
        _refuse(
            store, clock, worker, "claim", f"job {job_id} is not on queue {worker.queue}", **about
        )
    claim = claim_attempt(
        store, clock, job_id=job_id, attempt=attempt, worker_id=worker.id, task_id=task_id
    )
    held = claim.job
    if (
        not claim.won
        and held is not None
        and held.state is JobState.RUNNING
        and held.attempt == attempt
        and held.worker_id != worker.id
    ):
        _refuse(
            store,
            clock,
            worker,
            "claim",
            f"attempt {attempt} of job {job_id} runs on worker {held.worker_id}",
            **about,
        )
    return claim


def _held(
    store: Store, clock: Clock, worker: Worker, action: str, job_id: UUID, attempt: int
) -> Job:
    """The job, if ``worker`` runs its ``attempt``; else Forbidden (recorded)."""
    with store.reading() as tx:
        job = tx.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    if job.worker_id != worker.id or job.attempt != attempt or job.state is not JobState.RUNNING:
        _refuse(
            store,
            clock,
            worker,
            action,
            f"job {job_id} attempt {attempt} is not running on this worker"
            f" (the job is {job.state} at attempt {job.attempt})",
            job_id=job_id,
            attempt=attempt,
        )
    return job


def finish_as(
    store: Store, clock: Clock, worker: Worker, *, job_id: UUID, attempt: int, outcome: Outcome
) -> Job:
    """:func:`finish_attempt` of the attempt ``worker`` runs, from the job as stored (not
    as the caller says it is); the job after. Forbidden, recorded, if it is not the
    worker's (any more)."""
    job = _held(store, clock, worker, "finish", job_id, attempt)
    finished = finish_attempt(store, clock, job=job, worker_id=worker.id, outcome=outcome)
    if finished is None:  # lost a race with the reaper or a cancel since the read
        _refuse(
            store,
            clock,
            worker,
            "finish",
            f"job {job_id} attempt {attempt} is no longer this worker's",
            job_id=job_id,
            attempt=attempt,
        )
    return finished


def cancel_requested_as(
    store: Store, clock: Clock, worker: Worker, *, job_id: UUID, attempt: int
) -> bool:
    """Whether a cancel of the attempt ``worker`` runs was asked for."""
    job = _held(store, clock, worker, "cancel check", job_id, attempt)
    return job.cancel_requested_at is not None


def append_logs_as(store: Store, clock: Clock, worker: Worker, lines: Sequence[LogLine]) -> None:
    """Store output lines, all of attempts ``worker`` runs (else none, Forbidden)."""
    for job_id, attempt in sorted({(ln.job_id, ln.attempt_no) for ln in lines}):
        _held(store, clock, worker, "output", job_id, attempt)
    if lines:
        with store.transaction() as tx:
            tx.logs.append(list(lines))
