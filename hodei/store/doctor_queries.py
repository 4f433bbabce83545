"""The SQL behind ``hodei doctor``: consistency checks bounded by a time window or by
what is active now, so they stay fast on a long history."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.events import EventType
from hodei.domain.records import BootstrapToken, Job, Worker
from hodei.domain.states import REGISTERED_WORKER_STATES, JobState, WorkerState
from hodei.services.ports.reads import ChainAnomaly, TransitionRules
from hodei.store.mapping import job_from_row, token_from_row, worker_from_row
from hodei.store.tables import domain_events as events
from hodei.store.tables import jobs, workers
from hodei.store.tables import worker_bootstrap_tokens as tokens
from hodei.store.worker_repository import SqlWorkerRepository

_ACTIVE = [str(s) for s in (JobState.PENDING, JobState.QUEUED, JobState.RUNNING)]
_DEAD = [str(s) for s in (WorkerState.LOST, WorkerState.TERMINATED, WorkerState.PROVISION_FAILED)]


# Jobs per chain query: an explicit id list keeps PostgreSQL on the (aggregate_id, id)
# index; a subquery lets it misjudge the scope and scan every event.
SCOPE_BATCH = 500


def _scope(since: datetime) -> sa.CompoundSelect[UUID]:
    """Jobs with an event since ``since`` (ix_domain_events_occurred_at) and every
    active job (ix_jobs_state_created_at)."""
    recent = sa.select(events.c.aggregate_id).where(
        events.c.occurred_at >= since, events.c.aggregate_type == "job"
    )
    active = sa.select(jobs.c.id).where(jobs.c.state.in_(_ACTIVE))
    return sa.union(recent, active)


def _chain(job_ids: list[UUID]) -> sa.CTE:
    """Each state-change event of these jobs, with the state before it."""
    new_state = events.c.payload["new_state"].as_string()
    return (
        sa.select(
            events.c.aggregate_id.label("job_id"),
            events.c.id,
            events.c.event_type,
            events.c.payload["old_state"].as_string().label("old_state"),
            new_state.label("new_state"),
            events.c.payload["manual"].as_boolean().label("manual"),
            sa.func.lag(new_state)
            .over(partition_by=events.c.aggregate_id, order_by=events.c.id)
            .label("previous_state"),
            sa.func.row_number()
            .over(partition_by=events.c.aggregate_id, order_by=events.c.id)
            .label("n"),
            sa.func.lead(events.c.id)
            .over(partition_by=events.c.aggregate_id, order_by=events.c.id)
            .label("next_id"),
        )
        .where(
            events.c.aggregate_id.in_(job_ids),
            events.c.aggregate_type == "job",
            new_state.is_not(None),
        )
        .cte("chain")
    )


def chain_anomalies(
    connection: sa.Connection, *, since: datetime, rules: TransitionRules, limit: int
) -> list[ChainAnomaly]:
    """State changes that are not allowed, do not start from the state before them, or
    (the last one) do not end in the job's stored state."""
    scope = list(connection.execute(_scope(since)).scalars())
    found: list[ChainAnomaly] = []
    for start in range(0, len(scope), SCOPE_BATCH):
        found.extend(_anomalies(connection, scope[start : start + SCOPE_BATCH], rules, limit))
    return sorted(found, key=lambda a: a.event_id)[:limit]


def _anomalies(
    connection: sa.Connection, job_ids: list[UUID], rules: TransitionRules, limit: int
) -> list[ChainAnomaly]:
    chain = _chain(job_ids)
    old = sa.func.coalesce(chain.c.old_state, "")
    previous = sa.func.coalesce(chain.c.previous_state, "")
    pair = sa.tuple_(old, chain.c.new_state)
    allowed = sa.or_(
        pair.in_(sorted(rules.normal)),
        sa.and_(
            chain.c.event_type == rules.manual_event_type,
            sa.func.coalesce(chain.c.manual, sa.false()),
            pair.in_(sorted(rules.manual_retry)),
        ),
    )
    first_ok = sa.and_(old == "", chain.c.new_state == rules.initial_state)
    step_ok = sa.case((chain.c.n == 1, first_ok), else_=sa.and_(old == previous, allowed))
    end_ok = sa.or_(chain.c.next_id.is_not(None), chain.c.new_state == jobs.c.state)
    stmt = (
        sa.select(
            chain,
            jobs.c.state.label("job_state"),
            sa.case((step_ok, sa.true()), else_=sa.false()).label("step_ok"),
        )
        .join(jobs, jobs.c.id == chain.c.job_id)
        .where(jobs.c.id.in_(job_ids), sa.not_(sa.and_(step_ok, end_ok)))
        .order_by(chain.c.id)
        .limit(limit)
    )
    return [
        ChainAnomaly(
            job_id=r.job_id,
            event_id=int(r.id),
            event_type=r.event_type,
            old_state=r.old_state,
            new_state=r.new_state,
            previous_state=r.previous_state,
            is_first=int(r.n) == 1,
            is_last=r.next_id is None,
            job_state=r.job_state,
            step_ok=bool(r.step_ok),
        )
        for r in connection.execute(stmt).all()
    ]


