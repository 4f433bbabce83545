"""Provider configurations, in SQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.records import Provider
from hodei.domain.selection import Candidate
from hodei.domain.states import ProviderStatus
from hodei.store import statements
from hodei.store.driver_statement import driver_statement
from hodei.store.mapping import provider_from_row, provider_to_row
from hodei.store.statements import where_params
from hodei.store.tables import jobs, workers
from hodei.store.tables import provider_configs as providers
from hodei.store.worker_repository import holds_capacity

# Workers holding capacity per provider id (a hand-issued token nothing has presented
# does not: it would block launches until it expires).
_LIVE_COUNTS = (
    sa.select(workers.c.provider_id, sa.func.count().label("n"))
    .where(holds_capacity())
    .group_by(workers.c.provider_id)
)


def _with_live_workers() -> sa.Select[Any]:
    live = _LIVE_COUNTS.subquery()
    return (
        sa.select(*providers.c, sa.func.coalesce(live.c.n, 0).label("live_workers"))
        .select_from(providers.outerjoin(live, live.c.provider_id == providers.c.id))
        .order_by(providers.c.name)
    )


_WITH_LIVE_WORKERS = _with_live_workers()


class SqlProviderRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def add(self, provider: Provider) -> None:
        self._c.execute(providers.insert().values(**provider_to_row(provider)))

    def get(self, provider_id: UUID) -> Provider | None:
        stmt = sa.select(providers).where(providers.c.id == provider_id)
        row = self._c.execute(stmt).mappings().first()
        return provider_from_row(row) if row else None

    def get_by_name(self, name: str) -> Provider | None:
        stmt = sa.select(providers).where(providers.c.name == name)
        row = self._c.execute(stmt).mappings().first()
        return provider_from_row(row) if row else None

    def search(self) -> list[Provider]:
        rows = self._c.execute(sa.select(providers).order_by(providers.c.name)).mappings()
        return [provider_from_row(r) for r in rows]

    def search_with_live_workers(self) -> list[Candidate]:
        found = []
        fast = driver_statement(_WITH_LIVE_WORKERS, self._c)
        rows = fast.all(self._c, {}) if fast else self._c.execute(_WITH_LIVE_WORKERS).mappings()
        for row in rows:
            data = dict(row)
            live = int(data.pop("live_workers"))
            found.append(Candidate(provider_from_row(data), live))
        return found

    def update(self, provider_id: UUID, **changes: Any) -> None:
        self.compare_and_set(provider_id, expected_status=None, **changes)

    def compare_and_set(
        self, provider_id: UUID, *, expected_status: ProviderStatus | None, **changes: Any
    ) -> bool:
        """Set ``changes`` if the provider is there (and its status is ``expected_status``)."""
        values = {k: (str(v) if hasattr(v, "value") else v) for k, v in changes.items()}
        if "allowed_regions" in values:
            values["allowed_regions"] = list(values["allowed_regions"])
        guard = providers.c.id == provider_id
        if expected_status is not None:
            guard = sa.and_(guard, providers.c.status == str(expected_status))
        return self._c.execute(providers.update().where(guard).values(**values)).rowcount == 1

    def delete(self, provider_id: UUID) -> None:
        # History stays: workers and jobs keep their queue (hodei.<name>) and events
        # their payload's provider name; only the reference to the row goes.
        for table in (workers, jobs):
            self._c.execute(
                table.update().where(table.c.provider_id == provider_id).values(provider_id=None)
            )
        self._c.execute(providers.delete().where(providers.c.id == provider_id))

    def lock(self, provider_id: UUID) -> None:
        self._c.execute(statements.lock_by_id(providers), where_params(id=provider_id))

    def live_worker_counts(self) -> dict[UUID, int]:
        rows = self._c.execute(_LIVE_COUNTS).all()
        return {pid: int(n) for pid, n in rows if pid is not None}
