"""/v1/worker: the calls of API-mode workers, authenticated by their own credential.

A worker started with HODEI_API_URL instead of a database URL registers here with its
bootstrap token and gets a credential (``hodei_wkr_...``) for the rest; every other call
acts for the worker that credential names, on the attempts it holds only
(services/fleet/worker_access.py). These routes are the worker's, not an API token's: a
``hodei_pat_`` token is refused here, and a worker credential everywhere else.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hodei.api.auth import REFUSED, container
from hodei.api.wire import (
    CancelCheck,
    ClaimOut,
    ClaimRequest,
    FinishRequest,
    OutputBatch,
    WorkerBrokerLink,
    WorkerHeartbeat,
    WorkerPulse,
    WorkerRegistered,
    WorkerRegisterRequest,
    WorkerTerminate,
)
from hodei.domain.records import Job, Worker
from hodei.errors import HodeiError, Unauthorized
from hodei.services.fleet import worker_access as access
from hodei.services.fleet.workers import (
    WorkerReport,
    broker_back,
    broker_lost,
    terminate_worker,
)
from hodei.services.jobs.dispatch import dispatch_pending

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/worker", tags=["worker"])

_bearer = HTTPBearer(auto_error=False, description="A worker credential: hodei_wkr_...")
Credential = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _worker(request: Request, credential: Credential, action: str, **about: Any) -> Worker:
    c = container(request)
    try:
        return access.authenticate_worker(
            c.store,
            c.clock,
            credential.credentials if credential else None,
            action=action,
            **about,
        )
    except Unauthorized as exc:
        REFUSED.labels("unauthorized").inc()
        logger.warning("refused %s %s: %s", request.method, request.url.path, exc.message)
        raise


@router.post(
    "/register",
    summary="Exchange a bootstrap token for a worker credential (the token is the auth)",
)
def register(request: Request, body: WorkerRegisterRequest) -> WorkerRegistered:
    c = container(request)
    done = access.register_with_credential(
        c.store,
        c.clock,
        body.token,
        infra_ref=body.infra_ref,
        ttl_s=c.settings.worker_credential_ttl_s,
    )
    return WorkerRegistered(
        worker=done.worker, credential=done.credential, expires_at=done.expires_at
    )


@router.post("/heartbeat", summary="The worker is alive; renews its credential")
def heartbeat(request: Request, credential: Credential, body: WorkerHeartbeat) -> WorkerPulse:
    c = container(request)
    worker = _worker(request, credential, "heartbeat")
    report = None if body.jobs is None else WorkerReport(tuple(body.jobs), body.pending_outcomes)
    pulse, expires_at = access.heartbeat_as(
        c.store,
        c.clock,
        worker,
        record=body.record,
        report=report,
        ttl_s=c.settings.worker_credential_ttl_s,
    )
    try:  # as a worker with the database does from its heartbeat: due retries go out
        dispatch_pending(c.store, c.clock, c.publisher, queue=worker.queue, limit=50)
    except HodeiError as exc:
        logger.warning("dispatch for %s failed: %s", worker.queue, exc.message)
    return WorkerPulse(
        state=str(pulse.state),
        running_jobs=pulse.running_jobs,
        waiting_jobs=pulse.waiting_jobs,
        keep_warm=pulse.keep_warm,
        credential_expires_at=expires_at,
    )


@router.post("/claims", summary="Claim an attempt of a job on the worker's queue")
def claim(request: Request, credential: Credential, body: ClaimRequest) -> ClaimOut:
    c = container(request)
    about = {"job_id": body.job_id, "attempt": body.attempt}
    worker = _worker(request, credential, "claim", **about)
    won = access.claim_as(
        c.store, c.clock, worker, job_id=body.job_id, attempt=body.attempt, task_id=body.task_id
    )
    secret_env: dict[str, str] = {}
    if won.won and won.job is not None and won.job.secret_env_sealed:
        # Opened here, for the worker's command only: the worker holds no key.
        secret_env = dict(c.secrets.open(won.job.secret_env_sealed))
    # The job only to the worker that won it: a lost claim says why, nothing more.
    job = won.job if won.won else None
    return ClaimOut(won=won.won, reason=won.reason, job=job, secret_env=secret_env)


@router.post("/finishes", summary="Record how an attempt the worker runs ended")
def finish(request: Request, credential: Credential, body: FinishRequest) -> Job:
    c = container(request)
    about = {"job_id": body.job_id, "attempt": body.attempt}
    worker = _worker(request, credential, "finish", **about)
    # Through the facade, as a worker with the database finishes: what follows a finish
    # (a retry due now, the jobs that waited for this one) is its to do, not the route's.
    return c.hodei.finish_for(
        worker, job_id=body.job_id, attempt=body.attempt, outcome=body.outcome
    )


@router.get("/jobs/{job_id}/{attempt}/cancel", summary="Whether a cancel was asked for")
def cancel_check(
    request: Request, credential: Credential, job_id: UUID, attempt: int
) -> CancelCheck:
    c = container(request)
    worker = _worker(request, credential, "cancel check", job_id=job_id, attempt=attempt)
    asked = access.cancel_requested_as(c.store, c.clock, worker, job_id=job_id, attempt=attempt)
    return CancelCheck(cancel_requested=asked)


@router.post("/output", status_code=204, summary="Store output lines of attempts it runs")
def output(request: Request, credential: Credential, body: OutputBatch) -> None:
    c = container(request)
    worker = _worker(request, credential, "output")
    access.append_logs_as(c.store, c.clock, worker, [line.to_line() for line in body.lines])


@router.post("/broker", summary="The worker's consumer lost its broker (DEGRADED), or is back")
def broker(request: Request, credential: Credential, body: WorkerBrokerLink) -> dict[str, bool]:
    c = container(request)
    worker = _worker(request, credential, "broker")
    if body.reachable:
        changed = broker_back(c.store, c.clock, worker.id, down_s=body.down_s)
    else:
        changed = broker_lost(c.store, c.clock, worker.id, reason=body.reason)
    return {"changed": changed}


@router.post("/terminate", summary="The worker is exiting")
def terminate(request: Request, credential: Credential, body: WorkerTerminate) -> dict[str, bool]:
    c = container(request)
    worker = _worker(request, credential, "terminate")
    return {"terminated": terminate_worker(c.store, c.clock, worker.id, reason=body.reason)}
