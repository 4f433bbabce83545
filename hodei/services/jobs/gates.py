"""A job's gates: what it waits for before it is published (docs/architecture.md, "Gates").

A job submitted with a due time (``run_at``), jobs to run after (``after``) or a
concurrency key is stored PENDING and *held*: no message is published for it, and
``dispatch_pending`` leaves it alone. :func:`release_jobs` is the one place that opens
the gates: it checks a held job's gates in a transaction, releases it (``held`` off,
JobReleased) or, when a job it runs after failed, cancels it (``dependency_failed``),
and publishes what it released after the commit. It is called at submit, when a job
ends (its dependents and the next waiter of its key: :func:`after_end`) and by the
scheduler for due times (:func:`release_due`).

A concurrency key's slots are counted under a lock per key (``GateRepository.lock_key``:
a transaction-scoped advisory lock on PostgreSQL; SQLite serialises writers), so two
releasers never both take the last slot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from hodei.domain import transitions
from hodei.domain.event_builders import job_event
from hodei.domain.events import Actor, DomainEvent, EventType
from hodei.domain.records import Job
from hodei.domain.specs import JobSpec
from hodei.domain.states import TERMINAL_STATES, FailureReason, JobState
from hodei.domain.transitions import Transition
from hodei.errors import Conflict, InvalidJobSpec, JobNotFound
from hodei.services.jobs.dispatch import publish_jobs
from hodei.services.ports.clock import Clock
from hodei.services.ports.publisher import TaskPublisher
from hodei.services.ports.store import Store, Transaction

logger = logging.getLogger(__name__)

# Jobs one pass of the scheduler's due-time scan or sweep looks at.
SCAN_LIMIT = 500
# Most dependents released by one ending (a fan-out larger than this is finished by the
# scheduler's sweep).
DEPENDENTS_LIMIT = 5000


@dataclass(frozen=True)
class Blocker:
    """Why a held job still waits: ``code`` is a diagnose verdict."""

    code: str  # waiting_due, waiting_dependencies, waiting_concurrency
    text: str
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass
class Releases:
    """What a pass of :func:`release_jobs` did."""

    released: list[Job] = field(default_factory=list)
    cancelled: list[Job] = field(default_factory=list)


# -- at submit ------------------------------------------------------------------------


def hold_until(spec: JobSpec, now: datetime) -> datetime | None:
    """The due time a new job still waits for (None if it has none or it has passed)."""
    return spec.run_at if spec.run_at is not None and spec.run_at > now else None


def resolve_after(specs: Sequence[JobSpec], ids: Sequence[UUID]) -> list[tuple[UUID, UUID]]:
    """The ``(job, depends_on)`` pairs of a batch, its indices replaced by the batch's
    job ids. Raises :class:`InvalidJobSpec` for an index outside the batch or a cycle."""
    pairs: list[tuple[UUID, UUID]] = []
    edges: dict[int, list[int]] = {}
    for n, spec in enumerate(specs):
        for dep in spec.after:
            if isinstance(dep, str):
                # Resolved by the submit (job_ids.whole_after_ids) before it gets here.
                raise InvalidJobSpec(f"invalid job: after: {dep} is not a whole job id")
            if isinstance(dep, int):
                if dep == n:
                    raise InvalidJobSpec(
                        f"invalid job: after index {dep} is the job itself; an index names "
                        "another job of the same submit_many batch"
                    )
                if dep >= len(specs):
                    raise InvalidJobSpec(
                        f"invalid job: after index {dep} is not a job of this batch "
                        f"(it has {len(specs)})"
                    )
                edges.setdefault(n, []).append(dep)
                pairs.append((ids[n], ids[dep]))
            else:
                if dep == ids[n]:
                    raise InvalidJobSpec("invalid job: a job cannot run after itself")
                pairs.append((ids[n], dep))
    cycle = _find_cycle(edges)
    if cycle is not None:
        path = " -> ".join(str(i) for i in cycle)
        raise InvalidJobSpec(f"invalid job: the dependencies form a cycle (jobs {path})")
    return pairs


def _find_cycle(edges: Mapping[int, Sequence[int]]) -> list[int] | None:
    """A cycle of the batch's index graph, if it has one (iterative DFS)."""
    state: dict[int, int] = {}  # 1 on the path, 2 done
    for root in edges:
        if state.get(root):
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        path: list[int] = [root]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            nexts = edges.get(node, ())
            if i < len(nexts):
                stack[-1] = (node, i + 1)
                child = nexts[i]
                if state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                if not state.get(child):
                    state[child] = 1
                    stack.append((child, 0))
                    path.append(child)
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return None


