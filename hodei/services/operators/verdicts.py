"""The verdict of ``hodei job diagnose``: what is wrong with a job, and what to do.

Pure: decided from :class:`Facts` read beforehand, so each rule is easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from hodei.domain.events import DomainEvent, EventType
from hodei.domain.records import Attempt, Job, Provider, Worker
from hodei.domain.selection import Selection
from hodei.domain.states import FailureReason, JobState, ProviderHealth, ProviderStatus, WorkerState
from hodei.services.jobs.dispatch import PUBLISH_GRACE
from hodei.services.jobs.gates import gate_blocker

# A READY worker that leaves a queued job alone this long has probably lost its message.
IDLE_SUSPICIOUS = timedelta(seconds=30)
_GONE = (WorkerState.LOST, WorkerState.TERMINATED, WorkerState.PROVISION_FAILED)


@dataclass(frozen=True)
class Facts:
    """Everything the verdict is decided from, read in one go."""

    now: datetime
    job: Job
    attempts: list[Attempt]
    providers: list[Provider]
    selection: Selection
    queue_workers: list[Worker]
    job_worker: Worker | None
    position: int
    last_events: list[DomainEvent]
    stale_after: timedelta
    # Workers launched for its queue while it waited that never registered, newest first.
    launch_failures: list[Worker] = field(default_factory=list)
    # Settings.republish_after_s: how long a queued job waits before dispatch_pending
    # publishes it again.
    republish_after: timedelta = timedelta(seconds=300)
    # Settings.token_ttl_s: a launch older than this can no longer register.
    token_ttl: timedelta = timedelta(seconds=300)
    # Its gates: the jobs it runs after with their states, how many jobs of its
    # concurrency key hold a slot, and how many QUEUED jobs on its queue outrank it.
    dependencies: dict[UUID, JobState] = field(default_factory=dict)
    key_active: int = 0
    higher_priority: int = 0


@dataclass(frozen=True)
class Verdict:
    code: str
    text: str
    action: str


def age(moment: datetime | None, now: datetime) -> str:
    """``4m 10s ago`` style; ``never`` for None."""
    if moment is None:
        return "never"
    return f"{duration(now - moment)} ago"


def went_silent(worker: Worker, now: datetime) -> str:
    """``stopped heartbeating 4m ago``, or, for a worker that never sent one, since when."""
    if worker.last_heartbeat is not None:
        return f"stopped heartbeating {age(worker.last_heartbeat, now)}"
    if worker.registered_at is not None:
        return f"has sent no heartbeat since it registered {age(worker.registered_at, now)}"
    return f"has neither registered nor sent a heartbeat (created {age(worker.created_at, now)})"


def duration(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def clock_time(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")


def is_stale(worker: Worker, f: Facts) -> bool:
    """Gone, or registered and silent for longer than the reaper allows."""
    if worker.state in _GONE:
        return True
    return f.now - worker.last_sign_of_life > f.stale_after


def verdict_for(f: Facts) -> Verdict:
    job = f.job
    if job.state is JobState.SUCCEEDED:
        took = f" in {job.duration_ms / 1000:.2f}s" if job.duration_ms is not None else ""
        return Verdict(
            "succeeded",
            f"the job succeeded on attempt {job.attempt}{took}",
            "nothing to do",
        )
    if job.is_terminal:
        return _ended(f)
    if job.state is JobState.RUNNING:
        return _running(f)
    if job.state is JobState.QUEUED:
        return _queued(f)
    if job.held:
        return _held(f)
    if job.queue is None:
        return _no_provider(f)
    if job.next_attempt_at is not None and job.next_attempt_at > f.now:
        due = job.next_attempt_at
        return Verdict(
            "waiting_retry",
            f"the job is waiting for its retry at {clock_time(due)} (attempt {job.attempt} "
            f"of {job.max_attempts}, in {duration(due - f.now)})",
            f"nothing: it is published then; `hodei job logs {job.id}` shows why "
            f"attempt {job.attempt - 1} failed",
        )
    return _unpublished(f)


def _ended(f: Facts) -> Verdict:
    job, jid = f.job, f.job.id
    retry = f"`hodei job retry {jid}`"
    reason = job.failure_reason
    if reason == FailureReason.DEPENDENCY_FAILED:
        dep = next(
            (
                e.payload.get("dependency")
                for e in reversed(f.last_events)
                if e.event_type == str(EventType.JOB_CANCELLED)
            ),
            None,
        )
        return Verdict(
            "dependency_failed",
            f"the job was cancelled without running: a job it runs after ({dep or '?'}) "
            "did not succeed",
            f"`hodei job diagnose {dep or '<that job>'}` says why; {retry} runs it anyway",
        )
    if job.state is JobState.CANCELLED or reason == FailureReason.CANCELLED:
        by = _actor_of(f, EventType.JOB_CANCEL_REQUESTED) or _actor_of(f, EventType.JOB_CANCELLED)
        return Verdict("cancelled", f"the job was cancelled{' by ' + by if by else ''}", retry)
    if job.state is JobState.TIMED_OUT or reason == FailureReason.TIMEOUT:
        return Verdict(
            "timed_out",
            f"the job ran past its timeout of {job.spec.timeout_s}s on attempt {job.attempt}",
            f"raise --timeout or make the command faster, then {retry}",
        )
    if reason == FailureReason.NONZERO_EXIT:
        return Verdict(
            "failed",
            f"the command exited with code {job.exit_code} on attempt {job.attempt} "
            f"of {job.max_attempts}",
            f"`hodei job logs {jid} --tail 50` shows why; fix it, then {retry}",
        )
    if reason == FailureReason.WORKER_LOST:
        return Verdict(
            "failed",
            "its worker was lost and no requeue was left",
            f"`hodei job timeline {jid}` shows the worker's last events; then {retry}",
        )
    detail = f": {job.error}" if job.error else ""
    return Verdict(
        "failed",
        f"the job failed ({reason or 'unknown reason'}){detail}",
        f"`hodei job timeline {jid}` shows what happened; fix the cause, then {retry}",
    )


def _actor_of(f: Facts, event_type: EventType) -> str | None:
    found = [e.actor for e in f.last_events if e.event_type == str(event_type)]
    return found[-1] if found else None


def _running(f: Facts) -> Verdict:
    job, w = f.job, f.job_worker
    wid = str(job.worker_id)[:8] if job.worker_id else "?"
    if job.cancel_requested_at is not None:
        return Verdict(
            "cancel_requested",
            f"cancel requested {age(job.cancel_requested_at, f.now)}; the runner stops it "
            "(SIGTERM, then SIGKILL after the grace period)",
            f"wait; `hodei job logs {job.id} --follow` shows the end",
        )
    if w is None or w.state in _GONE:
        what = "no longer exists" if w is None else f"is {w.state} ({w.termination_reason or '-'})"
        return Verdict(
            "worker_lost",
            f"the job is RUNNING on worker {wid}, which {what}",
            _deadline_action(f),
        )
    if is_stale(w, f):
        return Verdict(
            "stale_worker",
            f"the job runs on worker {wid}, which {went_silent(w, f.now)}",
            _REAP_ACTION,
        )
    ends = f"; times out at {clock_time(job.deadline_at)}" if job.deadline_at else ""
    return Verdict(
        "running",
        f"running on worker {wid} for {duration(f.now - (job.started_at or f.now))} "
        f"(attempt {job.attempt}){ends}",
        f"`hodei job logs {job.id} --follow`",
    )


def _deadline_action(f: Facts) -> str:
    """enforce_deadlines ends such a job only once its deadline (plus the cancel grace)
    has passed: before that, the action is to wait for it."""
    job = f.job
    enforce = "`hodei maintenance run --task enforce_deadlines`"
    retry = f"then `hodei job retry {job.id}`"
    if job.deadline_at is None or job.deadline_at <= f.now:
        return f"{enforce} ends it TIMED_OUT now (the scheduler does it on its own); {retry}"
    return (
        f"wait: it ends TIMED_OUT at its deadline, {clock_time(job.deadline_at)} (the "
        f"scheduler does it, or {enforce} from a few seconds after then); {retry}"
    )


_REAP_ACTION = (
    "the reaper marks the worker LOST, requeues its job and a new worker is launched: is "
    "`hodei scheduler` running? `hodei maintenance run --task reap_stale_workers --task "
    "provision` does it now"
)


def _queued(f: Facts) -> Verdict:
    job = f.job
    queue = job.queue or "?"
    serving = [w for w in f.queue_workers if w.holds_capacity]
    registered = [w for w in serving if w.state is not WorkerState.PROVISIONING]
    fresh = [w for w in registered if not is_stale(w, f)]
    # A launch whose token has expired is not starting: it died before it registered.
    starting = [
        w
        for w in serving
        if w.state is WorkerState.PROVISIONING and f.now - w.created_at <= f.token_ttl
    ]
    idle = [w for w in fresh if w.state in (WorkerState.READY, WorkerState.REGISTERED)]
    waited = f.now - (job.queued_at or f.now)
    if idle:
        if waited < IDLE_SUSPICIOUS:
            return Verdict(
                "queued",
                f"queued {duration(waited)} ago; worker {str(idle[0].id)[:8]} is ready to take it",
                "wait",
            )
        return Verdict(
            "message_lost",
            f"worker {str(idle[0].id)[:8]} is idle on {queue} but the job has waited "
            f"{duration(waited)}: its broker message was probably lost",
            _republish_action(f, idle[0], waited),
        )
    degraded = [w for w in fresh if w.state is WorkerState.DEGRADED]
    if degraded and not any(w.state is WorkerState.BUSY for w in fresh):
        return _broker_unreachable(f, degraded, queue)
    if fresh:
        return _busy(f, fresh)
    if starting:
        w = starting[0]
        return Verdict(
            "worker_starting",
            f"worker {str(w.id)[:8]} is starting for {queue} (launched {age(w.created_at, f.now)})",
            f"wait; if it never registers, `hodei job timeline {job.id}` and "
            f"`hodei worker show {w.id}` show why",
        )
    if registered:
        return _stale(f, registered, queue)
    return _no_worker(f, queue, waited)


def _held(f: Facts) -> Verdict:
    """A job that waits for its gates (services/jobs/gates.py), and what would open them."""
    job = f.job
    release = f"`hodei job release {job.id}` runs it now"
    waits = gate_blocker(job, f.now, f.dependencies, f.key_active)
    if waits is None:
        return Verdict(
            "waiting_release",
            "the job's gates are open (due, its dependencies ended, a free slot) but it "
            "has not been released yet",
            "`hodei maintenance run --task release_gated` releases it now (the scheduler "
            "does it every 2 s: is `hodei scheduler` running?)",
        )
    if waits.code == "waiting_due":
        due = job.hold_until or f.now
        return Verdict(
            waits.code,
            f"the job waits for its due time, {clock_time(due)} (in {duration(due - f.now)})",
            f"{release}; or wait: the scheduler publishes it then (is `hodei scheduler` running?)",
        )
    if waits.code == "waiting_dependencies":
        first = next(d for d, s in f.dependencies.items() if not s.is_terminal)
        return Verdict(
            waits.code,
            waits.text,
            f"{release} without waiting; or wait for them (`hodei job diagnose {first}` "
            "says where the first one stands)",
        )
    key = job.concurrency_key
    return Verdict(
        waits.code,
        f"{waits.text}: it starts as soon as one of them ends",
        f"{release}, beyond the limit; or wait (`hodei job list --state RUNNING` shows "
        f"what runs), or cancel a job of key {key!r}",
    )


def _republish_action(f: Facts, idle: Worker, waited: timedelta) -> str:
    """dispatch_pending publishes a queued job again only once it has waited
    HODEI_REPUBLISH_AFTER with an idle worker on its queue: say when that is, rather
    than a command that does nothing yet."""
    run = "`hodei maintenance run --task dispatch_pending`"
    cancel = f"or `hodei job cancel {f.job.id}` and submit it again"
    idle_for = min(waited, f.now - (idle.registered_at or f.now))
    if idle_for >= f.republish_after:
        return (
            f"{run} publishes it again now (the scheduler does it on its own: is "
            f"`hodei scheduler` running?); {cancel}"
        )
    due = clock_time(f.now + f.republish_after - idle_for)
    return (
        f"wait until {due}: then it has waited HODEI_REPUBLISH_AFTER "
        f"({f.republish_after.total_seconds():g}s) with an idle worker and the scheduler "
        f"publishes it again (from then on {run} does it too); {cancel}"
    )


def _busy(f: Facts, fresh: list[Worker]) -> Verdict:
    provider = _provider_of(f)
    limit = provider.max_workers if provider else len(fresh)
    name = provider.name if provider else "its provider"
    full = len(fresh) >= limit
    behind = f.higher_priority
    return Verdict(
        "waiting_priority" if behind else "waiting_capacity",
        f"all {len(fresh)} worker(s) on {f.job.queue} are busy"
        + (f" and {name} is at max_workers={limit}" if full else "")
        + f"; {f.position} job(s) are queued ahead of it"
        + (
            f", {behind} of them with a higher priority than its {f.job.priority}" if behind else ""
        ),
        "wait"
        + (
            f", or raise capacity: `hodei provider update {name} --max-workers {limit + 1}` "
            "(or more)"
            if full
            else ""
        ),
    )


def _broker_unreachable(f: Facts, degraded: list[Worker], queue: str) -> Verdict:
    """Its workers are registered and heartbeat, but cannot reach the broker the job's
    message waits on: not capacity until Celery reconnects."""
    w = degraded[0]
    who = f"worker {str(w.id)[:8]}" if len(degraded) == 1 else f"{len(degraded)} workers"
    return Verdict(
        "broker_unreachable",
        f"{who} on {queue} cannot reach the broker (DEGRADED since "
        f"{clock_time(w.updated_at)}): the job waits on the broker until one reconnects",
        "make the broker reachable (HODEI_BROKER_URL): a DEGRADED worker is READY again as "
        "soon as Celery reconnects, or exits after HODEI_BROKER_WAIT and a new worker is "
        f"launched; `hodei events list --aggregate {w.id}` says why",
    )


def _stale(f: Facts, registered: list[Worker], queue: str) -> Verdict:
    newest = max(registered, key=lambda w: w.last_sign_of_life)
    if len(registered) == 1:
        text = f"the only worker on {queue} ({str(newest.id)[:8]}) {went_silent(newest, f.now)}"
    else:
        text = (
            f"all {len(registered)} workers on {queue} are silent; the most recent, "
            f"{str(newest.id)[:8]}, {went_silent(newest, f.now)}"
        )
    return Verdict("stale_worker", text, _REAP_ACTION)


def _no_worker(f: Facts, queue: str, waited: timedelta) -> Verdict:
    """Nothing holds a slot on the queue: say what stops a worker from being launched,
    with the command that removes exactly that."""
    provider = _provider_of(f)
    jid = f.job.id
    text = f"queued on {queue} for {duration(waited)} but no worker serves that queue"
    unused = [w for w in f.queue_workers if w.unused_token]
    if unused:
        text += (
            f'; its only "worker" is {_ids(unused)}, a token issued by hand that no process '
            "has presented (`hodei worker token create`), which serves nothing"
        )
    provision = (
        "`hodei maintenance run --task provision` launches one now (the scheduler does it "
        "every few seconds: is `hodei scheduler` running?)"
    )
    if provider is None:
        return Verdict(
            "no_worker",
            text + "; no provider owns that queue any more",
            f"cancel the job (`hodei job cancel {jid}`) and submit it again: it goes to a "
            "provider that exists",
        )
    fixes = _fixes(provider)
    if fixes:
        blockers = "; ".join(why for why, _ in fixes)
        return Verdict(
            "no_worker",
            f"{text}: provider {provider.name} launches no worker ({blockers})",
            _commands(fixes) + " (it launches workers for the queued jobs itself); or cancel "
            f"the job (`hodei job cancel {jid}`)",
        )
    if f.launch_failures:
        last = f.launch_failures[0]
        text += (
            f"; {len(f.launch_failures)} worker(s) launched for it never started, the last "
            f"({str(last.id)[:8]}, {age(last.terminated_at or last.updated_at, f.now)}): "
            f"{last.termination_reason or 'no reason recorded'}"
        )
        return Verdict(
            "no_worker",
            text,
            f"`hodei job timeline {jid}` shows each launch and why it failed (a worker must "
            "register within HODEI_TOKEN_TTL seconds); fix that, then " + provision,
        )
    return Verdict("no_worker", text, provision)


def _ids(workers: list[Worker]) -> str:
    return ", ".join(str(w.id)[:8] for w in workers)


def _provider_of(f: Facts) -> Provider | None:
    return next((p for p in f.providers if p.queue == f.job.queue), None)


def _fixes(p: Provider, job: Job | None = None) -> list[tuple[str, str]]:
    """What keeps provider ``p`` from running ``job`` (or any job), each with the command
    that removes it, in the order selection checks them."""
    out: list[tuple[str, str]] = []
    name = p.name
    if p.status is not ProviderStatus.ACTIVE:
        out.append((f"it is {p.status}", f"hodei provider enable {name}"))
    if p.health is ProviderHealth.UNHEALTHY:
        out.append(
            (
                f"it is UNHEALTHY: {p.health_message or '-'}",
                f"hodei provider health {name}",
            )
        )
    if job is not None:
        missing = [f"{k}={v}" for k, v in job.spec.labels.items() if p.labels.get(k) != v]
        if missing:
            labels = " ".join(f"--label {m}" for m in missing)
            kept = " ".join(
                f"--label {k}={v}" for k, v in p.labels.items() if k not in job.spec.labels
            )
            out.append(
                (
                    f"it lacks label {', '.join(missing)}",
                    f"hodei provider update {name} {labels} {kept}".rstrip(),
                )
            )
        regions = job.spec.regions
        if regions and p.allowed_regions and not set(regions) & set(p.allowed_regions):
            allowed = " ".join(f"--allowed-region {r}" for r in (*p.allowed_regions, regions[0]))
            out.append(
                (
                    f"its regions {','.join(p.allowed_regions)} do not include {','.join(regions)}",
                    f"hodei provider update {name} {allowed}",
                )
            )
    if p.max_workers <= 0:
        out.append(
            (
                f"max_workers={p.max_workers}: it may run no worker",
                f"hodei provider update {name} --max-workers {max(2, p.min_workers)}",
            )
        )
    return out


def _effort(fixes: list[tuple[str, str]]) -> int:
    """Enabling or resizing a provider is lighter than healing it, and both are lighter
    than changing which jobs it matches (labels, regions)."""
    return sum(
        1 if " enable " in cmd or "--max-workers" in cmd else 2 if " health " in cmd else 3
        for _, cmd in fixes
    )


def _commands(fixes: list[tuple[str, str]]) -> str:
    """The fixes' commands in order; an UNHEALTHY provider's cause is fixed by hand first."""
    steps = [f"`{cmd}`" for _, cmd in fixes]
    hand = any(cmd.startswith("hodei provider health") for _, cmd in fixes)
    return ("fix what makes it UNHEALTHY, then " if hand else "") + ", then ".join(steps)


def _no_provider(f: Facts) -> Verdict:
    job, selection = f.job, f.selection
    cancel = f"cancel the job (`hodei job cancel {job.id}`)"
    if selection.chosen is not None:
        return Verdict(
            "no_provider",
            f"no provider matched when it was submitted; {selection.chosen.name} matches now",
            "the scheduler assigns it on its next pass; `hodei maintenance run --task "
            "reschedule_unschedulable --task provision` does it now",
        )
    reasons = "; ".join(f"{n}: {why}" for n, why in selection.rejected.items()) or "none exist"
    candidates = [p for p in f.providers if job.spec.provider in (None, p.name)]
    if not candidates:
        return Verdict(
            "no_provider",
            f"no provider matches: {reasons}",
            "add a provider that can take it (e.g. `hodei provider add local --type local`), "
            f"or {cancel}",
        )
    # The provider closest to taking it: fewest things to change, then highest priority.
    best = min(candidates, key=lambda p: (_effort(_fixes(p, job)), -p.priority, p.name))
    fixes = _fixes(best, job)
    nobody = [
        f"{k}={v}"
        for k, v in job.spec.labels.items()
        if not any(p.labels.get(k) == v for p in f.providers)
    ]
    text = (
        f"no provider has label {', '.join(nobody)}"
        if nobody
        else f"no provider matches: {reasons}"
    )
    return Verdict(
        "no_provider",
        text,
        f"{_commands(fixes)} (the job is assigned and a worker launched then), or {cancel}"
        + (" and submit it without that label" if nobody else ""),
    )


def _unpublished(f: Facts) -> Verdict:
    job = f.job
    since = job.next_attempt_at or job.updated_at
    if f.now - since < PUBLISH_GRACE:
        return Verdict("publishing", "the job is being put on the broker", "wait")
    errors = [
        e.payload.get("error")
        for e in f.last_events
        if e.event_type == str(EventType.JOB_PUBLISH_FAILED)
    ]
    last_error = f": {errors[-1]}" if errors and errors[-1] else ""
    return Verdict(
        "not_published",
        f"the job has been due for {duration(f.now - since)} but is not on the broker{last_error}",
        "check the broker (HODEI_BROKER_URL); `hodei maintenance run --task dispatch_pending "
        "--task provision` publishes it and launches a worker for it (the scheduler does it "
        "every few seconds: is `hodei scheduler` running?)",
    )
