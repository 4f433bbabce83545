"""Single-use bootstrap tokens: issue one per worker, consume it exactly once."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from hodei.domain.event_builders import token_event, worker_event
from hodei.domain.events import Actor, EventType
from hodei.domain.records import BootstrapToken, Provider, Worker
from hodei.domain.states import WorkerState
from hodei.errors import TokenRejected
from hodei.services.ports.clock import Clock
from hodei.services.ports.store import Store, Transaction

logger = logging.getLogger(__name__)

_REJECTION_NAMESPACE = uuid.UUID("6f1c1f3e-9a43-4d0e-8a43-5a1d2b7c1e01")


def hash_token(secret: str) -> str:
    """What is stored: the sha256 of the secret, never the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    """A new worker row and the secret it must present (shown once)."""

    worker: Worker
    secret: str
    expires_at: datetime


def issue_token(
    tx: Transaction,
    now: datetime,
    *,
    provider: Provider,
    ttl_s: float,
    actor: str,
    name: str | None = None,
    infra_ref: str | None = None,
) -> IssuedToken:
    """Within ``tx``: pre-create a PROVISIONING worker and a token bound to it.

    ``infra_ref`` is ``LAUNCHING_REF`` when the provisioner launches the worker itself;
    a token issued for a worker started by hand has none until a process presents it."""
    worker_id = uuid.uuid4()
    worker = Worker(
        id=worker_id,
        name=name or f"hodei-worker-{worker_id.hex[:12]}",
        provider_id=provider.id,
        queue=provider.queue,
        state=WorkerState.PROVISIONING,
        created_at=now,
        updated_at=now,
        infra_ref=infra_ref,
        labels=dict(provider.labels),
    )
    secret = "hodei_" + secrets.token_urlsafe(32)
    token = BootstrapToken(
        id=uuid.uuid4(),
        token_hash=hash_token(secret),
        worker_id=worker_id,
        expires_at=now + timedelta(seconds=ttl_s),
        created_at=now,
    )
    tx.workers.add(worker)
    tx.tokens.add(token)
    tx.events.add(
        worker_event(
            worker,
            EventType.WORKER_PROVISIONING,
            actor=actor,
            now=now,
            provider=provider.name,
            infra_ref=infra_ref,
        ),
        token_event(
            token.id,
            EventType.TOKEN_ISSUED,
            actor=actor,
            now=now,
            worker_id=str(worker_id),
            expires_at=token.expires_at.isoformat(),
        ),
    )
    return IssuedToken(worker, secret, token.expires_at)


def consume_token(store: Store, clock: Clock, secret: str) -> BootstrapToken:
    """Consume ``secret`` atomically, or record why not and raise :class:`TokenRejected`."""
    now = clock.now()
    token_hash = hash_token(secret)
    with store.transaction() as tx:
        token = tx.tokens.consume(token_hash, now)
        if token is not None:
            tx.events.add(
                token_event(
                    token.id,
                    EventType.TOKEN_CONSUMED,
                    actor=Actor.worker(token.worker_id),
                    now=now,
                    worker_id=str(token.worker_id),
                )
            )
            return token
    reason = _record_rejection(store, now, token_hash)
    raise TokenRejected(reason, _REJECTION_MESSAGES[reason])


_REJECTION_MESSAGES = {
    "unknown": "bootstrap token rejected: unknown token (it was never issued, or was purged)",
    "expired": "bootstrap token rejected: the token expired; issue a new one with "
    "`hodei worker token create`",
    "consumed": "bootstrap token rejected: the token was already used; each token "
    "registers one worker once",
}


def _record_rejection(store: Store, now: datetime, token_hash: str) -> str:
    with store.transaction() as tx:
        known = tx.tokens.get_by_hash(token_hash)
        if known is None:
            reason = "unknown"
            aggregate_id = uuid.uuid5(_REJECTION_NAMESPACE, token_hash)
        else:
            reason = "consumed" if known.consumed_at is not None else "expired"
            aggregate_id = known.id
        tx.events.add(
            token_event(
                aggregate_id,
                EventType.TOKEN_REJECTED,
                actor="worker:unregistered",
                now=now,
                reason=reason,
                worker_id=str(known.worker_id) if known else None,
            )
        )
    logger.warning("bootstrap token rejected: %s", reason)
    return reason