def check_known(tx: Transaction, pairs: Sequence[tuple[UUID, UUID]], new: set[UUID]) -> None:
    """Every job named in ``after`` exists (or is of this batch), else JobNotFound."""
    outside = {d for _, d in pairs if d not in new}
    if not outside:
        return
    missing = outside - set(tx.gates.states_of(outside))
    if missing:
        raise JobNotFound(f"after: no job {sorted(str(m) for m in missing)[0]}")


def held_event(job: Job, *, actor: str) -> DomainEvent:
    """JobHeld: what the new job waits for, on its timeline."""
    spec = job.spec
    waits: dict[str, Any] = {}
    if spec.run_at is not None:
        waits["run_at"] = spec.run_at
    if spec.after:
        waits["after"] = [str(a) for a in spec.after[:20]]
        if len(spec.after) > 20:
            waits["after_count"] = len(spec.after)
        if spec.after_any:
            waits["after_any"] = True
    if spec.concurrency_key is not None:
        waits["concurrency_key"] = spec.concurrency_key
        waits["max_concurrency"] = spec.max_concurrency
    return job_event(job, EventType.JOB_HELD, actor=actor, now=job.created_at, **waits)


# -- deciding ---------------------------------------------------------------------------


def blocker(tx: Transaction, job: Job, now: datetime) -> Blocker | None:
    """What still holds ``job`` (read in ``tx``), or None if its gates are open. A failed
    dependency is not a blocker: :func:`_decide` cancels the job for it."""
    if job.hold_until is not None and job.hold_until > now:
        return gate_blocker(job, now, {}, 0)
    deps = tx.gates.dependencies(job.id) if job.spec.after else {}
    if any(state not in TERMINAL_STATES for state in deps.values()):
        return gate_blocker(job, now, deps, 0)
    key = job.concurrency_key
    return gate_blocker(job, now, deps, tx.gates.active_with_key(key) if key else 0)


def gate_blocker(
    job: Job, now: datetime, dependencies: Mapping[UUID, JobState], active: int
) -> Blocker | None:
    """What holds ``job``, given the states of the jobs it runs after and how many jobs
    of its key hold a slot: its due time, then its dependencies, then its key."""
    if job.hold_until is not None and job.hold_until > now:
        return Blocker(
            "waiting_due",
            f"the job waits for its due time, {job.hold_until.isoformat(timespec='seconds')}",
            {"run_at": job.hold_until},
        )
    open_deps = [d for d, state in dependencies.items() if state not in TERMINAL_STATES]
    if open_deps:
        return Blocker(
            "waiting_dependencies",
            f"the job waits for {len(open_deps)} of the {len(dependencies)} job(s) it runs "
            f"after to end (first: {open_deps[0]})",
            {"waiting_for": [str(d) for d in open_deps[:20]], "count": len(open_deps)},
        )
    key = job.concurrency_key
    if key is not None:
        limit = job.max_concurrency or 1
        if active >= limit:
            return Blocker(
                "waiting_concurrency",
                f"concurrency key {key!r} has {active} of {limit} slot(s) taken",
                {"concurrency_key": key, "active": active, "max_concurrency": limit},
            )
    return None


def _failed_dependency(tx: Transaction, job: Job) -> tuple[UUID, JobState] | None:
    if not job.spec.after or job.spec.after_any:
        return None
    for dep, state in tx.gates.dependencies(job.id).items():
        if state in TERMINAL_STATES and state is not JobState.SUCCEEDED:
            return dep, state
    return None


def _decide(tx: Transaction, job: Job, now: datetime, actor: str) -> Transition | None:
    """The transition that moves a held job on, or None if it still waits as it is."""
    if job.concurrency_key is not None:
        tx.gates.lock_key(job.concurrency_key)
    waits = blocker(tx, job, now)
    if waits is not None:
        if waits.code != "waiting_due" and job.hold_until is not None:
            return transitions.pass_due(job, now=now)
        return None
    failed = _failed_dependency(tx, job)
    if failed is not None:
        dep, state = failed
        return transitions.cancel(
            job,
            actor=actor,
            now=now,
            reason=FailureReason.DEPENDENCY_FAILED,
            dependency=str(dep),
            dependency_state=str(state),
        )
    return transitions.release(job, now=now, actor=actor)


# -- releasing --------------------------------------------------------------------------


