"""API tokens in SQL (the ``api_tokens`` table)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from hodei.domain.principals import ApiToken, Role
from hodei.store.tables import api_tokens


def _from_row(row: Mapping[Any, Any]) -> ApiToken:
    return ApiToken(
        id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        token_hash=row["token_hash"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


class SqlApiTokenRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self._c = connection

    def add(self, token: ApiToken) -> None:
        self._c.execute(
            api_tokens.insert().values(
                id=token.id,
                name=token.name,
                role=str(token.role),
                token_hash=token.token_hash,
                created_by=token.created_by,
                created_at=token.created_at,
                expires_at=token.expires_at,
                last_used_at=token.last_used_at,
                revoked_at=token.revoked_at,
            )
        )

    def _one(self, where: sa.ColumnElement[bool]) -> ApiToken | None:
        row = self._c.execute(sa.select(api_tokens).where(where)).mappings().first()
        return _from_row(row) if row else None

    def get_by_hash(self, token_hash: str) -> ApiToken | None:
        return self._one(api_tokens.c.token_hash == token_hash)

    def get_by_name(self, name: str) -> ApiToken | None:
        return self._one(api_tokens.c.name == name)

    def search(self, *, include_revoked: bool = False) -> list[ApiToken]:
        stmt = sa.select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.name)
        if not include_revoked:
            stmt = stmt.where(api_tokens.c.revoked_at.is_(None))
        return [_from_row(r) for r in self._c.execute(stmt).mappings()]

    def revoke(self, token_id: UUID, now: datetime) -> bool:
        result = self._c.execute(
            api_tokens.update()
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return result.rowcount == 1

    def touch(self, token_id: UUID, now: datetime, *, unless_after: datetime) -> None:
        self._c.execute(
            api_tokens.update()
            .where(
                api_tokens.c.id == token_id,
                sa.or_(
                    api_tokens.c.last_used_at.is_(None),
                    api_tokens.c.last_used_at <= unless_after,
                ),
            )
            .values(last_used_at=now)
        )
