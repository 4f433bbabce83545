"""Who calls the HTTP API: API tokens, their roles and what each role may do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

TOKEN_PREFIX = "hodei_pat_"
"""Every API token starts with this, so secret scanners can find leaked ones."""


class Role(StrEnum):
    """Roles in increasing power; each may do everything the ones before it may."""

    VIEWER = "viewer"  # read
    SUBMITTER = "submitter"  # submit; cancel and retry its own jobs
    OPERATOR = "operator"  # everything about jobs, workers, providers, maintenance
    ADMIN = "admin"  # API tokens too

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True)
class ApiToken:
    """An API token as stored: only the sha256 of its secret is kept."""

    id: UUID
    name: str
    role: Role
    token_hash: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the actor on every event it causes is ``api:<name>``."""

    name: str
    role: Role
    expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        return f"api:{self.name}"

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)


WORKER_CREDENTIAL_PREFIX = "hodei_wkr_"
"""Every worker credential starts with this (an API-mode worker's key to /v1/worker)."""


@dataclass(frozen=True)
class WorkerCredential:
    """What an API-mode worker got for its bootstrap token: the sha256 of a secret only
    it holds, valid until ``expires_at`` (its heartbeats move it on) and only while its
    worker is live."""

    worker_id: UUID
    token_hash: str
    expires_at: datetime
    created_at: datetime
