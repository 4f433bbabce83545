"""The SQL implementation of the :class:`hodei.services.ports.store.Store` port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hodei.domain.transitions import ONE_STATEMENT, Applied, Transition
from hodei.services.ports.store import (
    ApiTokenRepository,
    AttemptRepository,
    EventRepository,
    GateRepository,
    JobRepository,
    LogRepository,
    ProviderRepository,
    ScheduleRepository,
    TokenRepository,
    WorkerCredentialRepository,
    WorkerRepository,
)
from hodei.store import transitions as writes
from hodei.store.api_token_repository import SqlApiTokenRepository
from hodei.store.driver_statement import driver_connection
from hodei.store.engine import database_errors, read_only
from hodei.store.event_repository import SqlEventRepository, SqlLogRepository
from hodei.store.gate_repository import SqlGateRepository
from hodei.store.job_repository import Seal, SqlAttemptRepository, SqlJobRepository
from hodei.store.provider_repository import SqlProviderRepository
from hodei.store.run_repository import SqlRunRepository
from hodei.store.schedule_repository import SqlScheduleRepository
from hodei.store.worker_credentials import SqlWorkerCredentialRepository
from hodei.store.worker_repository import SqlTokenRepository, SqlWorkerRepository


class SqlTransaction:
    """Every repository, sharing one connection and so one transaction."""

    def __init__(self, connection: sa.Connection, seal: Seal | None = None) -> None:
        self.connection = connection
        self.jobs: JobRepository = SqlJobRepository(connection, seal)
        self.attempts: AttemptRepository = SqlAttemptRepository(connection)
        self.events: EventRepository = SqlEventRepository(connection)
        self.workers: WorkerRepository = SqlWorkerRepository(connection)
        self.tokens: TokenRepository = SqlTokenRepository(connection)
        self.providers: ProviderRepository = SqlProviderRepository(connection)
        self.logs: LogRepository = SqlLogRepository(connection)
        self.api_tokens: ApiTokenRepository = SqlApiTokenRepository(connection)
        self.schedules: ScheduleRepository = SqlScheduleRepository(connection)
        self.gates: GateRepository = SqlGateRepository(connection)
        self.worker_credentials: WorkerCredentialRepository = SqlWorkerCredentialRepository(
            connection
        )
        self.runs = SqlRunRepository(connection)  # the one-statement writes, for apply

    def apply(self, transition: Transition) -> Applied:
        return writes.apply(self, transition)

    def apply_all(self, transitions: Sequence[Transition]) -> list[Transition]:
        return writes.apply_all(self, transitions)


class SqlStore:
    """Opens transactions on one engine."""

    def __init__(self, engine: Engine, seal: Seal | None = None) -> None:
        self.engine = engine
        self._seal = seal  # encrypts a new job's secret_env (store/secrets.py)

    def apply(self, transition: Transition) -> Applied:
        # A transition written as one statement needs no transaction around it.
        unit = self.single_write() if transition.kind in ONE_STATEMENT else self.transaction()
        with unit as tx:
            return tx.apply(transition)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        with database_errors(), self.engine.begin() as connection:
            yield SqlTransaction(connection, self._seal)

    @contextlib.contextmanager
    def single_write(self) -> Iterator[SqlTransaction]:
        with database_errors():
            if self.engine.dialect.name != "postgresql":
                with self.engine.begin() as connection:
                    yield SqlTransaction(connection, self._seal)
                return
            # Each statement commits on its own: no BEGIN or COMMIT round trips. psycopg's
            # autocommit is switched directly, for this use only: SQLAlchemy's isolation
            # level option does the same with twice the CPU, in bookkeeping on checkout
            # and check-in. SQLAlchemy's implicit BEGIN is the driver's, so none is sent
            # in autocommit, and its rollback on close finds no transaction to end.
            with self.engine.connect() as connection:
                driver = driver_connection(connection)
                driver.autocommit = True
                try:
                    yield SqlTransaction(connection, self._seal)
                finally:
                    if not driver.closed:  # a broken connection is discarded anyway
                        driver.autocommit = False

    @contextlib.contextmanager
    def reading(self) -> Iterator[SqlTransaction]:
        with database_errors(), read_only(self.engine) as connection:
            yield SqlTransaction(connection, self._seal)

    def dispose(self) -> None:
        """Drop pooled connections (after a fork, or before exit)."""
        self.engine.dispose(close=False)
