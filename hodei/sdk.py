"""The Python API. The CLI is a thin layer over :class:`Client`."""

from __future__ import annotations

import builtins
import dataclasses
import getpass
import logging
import time
import uuid
from collections.abc import Generator, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hodei.bootstrap import Container
from hodei.domain.events import DomainEvent
from hodei.domain.records import Job, LogLine, Provider
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState, ProviderStatus
from hodei.errors import HodeiError, InvalidInput, JobNotFound, WaitTimeout
from hodei.services.control import cancel_job, retry_job
from hodei.services.diagnosis import Diagnosis, diagnose_job
from hodei.services.doctor import DoctorOptions, DoctorReport, run_doctor
from hodei.services.events_feed import (
    FollowOptions,
    follow_events,
    job_timeline,
    list_events,
    workflow_timeline,
)
from hodei.services.health import HealthReport
from hodei.services.ports import EventQuery, JobQuery
from hodei.services.providers import ProviderView
from hodei.services.provisioning import provision
from hodei.services.status import SystemStatus, system_status
from hodei.services.submission import submit_jobs
from hodei.settings import Settings

logger = logging.getLogger(__name__)


def parse_job_id(value: str | UUID) -> UUID:
    """A job id from user input, or a one-line :class:`InvalidInput`."""
    if isinstance(value, UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise InvalidInput(f"not a job id: {value!r}") from None


class Client:
    """Submit, watch and control hodei jobs.

    >>> client = Client.from_env()
    >>> job = client.submit("echo hello", name="greet")
    >>> client.wait(job.id).state
    <JobState.SUCCEEDED: 'SUCCEEDED'>
    """

    def __init__(self, container: Container, *, interface: str = "sdk") -> None:
        self._c = container
        self.actor = f"{interface}:{_user()}"

    @classmethod
    def from_env(cls, *, interface: str = "sdk", **overrides: Any) -> Client:
        """A client configured from HODEI_* variables; keyword arguments override them."""
        return cls(Container(Settings.from_env(**overrides)), interface=interface)

    @property
    def settings(self) -> Settings:
        return self._c.settings

    @property
    def container(self) -> Container:
        return self._c

    # -- submitting ---------------------------------------------------------------

    def submit(self, spec: JobSpec | str | Sequence[str], **spec_fields: Any) -> Job:
        """Submit one job: a :class:`JobSpec`, or a command plus JobSpec.create fields.

        Returns the stored job (the existing one if its idempotency key was seen before).
        """
        if not isinstance(spec, JobSpec):
            spec = JobSpec.create(spec, **spec_fields)
        return self.submit_many([spec])[0]

    def submit_many(self, specs: Iterable[JobSpec]) -> builtins.list[Job]:
        """Submit many jobs in one transaction, published over one broker connection."""
        specs = list(specs)
        results = submit_jobs(
            self._c.store, self._c.clock, self._c.publisher, specs, actor=self.actor
        )
        self._provision_names({r.may_scale for r in results if r.may_scale})
        return [r.job for r in results]

    def _provision(self, provider_ids: set[UUID | None]) -> None:
        with self._c.store.reading() as tx:
            names = {p.name for p in tx.providers.search() if p.id in provider_ids}
        self._provision_names(names)

    def _provision_names(self, names: set[str]) -> None:
        for name in sorted(names):
            try:
                provision(
                    self._c.store,
                    self._c.clock,
                    self._c.launcher_for,
                    name,
                    token_ttl_s=self.settings.token_ttl_s,
                    environment={},
                )
            except HodeiError as exc:
                logger.warning("could not provision workers for %s: %s", name, exc)

    # -- reading ------------------------------------------------------------------

    def get(self, job_id: str | UUID) -> Job:
        """The job as stored now."""
        job_uuid = parse_job_id(job_id)
        with self._c.store.reading() as tx:
            job = tx.jobs.get(job_uuid)
        if job is None:
            raise JobNotFound(f"no job {job_uuid}")
        return job

    def list(
        self,
        *,
        state: str | JobState | Sequence[str | JobState] | None = None,
        name: str | None = None,
        correlation_id: str | None = None,
        limit: int = 50,
        before: Job | None = None,
    ) -> builtins.list[Job]:
        """Jobs, newest first; pass the last job of a page as ``before`` for the next."""
        query = JobQuery(
            states=_states(state),
            name=name,
            correlation_id=correlation_id,
            limit=max(1, min(limit, 1000)),
            before=(before.created_at, before.id) if before else None,
        )
        with self._c.store.reading() as tx:
            return tx.jobs.search(query)

    def wait(self, job_id: str | UUID, *, timeout: float | None = None, poll_s: float = 0.2) -> Job:
        """Block until the job is terminal; :class:`WaitTimeout` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.is_terminal:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job.id} is still {job.state} after {timeout:g}s")
            time.sleep(poll_s)

    def logs(
        self, job_id: str | UUID, *, after_id: int = 0, tail: int | None = None, limit: int = 1000
    ) -> builtins.list[LogLine]:
        """Stored output lines in order (``tail``: only the last N)."""
        job_uuid = self.get(job_id).id
        with self._c.store.reading() as tx:
            return tx.logs.read(job_uuid, after_id=after_id, limit=limit, tail=tail)

    def follow_logs(
        self, job_id: str | UUID, *, tail: int | None = None, poll_s: float = 0.2
    ) -> Iterator[LogLine]:
        """Every line from the start (or the last ``tail``), then live lines, until the
        job is terminal and its output is drained."""
        last_id = 0
        first = self.logs(job_id, tail=tail) if tail is not None else []
        if tail is not None and not first:
            # --tail 0: start at the end, not from the first line.
            last_id = next((ln.id or 0 for ln in self.logs(job_id, tail=1)), 0)
        for line in first:
            last_id = line.id or last_id
            yield line
        while True:
            terminal = self.get(job_id).is_terminal
            batch = self.logs(job_id, after_id=last_id)
            for line in batch:
                last_id = line.id or last_id
                yield line
            if terminal and not batch:
                return
            if not batch:
                time.sleep(poll_s)

    def timeline(
        self,
        job_id: str | UUID | None = None,
        *,
        correlation_id: str | None = None,
        limit: int = 5000,
        related: bool = True,
    ) -> builtins.list[DomainEvent]:
        """A job's events in order, or a whole workflow's by correlation id.

        With ``related`` (the default) the events of the workers that ran the job's
        attempts (their infrastructure events included) and of those workers'
        bootstrap tokens are interleaved; ``related=False`` gives the job's own only.
        """
        if job_id is None and correlation_id is None:
            raise InvalidInput("give a job id or a correlation id")
        if job_id is not None and not related:
            query = EventQuery(aggregate_ids=[self.get(job_id).id], limit=limit)
            with self._c.store.reading() as tx:
                return tx.events.search(query)
        if job_id is not None:
            return job_timeline(self._c.reads, parse_job_id(job_id), limit=limit)
        assert correlation_id is not None
        return workflow_timeline(self._c.reads, correlation_id, limit=limit)

    # -- the operators' view ------------------------------------------------------

    def events(
        self,
        *,
        types: Sequence[str] = (),
        aggregate_id: str | UUID | None = None,
        correlation_id: str | None = None,
        since: datetime | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> builtins.list[DomainEvent]:
        """Events in id order: from ``since`` or ``after_id`` on, else the latest ``limit``."""
        if since is not None and since.tzinfo is None:
            raise InvalidInput("since must be timezone-aware")
        query = EventQuery(
            event_types=list(types),
            aggregate_ids=[_parse_uuid(aggregate_id, "aggregate id")] if aggregate_id else (),
            correlation_id=correlation_id,
            since=since,
            after_id=after_id,
            limit=max(1, min(limit, 10_000)),
        )
        return list_events(self._c.reads, query)

    def follow_events(
        self,
        *,
        types: Sequence[str] = (),
        from_id: int | None = None,
        correlation_id: str | None = None,
        aggregate_id: str | UUID | None = None,
        options: FollowOptions | None = None,
    ) -> Generator[DomainEvent, None, None]:
        """Every event from id ``from_id`` (default: only new ones) as it is committed,
        in increasing id order, forever; close the iterator to stop. Each event comes
        exactly once, across database reconnects; resume with ``from_id=last.id + 1``."""
        wanted = {str(t) for t in types}
        aggregate = _parse_uuid(aggregate_id, "aggregate id") if aggregate_id else None

        def matches(event: DomainEvent) -> bool:
            return (
                (not wanted or event.event_type in wanted)
                and (correlation_id is None or event.correlation_id == correlation_id)
                and (aggregate is None or event.aggregate_id == aggregate)
            )

        return follow_events(
            self._c.event_feed(),
            after_id=None if from_id is None else max(from_id, 1) - 1,
            matches=matches,
            options=options or FollowOptions(),
        )

    def status(self) -> SystemStatus:
        """Jobs and workers by state, queues, providers and capacity, tokens outstanding."""
        return system_status(self._c.reads, self._c.clock)

    def diagnose(self, job_id: str | UUID) -> Diagnosis:
        """Why a job is where it is, and what to do about it."""
        return diagnose_job(
            self._c.reads,
            self._c.clock,
            parse_job_id(job_id),
            stale_after_s=self.settings.worker_stale_after_s,
        )

    def doctor(
        self, *, since: timedelta | None = None, options: DoctorOptions | None = None
    ) -> DoctorReport:
        """Check the whole system for inconsistencies; ``since`` bounds the history checked
        (default 24 h). A healthy system has no findings."""
        options = options or DoctorOptions(
            stale_after=timedelta(seconds=self.settings.worker_stale_after_s)
        )
        if since is not None:
            options = dataclasses.replace(options, since=since)
        return run_doctor(self._c.reads, self._c.clock, options)

    # -- controlling --------------------------------------------------------------

    def cancel(self, job_id: str | UUID) -> Job:
        """Cancel a job (a running one stops within about a second)."""
        return cancel_job(self._c.store, self._c.clock, parse_job_id(job_id), actor=self.actor)

    def retry(self, job_id: str | UUID) -> Job:
        """Run a failed, timed-out or cancelled job again as a new attempt."""
        job = retry_job(
            self._c.store, self._c.clock, self._c.publisher, parse_job_id(job_id), actor=self.actor
        )
        self._provision({job.provider_id})
        return job

    # -- providers ----------------------------------------------------------------

    def add_provider(self, name: str, provider_type: str, **fields: Any) -> Provider:
        """Register a provider; ``fields`` as :class:`~hodei.services.providers.ProviderSpec`
        (config, priority, max_workers, min_workers, labels, preferred_region,
        allowed_regions, health_check). Config is validated for its type."""
        from hodei.providers.config import validate_config
        from hodei.services.providers import ProviderSpec, add_provider

        spec = ProviderSpec(name, provider_type, **fields)
        provider = add_provider(
            self._c.store, self._c.clock, spec, validate=validate_config, actor=self.actor
        )
        self._providers_changed()
        return provider

    def update_provider(self, name: str, **changes: Any) -> Provider:
        """Change a provider's config, priority, limits, labels, regions or health_check."""
        from hodei.providers.config import validate_config
        from hodei.services.providers import update_provider

        provider = update_provider(
            self._c.store,
            self._c.clock,
            name,
            changes,
            validate=validate_config,
            actor=self.actor,
        )
        self._providers_changed()
        return provider

    def enable_provider(self, name: str) -> Provider:
        return self._set_provider_status(name, ProviderStatus.ACTIVE)

    def disable_provider(self, name: str) -> Provider:
        """No new jobs and no new workers; running work is left alone."""
        return self._set_provider_status(name, ProviderStatus.DISABLED)

    def drain_provider(self, name: str) -> Provider:
        """No new jobs or workers; its workers finish what is queued, then idle out."""
        return self._set_provider_status(name, ProviderStatus.DRAINING)

    def provider(self, name: str) -> ProviderView:
        """A provider with its live worker count."""
        from hodei.services.providers import get_provider

        return get_provider(self._c.store, name)

    def providers(self) -> builtins.list[ProviderView]:
        from hodei.services.providers import list_providers

        return list_providers(self._c.store)

    def check_provider_health(self, name: str | None = None) -> dict[str, HealthReport]:
        """Check now (all providers, or one), store the result and return it."""
        from hodei.providers.factory import probe_for
        from hodei.services.health import check_providers

        c = self._c
        if name is not None:
            self.provider(name)  # ProviderNotFound for a wrong name
        return check_providers(
            c.store,
            c.clock,
            lambda p: probe_for(p, c.settings, c.store, c.clock),
            only=name,
            force=True,
        )

    def _set_provider_status(self, name: str, status: ProviderStatus) -> Provider:
        from hodei.services.providers import set_provider_status

        provider = set_provider_status(self._c.store, self._c.clock, name, status, actor=self.actor)
        self._providers_changed()
        return provider

    def _providers_changed(self) -> None:
        """Jobs left PENDING for want of a provider may have one now."""
        from hodei.services.reconcile import reschedule_unschedulable

        report = reschedule_unschedulable(
            self._c.store,
            self._c.clock,
            self._c.publisher,
            queue_timeout_s=self.settings.queue_timeout_s,
        )
        if report.scheduled:
            with self._c.store.reading() as tx:
                ids = {j.provider_id for i in report.scheduled if (j := tx.jobs.get(i))}
            self._provision(ids)

    def close(self) -> None:
        self._c.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _states(state: str | JobState | Sequence[str | JobState] | None) -> builtins.list[JobState]:
    if state is None:
        return []
    values = [state] if isinstance(state, str | JobState) else list(state)
    try:
        return [JobState(str(v).upper()) for v in values]
    except ValueError:
        allowed = ", ".join(s.value for s in JobState)
        raise InvalidInput(f"unknown state in {values!r}; use one of {allowed}") from None


def _parse_uuid(value: str | UUID, what: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise InvalidInput(f"not an {what}: {value!r}") from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


__all__ = ["Client", "parse_job_id"]
