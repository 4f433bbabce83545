"""/v1/schedules: cron schedules. A submitter adds them and changes its own; an
operator any (as for jobs)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request

from hodei.api.auth import MASKED, Submitter, Viewer, client_for, refuse_unless_owner
from hodei.api.wire import ScheduleRequest
from hodei.domain.principals import Principal, Role
from hodei.domain.records import Job
from hodei.domain.schedules import Schedule
from hodei.domain.specs import JobSpec
from hodei.services.jobs.schedules import ScheduleView

router = APIRouter(prefix="/v1", tags=["schedules"])


def _visible(who: Principal, schedule: Schedule) -> Schedule:
    """Env values (which may hold secrets) only for the creator and operators."""
    env = schedule.spec.get("env") or {}
    if not env or who.may(Role.OPERATOR) or schedule.created_by == who.actor:
        return schedule
    spec = {**schedule.spec, "env": dict.fromkeys(env, MASKED)}
    return dataclasses.replace(schedule, spec=spec)


@router.get("/schedules", summary="Cron schedules, by name (role: viewer)")
def schedules(request: Request, who: Viewer) -> list[Schedule]:
    return [_visible(who, s) for s in client_for(request, who).schedules()]


@router.get("/schedules/{name}", summary="One schedule and its latest fires (role: viewer)")
def schedule(request: Request, who: Viewer, name: str) -> ScheduleView:
    view = client_for(request, who).schedule(name)
    return dataclasses.replace(view, schedule=_visible(who, view.schedule))


@router.post("/schedules", status_code=201, summary="Add a cron schedule (role: submitter)")
def add_schedule(request: Request, who: Submitter, body: ScheduleRequest) -> Schedule:
    fields: dict[str, Any] = body.job.model_dump(exclude={"command"})
    spec = JobSpec.create(body.job.command, **fields)
    return client_for(request, who).add_schedule(
        body.name,
        body.cron,
        spec,
        timezone=body.timezone,
        catchup=body.catchup,
        paused=body.paused,
    )


def _owned(request: Request, who: Principal, name: str) -> None:
    found = client_for(request, who).schedule(name).schedule
    refuse_unless_owner(request, who, found.created_by, f"schedule {found.name}")


@router.post("/schedules/{name}/pause", summary="Stop firing (submitter: its own; operator: any)")
def pause_schedule(request: Request, who: Submitter, name: str) -> Schedule:
    _owned(request, who, name)
    return client_for(request, who).pause_schedule(name)


@router.post(
    "/schedules/{name}/resume", summary="Fire again from the next tick (submitter: its own)"
)
def resume_schedule(request: Request, who: Submitter, name: str) -> Schedule:
    _owned(request, who, name)
    return client_for(request, who).resume_schedule(name)


@router.post(
    "/schedules/{name}/trigger",
    status_code=201,
    summary="Fire now; the job it submitted (submitter: its own; operator: any)",
)
def trigger_schedule(request: Request, who: Submitter, name: str) -> Job:
    _owned(request, who, name)
    return client_for(request, who).trigger_schedule(name)


@router.delete("/schedules/{name}", summary="Remove a schedule (submitter: its own)")
def remove_schedule(request: Request, who: Submitter, name: str) -> Schedule:
    _owned(request, who, name)
    return client_for(request, who).remove_schedule(name)
