"""Who is calling and whether their role allows it: FastAPI dependencies.

A refused call is logged (the token's name, never its secret) and counted in
``hodei_api_refused_total``, which ``/metrics`` exposes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter
from starlette.concurrency import run_in_threadpool

from hodei.bootstrap import Container
from hodei.domain.principals import Principal, Role
from hodei.domain.records import Job
from hodei.errors import Forbidden, HodeiError, Unauthorized
from hodei.sdk import Client
from hodei.services.operators.api_tokens import authenticate, hash_token

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
"""This process's own API counters (``/metrics`` adds them to the database's)."""

REFUSED = Counter(
    "hodei_api_refused",
    "API calls refused: reason is unauthorized (no, unknown, revoked or expired token) "
    "or forbidden (the role may not)",
    ["reason"],
    registry=REGISTRY,
)

_bearer = HTTPBearer(auto_error=False, description="An API token: hodei_pat_...")


def container(request: Request) -> Container:
    found: Container = request.app.state.container
    return found


def _refuse(request: Request, exc: HodeiError, who: str) -> HodeiError:
    reason = "unauthorized" if isinstance(exc, Unauthorized) else "forbidden"
    REFUSED.labels(reason).inc()
    logger.warning("refused %s %s for %s: %s", request.method, request.url.path, who, exc.message)
    return exc


AUTH_CACHE_S = 1.0
"""How long a replica trusts a token it has just checked without reading it again: a
revocation takes effect on every replica within this (an expiry at once)."""


class _RecentTokens:
    """Tokens this process checked in the last second, by sha256: most calls then
    need neither a database read nor a thread. Bounded; nothing another replica needs."""

    MAX = 10_000

    def __init__(self) -> None:
        self._found: dict[str, tuple[Principal, float]] = {}

    def get(self, key: str, now: datetime) -> Principal | None:
        hit = self._found.get(key)
        if hit is None:
            return None
        who, until = hit
        if time.monotonic() >= until or (who.expires_at is not None and who.expires_at <= now):
            self._found.pop(key, None)
            return None
        return who

    def put(self, key: str, who: Principal) -> None:
        if len(self._found) >= self.MAX:
            self._found.clear()
        self._found[key] = (who, time.monotonic() + AUTH_CACHE_S)


_recent = _RecentTokens()


async def principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The authenticated caller, or 401."""
    c = container(request)
    secret = credentials.credentials if credentials else None
    key = hash_token(secret) if secret else ""
    if key and (who := _recent.get(key, c.clock.now())) is not None:
        return who
    try:
        who = await run_in_threadpool(authenticate, c.store, c.clock, secret)
    except Unauthorized as exc:
        raise _refuse(request, exc, "an unauthenticated caller") from None
    _recent.put(key, who)
    return who


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if its role is at least ``role``; else 403."""

    # async: it only compares roles, so it runs on the event loop, not in a thread. One
    # dependency that authenticates too, not one on another: FastAPI resolves each level
    # of dependencies on every request.
    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        who = await principal(request, credentials)
        if not who.may(role):
            raise _refuse(
                request,
                Forbidden(f"role {who.role} may not do this; it needs {role} or above"),
                f"api:{who.name} ({who.role})",
            )
        return who

    return check


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Submitter = Annotated[Principal, Depends(require(Role.SUBMITTER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def client_for(request: Request, who: Principal) -> Client:
    """The SDK's local backend acting as ``who``: events it causes name ``api:<name>``."""
    return Client(container(request), actor=who.actor)


MASKED = "***"


def visible(who: Principal, job: Job) -> Job:
    """The job as ``who`` may see it: its env values (which may hold secrets) only for
    the caller that submitted it and for operators; others see ``***``."""
    if not job.spec.env or who.may(Role.OPERATOR) or job.submitted_by == who.actor:
        return job
    spec = dataclasses.replace(job.spec, env=dict.fromkeys(job.spec.env, MASKED))
    return dataclasses.replace(job, spec=spec)


def check_owner(request: Request, who: Principal, job: Job) -> None:
    """A submitter may change only the jobs it submitted; operators any job."""
    refuse_unless_owner(request, who, job.submitted_by, f"job {job.id}")


def refuse_unless_owner(request: Request, who: Principal, owner: str | None, what: str) -> None:
    """A submitter may change only what it made (``owner`` is its actor); operators any."""
    if who.may(Role.OPERATOR) or owner == who.actor:
        return
    verb = "submitted" if what.startswith("job ") else "made"
    raise _refuse(
        request,
        Forbidden(f"{what} was not {verb} by api:{who.name}; an operator may change it"),
        f"api:{who.name} ({who.role})",
    )
