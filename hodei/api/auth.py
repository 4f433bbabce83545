"""Who is calling and whether their role allows it: FastAPI dependencies.

A refused call is logged (the token's name, never its secret) and counted in
``hodei_api_refused_total``, which ``/metrics`` exposes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter

from hodei.bootstrap import Container
from hodei.domain.principals import Principal, Role
from hodei.domain.records import Job
from hodei.errors import Forbidden, HodeiError, Unauthorized
from hodei.sdk import Client
from hodei.services.api_tokens import authenticate

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


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller, or 401."""
    c = container(request)
    secret = credentials.credentials if credentials else None
    try:
        return authenticate(c.store, c.clock, secret)
    except Unauthorized as exc:
        raise _refuse(request, exc, "an unauthenticated caller") from None


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if its role is at least ``role``; else 403."""

    # async: it only compares roles, so it runs on the event loop, not in a thread.
    async def check(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
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
    if who.may(Role.OPERATOR) or job.submitted_by == who.actor:
        return
    raise _refuse(
        request,
        Forbidden(f"job {job.id} was not submitted by api:{who.name}; an operator may change it"),
        f"api:{who.name} ({who.role})",
    )
