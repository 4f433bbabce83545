"""Workers and their bootstrap tokens, in SQL."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.records import BootstrapToken, Worker
from hodei.domain.states import REGISTERED_WORKER_STATES, WorkerState
from hodei.store import statements
from hodei.store.mapping import (
    normalise_changes,
    token_from_row,
    worker_from_row,
    worker_to_row,
)
from hodei.store.statements import where_params
from hodei.store.tables import worker_bootstrap_tokens as tokens
from hodei.store.tables import workers


def job_done_statement() -> sa.Update:
    """Count a finished job: one fewer running, one more executed, and READY again once
    it runs nothing. Parameters: ``w_id``, ``w_now``.

    No lock is needed first: two finishes of one worker's jobs update its row one after
    the other, and the second computes from the row as the first left it (PostgreSQL
    re-reads a row it had to wait for; SQLite runs one writer at a time)."""
    last_one = sa.and_(workers.c.state == str(WorkerState.BUSY), workers.c.running_jobs <= 1)
    return (
        workers.update()
        .where(workers.c.id == sa.bindparam("w_id", type_=workers.c.id.type))
        .values(
            jobs_executed=workers.c.jobs_executed + 1,
            running_jobs=sa.case((workers.c.running_jobs > 0, workers.c.running_jobs - 1), else_=0),
            state=sa.case((last_one, str(WorkerState.READY)), else_=workers.c.state),
            current_job_id=sa.case((last_one, None), else_=workers.c.current_job_id),
            updated_at=sa.bindparam("w_now", type_=workers.c.updated_at.type),
        )
    )


_JOB_DONE = job_done_statement()


def holds_capacity(table: sa.Table = workers) -> sa.ColumnElement[bool]:
    """SQL for :attr:`Worker.holds_capacity`: live, and not a hand-issued token that no
    process has presented (PROVISIONING without infra_ref)."""
    return sa.or_(
        statements.one_of(table.c.state, [str(s) for s in REGISTERED_WORKER_STATES]),
        sa.and_(
            table.c.state == sa.literal_column(f"'{WorkerState.PROVISIONING}'"),
            table.c.infra_ref.is_not(None),
        ),
    )


def last_sign_of_life(table: sa.Table = workers) -> sa.ColumnElement[datetime]:
    """SQL for :attr:`Worker.last_sign_of_life`: heartbeat, else registration, else creation."""
    return sa.func.coalesce(table.c.last_heartbeat, table.c.registered_at, table.c.created_at)


class SqlWorkerRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def add(self, worker: Worker) -> None:
        self._c.execute(workers.insert().values(**worker_to_row(worker)))

    def get(self, worker_id: UUID) -> Worker | None:
        stmt = statements.select_by(workers, "id")
        first = self._c.execute(stmt, where_params(id=worker_id)).mappings().first()
        return worker_from_row(first) if first else None

    def ids_between(self, low: UUID, high: UUID, *, limit: int) -> list[UUID]:
        return statements.ids_between(self._c, workers, low, high, limit=limit)

    def compare_and_set(
        self, worker_id: UUID, *, states: Collection[WorkerState], **changes: Any
    ) -> bool:
        stmt = statements.conditional_update(workers, tuple(str(s) for s in states))
        if changes.get("reported_jobs") is not None:  # a JSON list of ids, as worker_to_row
            changes["reported_jobs"] = [str(j) for j in changes["reported_jobs"]]
        params = {**normalise_changes(changes), **where_params(id=worker_id)}
        return self._c.execute(stmt, params).rowcount == 1

    def search(
        self, *, states: Collection[WorkerState] = (), queue: str | None = None, limit: int = 100
    ) -> list[Worker]:
        stmt = sa.select(workers).order_by(workers.c.created_at.desc()).limit(limit)
        if states:
            stmt = stmt.where(workers.c.state.in_([str(s) for s in states]))
        if queue:
            stmt = stmt.where(workers.c.queue == queue)
        return [worker_from_row(r) for r in self._c.execute(stmt).mappings()]

    def stale(self, *, heartbeat_before: datetime, limit: int) -> list[Worker]:
        # A registered worker that never heartbeated is judged by when it registered; a
        # row with neither (a crash, hand-made SQL) by when it was created.
        last_sign = last_sign_of_life()
        stmt = (
            sa.select(workers)
            .where(
                workers.c.state.in_([str(s) for s in REGISTERED_WORKER_STATES]),
                last_sign < heartbeat_before,
            )
            .limit(limit)
        )
        return [worker_from_row(r) for r in self._c.execute(stmt).mappings()]

    def provisioning_without_token(
        self, *, now: datetime, created_before: datetime, limit: int
    ) -> list[Worker]:
        usable = (
            sa.select(tokens.c.id)
            .where(
                tokens.c.worker_id == workers.c.id,
                tokens.c.consumed_at.is_(None),
                tokens.c.expires_at > now,
            )
            .exists()
        )
        stmt = (
            sa.select(workers)
            .where(
                workers.c.state == str(WorkerState.PROVISIONING),
                workers.c.created_at < created_before,
                ~usable,
            )
            .limit(limit)
        )
        return [worker_from_row(r) for r in self._c.execute(stmt).mappings()]

    def mark_lost(
        self, worker_id: UUID, *, heartbeat_before: datetime, now: datetime, reason: str
    ) -> bool:
        if self._c.dialect.name == "postgresql" and not self._lock_if_free(worker_id):
            return False  # its own (maybe frozen) transaction holds it; next pass
        last_sign = last_sign_of_life()
        query = (
            workers.update()
            .where(
                workers.c.id == worker_id,
                workers.c.state.in_([str(s) for s in REGISTERED_WORKER_STATES]),
                last_sign < heartbeat_before,
            )
            .values(
                state=str(WorkerState.LOST),
                termination_reason=reason,
                terminated_at=now,
                current_job_id=None,
                updated_at=now,
            )
        )
        return self._c.execute(query).rowcount == 1

    def _lock_if_free(self, worker_id: UUID) -> bool:
        stmt = (
            sa.select(workers.c.id)
            .where(workers.c.id == worker_id)
            .with_for_update(skip_locked=True)
        )
        return self._c.execute(stmt).first() is not None

    def job_done(self, worker_id: UUID, now: datetime) -> None:
        self._c.execute(_JOB_DONE, where_params(id=worker_id, now=now))

    def follow_count(
        self, worker_id: UUID, *, states: Collection[WorkerState], now: datetime
    ) -> bool:
        """BUSY if it runs a job, else READY, if it is in ``states``: decided from its
        running-job count as the row is written, so a job's end meanwhile counts."""
        stmt = (
            workers.update()
            .where(workers.c.id == worker_id, workers.c.state.in_([str(s) for s in states]))
            .values(
                state=sa.case(
                    (workers.c.running_jobs > 0, str(WorkerState.BUSY)),
                    else_=str(WorkerState.READY),
                ),
                updated_at=now,
            )
        )
        return self._c.execute(stmt).rowcount == 1


class SqlTokenRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def add(self, token: BootstrapToken) -> None:
        self._c.execute(
            tokens.insert().values(
                id=token.id,
                token_hash=token.token_hash,
                worker_id=token.worker_id,
                expires_at=token.expires_at,
                consumed_at=token.consumed_at,
                created_at=token.created_at,
            )
        )

    def consume(self, token_hash: str, now: datetime) -> BootstrapToken | None:
        # One conditional UPDATE: of any number of racing workers, exactly one wins.
        result = self._c.execute(
            tokens.update()
            .where(
                tokens.c.token_hash == token_hash,
                tokens.c.consumed_at.is_(None),
                tokens.c.expires_at > now,
            )
            .values(consumed_at=now)
        )
        if result.rowcount != 1:
            return None
        return self.get_by_hash(token_hash)

    def get_by_hash(self, token_hash: str) -> BootstrapToken | None:
        stmt = sa.select(tokens).where(tokens.c.token_hash == token_hash)
        row = self._c.execute(stmt).mappings().first()
        return token_from_row(row) if row else None

    def expired_unconsumed(self, now: datetime, limit: int) -> list[BootstrapToken]:
        stmt = (
            sa.select(tokens)
            .join(workers, workers.c.id == tokens.c.worker_id)
            .where(
                tokens.c.consumed_at.is_(None),
                tokens.c.expires_at <= now,
                workers.c.state == str(WorkerState.PROVISIONING),
            )
            .with_only_columns(*tokens.c)
            .limit(limit)
        )
        return [token_from_row(r) for r in self._c.execute(stmt).mappings()]

    def count_outstanding(self, now: datetime) -> int:
        stmt = sa.select(sa.func.count()).where(
            tokens.c.consumed_at.is_(None), tokens.c.expires_at > now
        )
        return int(self._c.execute(stmt).scalar_one())