def release_jobs(
    store: Store,
    clock: Clock,
    publisher: TaskPublisher,
    candidates: Iterable[Job],
    *,
    actor: str = Actor.DISPATCHER,
) -> Releases:
    """Check each held candidate's gates; release (and publish after the commit) those
    whose gates are open, cancel those a failed dependency dooms, and go on with the
    dependents of the cancelled ones."""
    out = Releases()
    todo = [j for j in candidates if j.held and j.state is JobState.PENDING]
    seen: set[UUID] = set()
    while todo:
        todo = [j for j in {j.id: j for j in todo}.values() if j.id not in seen]
        seen.update(j.id for j in todo)
        if not todo:
            break
        # Keys in a fixed order: two releasers lock them in the same order, no deadlock.
        todo.sort(key=lambda j: (j.concurrency_key or "", -j.priority, j.created_at))
        released: list[Job] = []
        cancelled: list[Job] = []
        with store.transaction() as tx:
            now = clock.now()
            for job in todo:
                change = _decide(tx, job, now, actor)
                if change is None or not tx.apply(change):
                    continue
                moved = transitions.after(job, change)
                if change.kind is transitions.Kind.RELEASE:
                    released.append(moved)
                elif moved.state is JobState.CANCELLED:
                    cancelled.append(moved)
            todo = (
                tx.gates.dependents([j.id for j in cancelled], limit=DEPENDENTS_LIMIT)
                if cancelled
                else []
            )
        if released:
            publish_jobs(store, clock, publisher, released, {j.id: "released" for j in released})
        out.released.extend(released)
        out.cancelled.extend(cancelled)
    if out.released or out.cancelled:
        logger.info(
            "released %d held job(s), cancelled %d (dependency_failed)",
            len(out.released),
            len(out.cancelled),
        )
    return out


def after_end(
    store: Store, clock: Clock, publisher: TaskPublisher, ended: Sequence[Job]
) -> Releases:
    """Jobs have ended: release their dependents and the next waiters of their keys.

    Each job must be as the write that ended it left it (``transitions.after`` with its
    Applied): its ``has_dependents`` is then exact, so the end of a job that nobody runs
    after and that holds no key reads nothing. A release missed all the same (a worker
    killed before this) is the scheduler's sweep's (:func:`release_due`)."""
    ended = [j for j in ended if j.is_terminal and (j.has_dependents or j.concurrency_key)]
    if not ended:
        return Releases()
    with store.reading() as tx:
        candidates = tx.gates.dependents([j.id for j in ended], limit=DEPENDENTS_LIMIT)
        for key, limit in {
            (j.concurrency_key, j.max_concurrency or 1) for j in ended if j.concurrency_key
        }:
            candidates += tx.gates.waiting_on_key(key, limit=limit)
    if not candidates:
        return Releases()
    return release_jobs(store, clock, publisher, candidates)


def release_due(
    store: Store, clock: Clock, publisher: TaskPublisher, *, sweep: bool = True
) -> Releases:
    """The scheduler's pass: held jobs whose due time has come, and (``sweep``) held
    jobs whose gates opened without a release (a worker that died between a job's end
    and releasing its dependents, a cancel, a job that failed in the reaper)."""
    with store.reading() as tx:
        candidates = tx.gates.due(clock.now(), limit=SCAN_LIMIT)
        if sweep:
            candidates += tx.gates.unblocked(limit=SCAN_LIMIT)
    if not candidates:
        return Releases()
    return release_jobs(store, clock, publisher, candidates)


def release_now(
    store: Store, clock: Clock, publisher: TaskPublisher, job_id: UUID, *, actor: str
) -> Job:
    """An operator's override: publish a held job now, whatever it waits for (its due
    time, its dependencies, a slot of its key). JobReleased names the operator."""
    with store.transaction() as tx:
        job = tx.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if not job.held or job.state is not JobState.PENDING:
            raise Conflict(f"job {job_id} is {job.state} and not held: nothing to release")
        change = transitions.release(job, now=clock.now(), actor=actor)
        if not tx.apply(change):
            raise Conflict(f"job {job_id} changed state; release again")
    released = transitions.after(job, change)
    publish_jobs(store, clock, publisher, [released], {job_id: f"released by {actor}"})
    return released


def next_due(store: Store) -> datetime | None:
    """When the earliest held job is due (for the scheduler's sleep)."""
    with store.reading() as tx:
        return tx.gates.next_due()


def waiting_reason(store: Store, clock: Clock, job: Job) -> Blocker | None:
    """Why ``job`` is held now (None if it is not, or its gates are open)."""
    if not job.held or job.state is not JobState.PENDING:
        return None
    with store.reading() as tx:
        return blocker(tx, job, clock.now())