def pending_unpublished(connection: sa.Connection, *, before: datetime, limit: int) -> list[Job]:
    stmt = (
        sa.select(jobs)
        .where(
            jobs.c.state == str(JobState.PENDING),
            jobs.c.updated_at < before,
            sa.or_(jobs.c.next_attempt_at.is_(None), jobs.c.next_attempt_at < before),
        )
        .order_by(jobs.c.created_at)
        .limit(limit)
    )
    return [job_from_row(r) for r in connection.execute(stmt).mappings()]


def running_on_dead_workers(
    connection: sa.Connection, *, limit: int
) -> list[tuple[Job, Worker | None]]:
    w = workers.alias("w")
    stmt = (
        sa.select(jobs)
        .outerjoin(w, w.c.id == jobs.c.worker_id)
        .where(
            jobs.c.state == str(JobState.RUNNING), sa.or_(w.c.id.is_(None), w.c.state.in_(_DEAD))
        )
        .order_by(jobs.c.started_at)
        .limit(limit)
    )
    found = [job_from_row(r) for r in connection.execute(stmt).mappings()]
    repo = SqlWorkerRepository(connection)
    return [(job, repo.get(job.worker_id) if job.worker_id else None) for job in found]


# RUNNING jobs looked at per doctor run for the check below: there are only as many as
# the fleet's concurrency, but the query stays bounded anyway.
_RUNNING_SCAN = 5000


def running_unreported(connection: sa.Connection, *, limit: int) -> list[tuple[Job, Worker]]:
    """RUNNING jobs that their live worker's last recorded heartbeat, taken after the
    job started, does not name (the membership test runs here: JSON containment is
    spelled differently on each database)."""
    w = workers.alias("w")
    stmt = (
        sa.select(jobs, *(c.label(f"w_{c.name}") for c in w.c))
        .join(w, w.c.id == jobs.c.worker_id)
        .where(
            jobs.c.state == str(JobState.RUNNING),
            w.c.state.in_([str(s) for s in REGISTERED_WORKER_STATES]),
            w.c.reported_jobs.is_not(None),
            w.c.last_heartbeat > jobs.c.started_at,
        )
        .order_by(jobs.c.started_at)
        .limit(_RUNNING_SCAN)
    )
    found: list[tuple[Job, Worker]] = []
    for row in connection.execute(stmt).mappings():
        worker = worker_from_row({c.name: row[f"w_{c.name}"] for c in w.c})
        job = job_from_row({c.name: row[c.name] for c in jobs.c})
        if job.id not in (worker.reported_jobs or ()):
            found.append((job, worker))
            if len(found) >= limit:
                break
    return found


def unmarked_expired_tokens(
    connection: sa.Connection, *, expired_before: datetime, limit: int
) -> list[BootstrapToken]:
    # Driven by the few PROVISIONING workers (ix_workers_state_queue), then their
    # tokens (ix_worker_bootstrap_tokens_worker_id): not by every expired token ever.
    stmt = (
        sa.select(*tokens.c)
        .join(workers, workers.c.id == tokens.c.worker_id)
        .where(
            workers.c.state == str(WorkerState.PROVISIONING),
            tokens.c.consumed_at.is_(None),
            tokens.c.expires_at < expired_before,
        )
        .order_by(tokens.c.expires_at)
        .limit(limit)
    )
    return [token_from_row(r) for r in connection.execute(stmt).mappings()]


def last_health_change(connection: sa.Connection, provider_id: UUID) -> datetime | None:
    stmt = sa.select(sa.func.max(events.c.occurred_at)).where(
        events.c.aggregate_id == provider_id,
        events.c.event_type == str(EventType.PROVIDER_HEALTH_CHANGED),
    )
    value: datetime | None = connection.execute(stmt).scalar()
    return value
