"""API-mode workers' credentials in SQL (the ``worker_credentials`` table)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.principals import WorkerCredential
from hodei.domain.records import Worker
from hodei.store.mapping import worker_from_row
from hodei.store.tables import worker_credentials, workers

# The worker and its credential's expiry in one indexed read (the credential's hash is
# unique): what every /v1/worker call costs to authenticate.
_FIND = (
    sa.select(workers, worker_credentials.c.expires_at.label("credential_expires_at"))
    .join(worker_credentials, worker_credentials.c.worker_id == workers.c.id)
    .where(worker_credentials.c.token_hash == sa.bindparam("token_hash"))
)


class SqlWorkerCredentialRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def put(self, credential: WorkerCredential) -> None:
        self._c.execute(
            worker_credentials.delete().where(
                worker_credentials.c.worker_id == credential.worker_id
            )
        )
        self._c.execute(
            worker_credentials.insert().values(
                worker_id=credential.worker_id,
                token_hash=credential.token_hash,
                expires_at=credential.expires_at,
                created_at=credential.created_at,
            )
        )

    def find(self, token_hash: str) -> tuple[Worker, datetime] | None:
        row = self._c.execute(_FIND, {"token_hash": token_hash}).mappings().first()
        if row is None:
            return None
        data = dict(row)
        expires_at: datetime = data.pop("credential_expires_at")
        return worker_from_row(data), expires_at

    def renew(self, worker_id: UUID, expires_at: datetime) -> None:
        self._c.execute(
            worker_credentials.update()
            .where(worker_credentials.c.worker_id == worker_id)
            .values(expires_at=expires_at)
        )
