"""/v1/jobs: submit, read, page through, wait for, stream the output of, cancel, retry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter

from hodei.api.auth import Submitter, Viewer, check_owner, client_for, visible
from hodei.api.wire import (
    JobPage,
    LogLineOut,
    LogPage,
    SubmitManyRequest,
    SubmitRequest,
    job_cursor,
    parse_cursor,
)
from hodei.domain.events import DomainEvent
from hodei.domain.records import Job
from hodei.domain.specs import JobSpec
from hodei.errors import WaitTimeout
from hodei.sdk import LOG_PAGE_LINES
from hodei.services.operators.diagnosis import Diagnosis

router = APIRouter(prefix="/v1", tags=["jobs"])

_JOB = TypeAdapter(Job)
_JOBS = TypeAdapter(list[Job])


def job_response(job: Job, status: int = 200) -> Response:
    """A job as JSON, serialized directly: the hot paths (submit, get, wait) skip
    FastAPI's validation of what hodei itself built."""
    return Response(_JOB.dump_json(job), status_code=status, media_type="application/json")


MAX_WAIT_S = 60.0
"""A long poll returns after this at most (the job as it is then); clients ask again."""


def _spec(body: SubmitRequest) -> JobSpec:
    fields: dict[str, Any] = body.model_dump(exclude={"command"})
    return JobSpec.create(body.command, **fields)


@router.post(
    "/jobs", status_code=201, response_model=Job, summary="Submit one job (role: submitter)"
)
def submit(request: Request, who: Submitter, body: SubmitRequest) -> Response:
    job = client_for(request, who).submit_many([_spec(body)])[0]
    return job_response(job, 201)


@router.post(
    "/jobs/batch",
    status_code=201,
    response_model=list[Job],
    summary="Submit many jobs, all or none (role: submitter)",
)
def submit_many(request: Request, who: Submitter, body: SubmitManyRequest) -> Response:
    jobs = client_for(request, who).submit_many([_spec(j) for j in body.jobs])
    return Response(_JOBS.dump_json(jobs), status_code=201, media_type="application/json")


@router.get("/jobs", summary="Jobs, newest first, a page at a time (role: viewer)")
def list_jobs(
    request: Request,
    who: Viewer,
    state: Annotated[list[str] | None, Query()] = None,
    name: str | None = None,
    correlation_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> JobPage:
    jobs = client_for(request, who).list(
        state=state or None,
        name=name,
        correlation_id=correlation_id,
        limit=limit,
        after_key=parse_cursor(cursor) if cursor else None,
    )
    cursor = job_cursor(jobs[-1]) if len(jobs) == limit else None
    return JobPage(items=[visible(who, j) for j in jobs], next_cursor=cursor)


@router.get("/jobs/{job_id}", response_model=Job, summary="One job (role: viewer)")
def get_job(request: Request, who: Viewer, job_id: str) -> Response:
    return job_response(visible(who, client_for(request, who).get(job_id)))


@router.get(
    "/jobs/{job_id}/wait",
    response_model=Job,
    summary="Long poll: the job once it is terminal, or as it is after `timeout` s (viewer)",
)
def wait_job(
    request: Request,
    who: Viewer,
    job_id: str,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 30.0,
) -> Response:
    client = client_for(request, who)
    try:
        return job_response(visible(who, client.wait(job_id, timeout=timeout)))
    except WaitTimeout:
        return job_response(visible(who, client.get(job_id)))


@router.get("/jobs/{job_id}/logs", summary="A page of a job's output lines (role: viewer)")
def job_logs(
    request: Request,
    who: Viewer,
    job_id: str,
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    tail: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=LOG_PAGE_LINES)] = LOG_PAGE_LINES,
) -> LogPage:
    lines = client_for(request, who).logs(job_id, after_id=after_id, tail=tail, limit=limit)
    last = lines[-1].id if len(lines) == limit and lines else None
    return LogPage(items=[LogLineOut.of(line) for line in lines], next_after_id=last)


@router.get(
    "/jobs/{job_id}/logs/follow",
    summary="A job's output as NDJSON, live, until the job ends (role: viewer)",
    response_class=StreamingResponse,
)
def follow_logs(
    request: Request,
    who: Viewer,
    job_id: str,
    tail: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> StreamingResponse:
    """``after_id``: resume after the last line a dropped stream delivered (the lines
    before it are read again here, not sent)."""
    client = client_for(request, who)
    job = client.get(job_id)  # a wrong id is a 404 before the stream starts

    def lines() -> Iterator[str]:
        for line in client.follow_logs(job.id, tail=None if after_id else tail):
            if (line.id or 0) > after_id:
                yield LogLineOut.of(line).model_dump_json() + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job (submitter: its own; operator)")
def cancel(request: Request, who: Submitter, job_id: str) -> Job:
    client = client_for(request, who)
    check_owner(request, who, client.get(job_id))
    return client.cancel(job_id)


@router.post("/jobs/{job_id}/retry", summary="Retry a job (submitter: its own; operator)")
def retry(request: Request, who: Submitter, job_id: str) -> Job:
    client = client_for(request, who)
    check_owner(request, who, client.get(job_id))
    return client.retry(job_id)


@router.post(
    "/jobs/{job_id}/release",
    summary="Run a held job now, whatever it waits for (submitter: its own; operator)",
)
def release(request: Request, who: Submitter, job_id: str) -> Job:
    client = client_for(request, who)
    check_owner(request, who, client.get(job_id))
    return client.release(job_id)


@router.get("/jobs/{job_id}/timeline", summary="A job's events in order (role: viewer)")
def job_timeline(
    request: Request,
    who: Viewer,
    job_id: str,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 5000,
    related: bool = True,
) -> list[DomainEvent]:
    return client_for(request, who).timeline(job_id, limit=limit, related=related)


@router.get("/timeline", summary="A workflow's events by correlation id (role: viewer)")
def workflow_timeline(
    request: Request,
    who: Viewer,
    correlation_id: str,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 5000,
) -> list[DomainEvent]:
    return client_for(request, who).timeline(correlation_id=correlation_id, limit=limit)


@router.get("/jobs/{job_id}/diagnosis", summary="Why the job is where it is (role: viewer)")
def diagnose(request: Request, who: Viewer, job_id: str) -> Diagnosis:
    return client_for(request, who).diagnose(job_id)


__all__ = ["router"]
