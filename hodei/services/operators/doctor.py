"""``hodei doctor``: consistency checks over the whole system, each finding with the ids
involved and the command that helps.

History checks (transitions, gaps, jobs without events) look at the jobs with events
in a recent window plus every active job; state checks look at what is active now.
Both stay bounded on a long history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hodei.domain.events import EventType
from hodei.domain.states import JobState, ProviderHealth, allowed
from hodei.services.operators.status import SchedulerLead, scheduler_lead
from hodei.services.operators.verdicts import duration
from hodei.services.ports.clock import Clock
from hodei.services.ports.reads import ChainAnomaly, OperatorReads, ReadStore, TransitionRules
from hodei.services.ports.store import EventQuery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DoctorOptions:
    since: timedelta = timedelta(hours=24)  # history window
    pending_after: timedelta = timedelta(minutes=5)
    token_grace: timedelta = timedelta(minutes=2)
    unhealthy_after: timedelta = timedelta(minutes=10)
    stale_after: timedelta = timedelta(seconds=60)  # Settings.worker_stale_after_s
    reap_grace: timedelta = timedelta(seconds=60)
    limit: int = 200  # findings per check


@dataclass(frozen=True)
class Finding:
    check: str
    message: str
    ids: dict[str, str]
    suggestion: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "message": self.message,
            "ids": self.ids,
            "suggestion": self.suggestion,
        }


@dataclass(frozen=True)
class DoctorReport:
    checked_at: datetime
    since: datetime
    checks: list[str]
    findings: list[Finding] = field(default_factory=list)
    scheduler: SchedulerLead | None = None  # who leads the schedulers, if one ever did

    @property
    def healthy(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at.isoformat(timespec="milliseconds"),
            "since": self.since.isoformat(timespec="milliseconds"),
            "checks": self.checks,
            "healthy": self.healthy,
            "findings": [f.to_dict() for f in self.findings],
            "scheduler": None if self.scheduler is None else _lead_dict(self.scheduler),
        }


def _lead_dict(lead: SchedulerLead) -> dict[str, Any]:
    return {
        "holder": lead.holder,
        "since": lead.since.isoformat(timespec="milliseconds"),
        "renewed_at": lead.renewed_at.isoformat(timespec="milliseconds"),
        "renewed_age_s": lead.renewed_age_s,
        "alive": lead.alive,
    }


def transition_rules() -> TransitionRules:
    """The allowed job transitions as state pairs, from the domain's own table."""
    states = list(JobState)
    return TransitionRules(
        normal=frozenset((str(a), str(b)) for a in states for b in states if allowed(a, b)),
        manual_retry=frozenset(
            (str(a), str(b)) for a in states for b in states if allowed(a, b, manual_retry=True)
        ),
        manual_event_type=str(EventType.JOB_RETRY_SCHEDULED),
        initial_state=str(JobState.PENDING),
    )


Check = Callable[[OperatorReads, datetime, DoctorOptions], list[Finding]]


def run_doctor(
    reads: ReadStore, clock: Clock, options: DoctorOptions = DoctorOptions()
) -> DoctorReport:
    """Run every check; a healthy system has no findings."""
    now = clock.now()
    findings: list[Finding] = []
    with reads.read() as r:
        for check in CHECKS.values():
            findings.extend(check(r, now, options))
        lead = scheduler_lead(r.scheduler_leader(), now)
    if findings:
        # INFO: the findings are the caller's result (`hodei doctor` prints them); a
        # WARNING showed up in the CLI's output as an extra, timestamped line.
        logger.info("doctor: %d finding(s)", len(findings))
    return DoctorReport(now, now - options.since, list(CHECKS), findings, lead)


