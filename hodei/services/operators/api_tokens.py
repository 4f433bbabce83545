"""API tokens: create (the secret shown once), list, revoke, and authenticate a caller."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from datetime import datetime, timedelta

from hodei.domain.events import Aggregate, DomainEvent, EventType
from hodei.domain.inputs import MAX_SPAN
from hodei.domain.principals import TOKEN_PREFIX, ApiToken, Principal, Role
from hodei.errors import Conflict, InvalidInput, NotFound, Unauthorized
from hodei.services.ports.clock import Clock
from hodei.services.ports.store import Store

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-@]{0,62}")
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written at most once per this, not on every request."""


def hash_token(secret: str) -> str:
    """sha256 of the secret: it is 32 random bytes, so no slow hash is needed."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"unknown role {value[:40]!r}; use one of {', '.join(r.value for r in Role)}"
        ) from None


def create_api_token(
    store: Store,
    clock: Clock,
    *,
    name: str,
    role: Role,
    expires_in: timedelta | None,
    actor: str,
) -> tuple[ApiToken, str]:
    """A new token and its secret (the only time it is seen; only its hash is kept)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            "a token name is 1-63 letters, digits and _.-@, starting with a letter or digit"
        )
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("a token's lifetime must be positive")
    if expires_in is not None and expires_in > MAX_SPAN:
        # now + expires_in overflows past year 9999; the CLI's --expires-in stops here too.
        raise InvalidInput("a token's lifetime must be at most 100 years")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    token = ApiToken(
        id=uuid.uuid4(),
        name=name,
        role=role,
        token_hash=hash_token(secret),
        created_at=now,
        created_by=actor,
        expires_at=None if expires_in is None else now + expires_in,
    )
    with store.transaction() as tx:
        if tx.api_tokens.get_by_name(name) is not None:
            raise Conflict(f"an API token named {name!r} exists already (revoked ones too)")
        tx.api_tokens.add(token)
        tx.events.add(_event(token, EventType.API_TOKEN_CREATED, actor, now))
    logger.info("API token %s created with role %s", name, role)
    return token, secret


def list_api_tokens(store: Store, *, include_revoked: bool = False) -> list[ApiToken]:
    with store.reading() as tx:
        return tx.api_tokens.search(include_revoked=include_revoked)


def revoke_api_token(store: Store, clock: Clock, name: str, *, actor: str) -> ApiToken:
    """Revoke the token called ``name``; its next request is refused."""
    now = clock.now()
    with store.transaction() as tx:
        token = tx.api_tokens.get_by_name(name) if isinstance(name, str) else None
        if token is None:
            raise NotFound(f"no API token named {str(name)[:63]!r}")
        if not tx.api_tokens.revoke(token.id, now):
            raise Conflict(f"API token {name!r} is revoked already")
        tx.events.add(_event(token, EventType.API_TOKEN_REVOKED, actor, now))
        revoked = tx.api_tokens.get_by_name(name)
    assert revoked is not None
    logger.info("API token %s revoked", name)
    return revoked


def authenticate(store: Store, clock: Clock, secret: str | None) -> Principal:
    """The caller a token secret belongs to, or :class:`Unauthorized` (whose message
    never contains the secret)."""
    if not secret:
        raise Unauthorized(
            "no API token (set HODEI_API_TOKEN; it goes in the Authorization header)"
        )
    if not secret.startswith(TOKEN_PREFIX):
        raise Unauthorized("not a hodei API token")
    now = clock.now()
    with store.reading() as tx:
        token = tx.api_tokens.get_by_hash(hash_token(secret))
    if token is None:
        raise Unauthorized("unknown API token")
    if token.revoked_at is not None:
        raise Unauthorized(f"API token {token.name!r} is revoked")
    if not token.usable_at(now):
        raise Unauthorized(f"API token {token.name!r} expired")
    if token.last_used_at is None or token.last_used_at <= now - LAST_USED_RESOLUTION:
        with store.transaction() as tx:
            tx.api_tokens.touch(token.id, now, unless_after=now - LAST_USED_RESOLUTION)
    return Principal(token.name, token.role, token.expires_at)


def _event(token: ApiToken, event_type: EventType, actor: str, now: datetime) -> DomainEvent:
    # The hash is left out too: it identifies the secret.
    return DomainEvent(
        event_type=event_type,
        aggregate_type=Aggregate.API_TOKEN,
        aggregate_id=token.id,
        actor=actor,
        occurred_at=now,
        payload={
            "name": token.name,
            "role": str(token.role),
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        },
    )