def _event_history(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    anomalies = r.chain_anomalies(since=now - o.since, rules=transition_rules(), limit=o.limit)
    return [f for a in anomalies for f in _classify(a)]


def _classify(a: ChainAnomaly) -> list[Finding]:
    change = f"{a.event_type} (event {a.event_id}) goes {a.old_state or '∅'}→{a.new_state}"
    problems = [] if a.step_ok else [_step_problem(a, change)]
    if a.is_last and a.new_state != a.job_state:
        problems.append(
            (
                "event_gap",
                f"the job is {a.job_state} but its last event, {change}, left it "
                f"{a.new_state}: the event of the last change is missing",
            )
        )
    ids = {"job_id": str(a.job_id), "event_id": str(a.event_id)}
    return [
        Finding(check, f"job {a.job_id}: {text}", ids, f"hodei job timeline {a.job_id}")
        for check, text in problems
    ]


def _step_problem(a: ChainAnomaly, change: str) -> tuple[str, str]:
    if a.is_first and a.old_state is not None:
        return "event_gap", f"its first state change {change}: the events before it are missing"
    if a.is_first:
        return "invalid_transition", f"{change}; a job starts PENDING"
    if (a.old_state or "") != (a.previous_state or ""):
        return (
            "event_gap",
            f"{change} but the previous event left it {a.previous_state}: an event is "
            "missing in between",
        )
    return "invalid_transition", f"{change}, which is not an allowed transition"


def _without_events(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    return [
        Finding(
            "job_without_events",
            f"job {j.id} ({j.state}, created {duration(now - j.created_at)} "
            "ago) has no events at all",
            {"job_id": str(j.id)},
            f"hodei job show {j.id}",
        )
        for j in r.jobs_without_events(since=now - o.since, limit=o.limit)
    ]


def _pending_unpublished(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    out = []
    for j in r.pending_unpublished(before=now - o.pending_after, limit=o.limit):
        waited = duration(now - (j.next_attempt_at or j.updated_at))
        if j.queue is None:
            why = "no provider matches it"
        else:
            why = f"it was never published to {j.queue}"
        out.append(
            Finding(
                "pending_unpublished",
                f"job {j.id} has been PENDING for {waited}: {why}",
                {"job_id": str(j.id)},
                f"hodei job diagnose {j.id}",
            )
        )
    return out


def _running_on_lost(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    out = []
    for job, worker in r.running_on_dead_workers(limit=o.limit):
        if job.worker_id is None:
            message = f"job {job.id} is RUNNING without a worker"
        else:
            what = "no longer exists" if worker is None else f"is {worker.state}"
            message = f"job {job.id} is RUNNING on worker {job.worker_id}, which {what}"
        ids = {"job_id": str(job.id), "worker_id": str(job.worker_id or "")}
        out.append(Finding("running_on_lost_worker", message, ids, f"hodei job diagnose {job.id}"))
    return out


def _running_unreported(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    out = []
    for job, worker in r.running_unreported(limit=o.limit):
        beat = duration(now - worker.last_heartbeat) if worker.last_heartbeat else "?"
        out.append(
            Finding(
                "running_without_command",
                f"job {job.id} is RUNNING on worker {worker.id}, which runs no command for "
                f"it and holds no outcome of it (its heartbeat {beat} ago said so)",
                {"job_id": str(job.id), "worker_id": str(worker.id)},
                f"hodei job diagnose {job.id}",
            )
        )
    return out


def _expired_tokens(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    return [
        Finding(
            "expired_token_unmarked",
            f"token {t.id} of worker {t.worker_id} expired unused "
            f"{duration(now - t.expires_at)} ago, but the worker is still PROVISIONING",
            {"token_id": str(t.id), "worker_id": str(t.worker_id)},
            "hodei maintenance run --task expire_tokens",
        )
        for t in r.unmarked_expired_tokens(expired_before=now - o.token_grace, limit=o.limit)
    ]


def _unreaped_workers(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    before = now - o.stale_after - o.reap_grace
    return [
        Finding(
            "worker_not_reaped",
            f"worker {w.id} is {w.state} but has not heartbeated for "
            f"{duration(now - (w.last_heartbeat or w.registered_at or w.created_at))}",
            {"worker_id": str(w.id)},
            "hodei maintenance run --task reap_stale_workers",
        )
        for w in r.unreaped_workers(heartbeat_before=before, limit=o.limit)
    ]


def _unhealthy_providers(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    out = []
    for p in r.providers():
        if p.health is not ProviderHealth.UNHEALTHY:
            continue
        since = r.last_health_change(p.id) or p.updated_at
        if now - since < o.unhealthy_after:
            continue
        out.append(
            Finding(
                "provider_unhealthy",
                f"provider {p.name} has been UNHEALTHY for "
                f"{duration(now - since)}: {p.health_message or '-'}",
                {"provider_id": str(p.id), "provider": p.name},
                f"hodei provider health {p.name}",
            )
        )
    return out


def _schedules_failing(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    """A schedule that cannot fire: it names a provider that does not exist (removed
    with --force), or its newest event is a ScheduleFailed (nothing fired since)."""
    providers = {p.name for p in r.providers()}
    out: list[Finding] = []
    for s in r.schedules():
        if len(out) >= o.limit:
            break
        ids = {"schedule_id": str(s.id), "schedule": s.name}
        provider = s.spec.get("provider")
        if provider is not None and provider not in providers:
            out.append(
                Finding(
                    "schedule_provider_missing",
                    f"schedule {s.name} names provider {provider}, which does not exist:"
                    " its ticks fail and submit no job",
                    {**ids, "provider": str(provider)},
                    f"hodei schedule remove {s.name} (add it again with an existing --provider)",
                )
            )
            continue
        if s.paused:
            continue  # it fires nothing, so nothing fails: no need to read its events
        newest = r.events(EventQuery(aggregate_ids=[s.id], limit=1, newest_first=True))
        if not newest or newest[0].event_type != EventType.SCHEDULE_FAILED:
            continue
        out.append(
            Finding(
                "schedule_failing",
                f"schedule {s.name} cannot fire: {newest[0].payload.get('reason', '-')}",
                ids,
                f"hodei job timeline --correlation-id {s.name}; fix the cause, or"
                f" `hodei schedule remove {s.name}`",
            )
        )
    return out


def _scheduler_lead(r: OperatorReads, now: datetime, o: DoctorOptions) -> list[Finding]:
    """A scheduler led once but none has renewed the lead lately: no maintenance task
    and no cron tick runs. (No row at all: no scheduler was ever started, which an
    install driven by `hodei maintenance run` may intend.)"""
    lead = scheduler_lead(r.scheduler_leader(), now)
    if lead is None or lead.alive:
        return []
    return [
        Finding(
            "no_scheduler_leader",
            f"no hodei scheduler leads: the last leader, {lead.holder}, renewed the lead"
            f" {duration(now - lead.renewed_at)} ago; maintenance and cron ticks are not running",
            {"scheduler": lead.holder},
            "start `hodei scheduler` (several may run; one leads)",
        )
    ]


CHECKS: dict[str, Check] = {
    "event_history": _event_history,
    "jobs_without_events": _without_events,
    "pending_unpublished": _pending_unpublished,
    "running_on_lost_workers": _running_on_lost,
    "running_without_command": _running_unreported,
    "expired_tokens_unmarked": _expired_tokens,
    "stale_workers_unreaped": _unreaped_workers,
    "providers_unhealthy": _unhealthy_providers,
    "scheduler_lead": _scheduler_lead,
    "schedules_failing": _schedules_failing,
}
