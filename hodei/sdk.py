"""The Python API. The CLI is a thin layer over :class:`Client`."""

from __future__ import annotations

import builtins
import dataclasses
import getpass
import logging
import os
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

from hodei.bootstrap import Container
from hodei.domain.events import DomainEvent
from hodei.domain.principals import ApiToken, Role
from hodei.domain.records import Job, LogLine, Provider, Worker
from hodei.domain.schedules import DEFAULT_CATCHUP, Schedule
from hodei.domain.specs import JobSpec
from hodei.domain.states import JobState, ProviderStatus
from hodei.errors import (
    ClientClosed,
    HodeiError,
    InvalidConfiguration,
    InvalidInput,
    JobNotFound,
    WaitTimeout,
    WorkerNotFound,
)
from hodei.sdk_base import (
    LOG_PAGE_LINES,
    MAX_ID,
    ClientBase,
    check_instance,
    check_seconds,
    checked_int,
    checked_states,
    checked_text,
    checked_types,
    page_key,
    parse_job_id,
    provider_name,
    schedule_name,
    schedule_spec,
)
from hodei.services.jobs.job_ids import (
    resolve_aggregate_id,
    resolve_job_id,
    resolve_worker_id,
)
from hodei.services.ports.store import EventQuery, JobQuery
from hodei.settings import Settings, mask_url

if TYPE_CHECKING:
    # The operators' views and controls are imported where they are used: `job run`
    # and `Client.submit` + `wait` need none of them (import time, docs/performance.md).
    from hodei.sdk_http import HttpClient
    from hodei.services.fleet.bootstrap_tokens import IssuedToken
    from hodei.services.fleet.provider_registry import ProviderView
    from hodei.services.fleet.provider_removal import Removal
    from hodei.services.jobs.schedules import ScheduleView
    from hodei.services.operators.diagnosis import Diagnosis
    from hodei.services.operators.doctor import DoctorOptions, DoctorReport
    from hodei.services.operators.events_feed import FollowOptions
    from hodei.services.operators.status import SystemStatus
    from hodei.services.ports.providers import HealthReport

logger = logging.getLogger(__name__)


TEND_EVERY_S = 2.0
"""How often :meth:`Client.wait` and :meth:`Client.follow_logs` look after a job that is
still QUEUED (:meth:`Client._tend`)."""


class Client(ClientBase):
    """Submit, watch and control hodei jobs.

    >>> client = Client.from_env()
    >>> job = client.submit("echo hello", name="greet")
    >>> client.wait(job.id).state
    <JobState.SUCCEEDED: 'SUCCEEDED'>
    """

    def __init__(
        self, container: Container, *, interface: str = "sdk", actor: str | None = None
    ) -> None:
        self._container = container
        self._closed = False
        # ``actor`` is set by the API server to the authenticated caller (api:<token name>).
        self.actor = actor or f"{interface}:{_user()}"

    @classmethod
    def from_env(
        cls, *, interface: str = "sdk", home: str | os.PathLike[str] | None = None, **overrides: Any
    ) -> AnyClient:
        """A client configured from HODEI_* variables; keyword arguments (the
        :class:`~hodei.settings.Settings` fields) override them. With ``HODEI_API_URL``
        set, an :class:`~hodei.sdk_http.HttpClient`: the same calls, over the API."""
        if os.environ.get("HODEI_API_URL") and cls is Client and "database_url" not in overrides:
            # A remote caller: the API (and its token), never the database.
            from hodei.sdk_http import HttpClient

            return HttpClient.from_env()
        if home is not None:
            if not isinstance(home, str | os.PathLike):
                raise InvalidInput(f"home must be a path, got {type(home).__name__}")
            overrides["home"] = Path(home)
        return cls(Container(Settings.from_env(**overrides)), interface=interface)

    @property
    def _c(self) -> Container:
        if self._closed:
            raise ClientClosed()
        return self._container

    @property
    def settings(self) -> Settings:
        return self._container.settings

    def __repr__(self) -> str:
        s = self._container.settings
        state = " closed" if self._closed else ""
        return (
            f"<hodei.Client{state} database={mask_url(s.database_url)!r} "
            f"broker={mask_url(s.broker_url)!r} actor={self.actor!r}>"
        )

    # -- submitting ---------------------------------------------------------------

    def submit_many(self, specs: Iterable[JobSpec]) -> builtins.list[Job]:
        """Submit many jobs in one transaction, published over one broker connection.

        Nothing is stored if any spec is invalid or names an unknown provider."""
        if isinstance(specs, JobSpec | str | bytes) or not isinstance(specs, Iterable):
            raise InvalidInput(f"submit_many takes a list of JobSpec, got {type(specs).__name__}")
        return self._c.hodei.submit(list(specs), actor=self.actor)

    def _tend(self, job: Job) -> None:
        """What a waiter does for its QUEUED job, so the embedded default needs no
        scheduler for it: declare its provider's silent workers LOST (as beat's reaper
        would: dead ones must not hold its slots), then provision it again, which first
        fails the launches known dead (a worker killed or crashed before it registered)
        and then launches one if none is left to take the job."""
        if job.state is JobState.QUEUED and job.provider_id is not None:
            try:
                self._c.hodei.reap_stale_workers({job.provider_id})
            except HodeiError as exc:  # the wait goes on; the scheduler's reaper may
                logger.debug("could not reap the stale workers of its provider: %s", exc)
            self._c.hodei.provision_providers({job.provider_id})

    def _settle_launches(self, provider_ids: set[UUID | None] | None = None) -> None:
        """Launches known dead are PROVISION_FAILED before status or diagnose count them."""
        from hodei.services.fleet.launches import settle_launches

        try:
            settle_launches(self._c.store, self._c.clock, self._c.launcher_for, provider_ids)
        except HodeiError as exc:
            logger.debug("could not check the launches in flight: %s", exc)

    # -- reading ------------------------------------------------------------------

    def _job_id(self, value: str | UUID) -> UUID:
        """A job's id from its whole id or a unique prefix of it."""
        return resolve_job_id(self._c.store, value)

    def get(self, job_id: str | UUID) -> Job:
        """The job as stored now; ``job_id`` may be the start of its id (8 hex digits or
        more) if no other job's id starts so."""
        job_uuid = self._job_id(job_id)
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
        after_key: tuple[datetime, UUID] | None = None,
    ) -> builtins.list[Job]:
        """Jobs, newest first; pass the last job of a page as ``before`` for the next
        (or its ``(created_at, id)`` as ``after_key``, as the API's cursor does)."""
        query = JobQuery(
            states=checked_states(state),
            name=checked_text(name, "name"),
            correlation_id=checked_text(correlation_id, "correlation_id"),
            limit=checked_int(limit, "limit", 1, 1000),
            before=page_key(before, after_key),
        )
        with self._c.store.reading() as tx:
            return tx.jobs.search(query)

    def wait(
        self, job_id: str | UUID, *, timeout: float | None = None, poll_s: float | None = None
    ) -> Job:
        """Block until the job is terminal; :class:`WaitTimeout` after ``timeout`` s.

        On PostgreSQL the job's end wakes the wait (LISTEN/NOTIFY); ``poll_s`` (default
        1 s) only bounds the gap between reads should a notification be lost. On SQLite
        it reads the job 20 ms after the last read, backing off to ``poll_s`` (default
        0.05 s)."""
        check_seconds(timeout, "timeout", allow_none=True)
        check_seconds(poll_s, "poll_s", allow_none=True)
        job_uuid = self._job_id(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        tend_at = time.monotonic() + TEND_EVERY_S
        with self._c.job_watches.watch(job_uuid, max_poll_s=poll_s) as watch:
            while True:
                job = self.get(job_uuid)
                if job.is_terminal:
                    return job
                if time.monotonic() >= tend_at:
                    self._tend(job)
                    tend_at = time.monotonic() + TEND_EVERY_S
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise WaitTimeout(f"job {job.id} is still {job.state} after {timeout:g}s")
                watch.wait(left)

    def iter_logs(
        self,
        job_id: str | UUID,
        *,
        after_id: int = 0,
        tail: int | None = None,
        limit: int | None = None,
    ) -> Iterator[LogLine]:
        """:meth:`logs`, read lazily in pages of ``LOG_PAGE_LINES`` lines by id, so memory
        stays constant however long the output is. The job is looked up at once."""
        after_id = checked_int(after_id, "after_id")
        limit = None if limit is None else checked_int(limit, "limit", 1, MAX_ID)
        tail = None if tail is None else checked_int(tail, "tail")
        job_uuid = self.get(job_id).id
        if tail is not None:
            with self._c.store.reading() as tx:
                after_id = max(after_id, tx.logs.tail_start(job_uuid, tail))
        return self._log_pages(job_uuid, after_id, limit)

    def _log_pages(self, job_uuid: UUID, after_id: int, limit: int | None) -> Iterator[LogLine]:
        remaining = limit
        while remaining is None or remaining > 0:
            page_size = LOG_PAGE_LINES if remaining is None else min(remaining, LOG_PAGE_LINES)
            with self._c.store.reading() as tx:
                page = tx.logs.read(job_uuid, after_id=after_id, limit=page_size)
            yield from page
            if len(page) < page_size:
                return
            after_id = page[-1].id or after_id
            if remaining is not None:
                remaining -= len(page)

    def follow_logs(
        self, job_id: str | UUID, *, tail: int | None = None, poll_s: float | None = None
    ) -> Iterator[LogLine]:
        """Every line from the start (or the last ``tail``), then live lines, until the
        job is terminal and its output is drained. New lines and the job's end are
        pushed on PostgreSQL and polled for on SQLite, as in :meth:`wait`."""
        check_seconds(poll_s, "poll_s", allow_none=True)
        tail = None if tail is None else checked_int(tail, "tail")
        job_uuid = self.get(job_id).id
        with self._c.job_watches.watch(job_uuid, logs=True, max_poll_s=poll_s) as watch:
            last_id = 0
            if tail is not None:
                with self._c.store.reading() as tx:
                    last_id = tx.logs.tail_start(job_uuid, tail)
            tend_at = time.monotonic() + TEND_EVERY_S
            while True:
                job = self.get(job_uuid)
                terminal = job.is_terminal
                if not terminal and time.monotonic() >= tend_at:
                    self._tend(job)
                    tend_at = time.monotonic() + TEND_EVERY_S
                got = False
                for line in self._log_pages(job_uuid, last_id, None):
                    last_id = line.id or last_id
                    got = True
                    yield line
                if terminal and not got:
                    return
                if got:
                    watch.changed()
                else:
                    watch.wait()

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
        from hodei.services.operators.events_feed import job_timeline, workflow_timeline

        if job_id is None and correlation_id is None:
            raise InvalidInput("give a job id or a correlation id")
        checked_text(correlation_id, "correlation_id")
        limit = checked_int(limit, "limit", 1, MAX_ID)
        if job_id is not None and not related:
            query = EventQuery(aggregate_ids=[self.get(job_id).id], limit=limit)
            with self._c.store.reading() as tx:
                return tx.events.search(query)
        if job_id is not None:
            return job_timeline(self._c.reads, self._job_id(job_id), limit=limit)
        assert correlation_id is not None
        return workflow_timeline(self._c.reads, correlation_id, limit=limit)

    # -- the operators' view ------------------------------------------------------

    def _events(
        self, query: EventQuery, aggregate_prefix: str | None = None
    ) -> builtins.list[DomainEvent]:
        from hodei.services.operators.events_feed import list_events

        return list_events(self._c.reads, query)

    def _aggregate_ref(self, value: str | UUID) -> UUID:
        return resolve_aggregate_id(self._c.store, value)

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
        from hodei.services.operators.events_feed import FollowOptions, follow_events

        check_instance(options, FollowOptions, "options")
        wanted = set(checked_types(types))
        checked_text(correlation_id, "correlation_id")
        from_id = None if from_id is None else checked_int(from_id, "from_id")
        aggregate = self._aggregate_ref(aggregate_id) if aggregate_id is not None else None

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
        from hodei.services.operators.status import system_status

        self._settle_launches()
        return system_status(self._c.reads, self._c.clock)

    def diagnose(self, job_id: str | UUID) -> Diagnosis:
        """Why a job is where it is, and what to do about it."""
        from hodei.services.operators.diagnosis import diagnose_job

        job = self.get(job_id)
        self._settle_launches({job.provider_id})
        return diagnose_job(
            self._c.reads,
            self._c.clock,
            job.id,
            stale_after_s=self.settings.worker_stale_after_s,
            republish_after_s=self.settings.republish_after_s,
            token_ttl_s=self.settings.token_ttl_s,
        )

    def doctor(
        self, *, since: timedelta | None = None, options: DoctorOptions | None = None
    ) -> DoctorReport:
        """Check the whole system for inconsistencies; ``since`` bounds the history checked
        (default 24 h). A healthy system has no findings."""
        from hodei.services.operators.doctor import DoctorOptions, run_doctor

        check_instance(since, timedelta, "since")
        check_instance(options, DoctorOptions, "options")
        options = options or DoctorOptions(
            stale_after=timedelta(seconds=self.settings.worker_stale_after_s)
        )
        if since is not None:
            options = dataclasses.replace(options, since=since)
        return run_doctor(self._c.reads, self._c.clock, options)

    # -- controlling --------------------------------------------------------------

    def cancel(self, job_id: str | UUID) -> Job:
        """Cancel a job (a running one stops within about a second)."""
        return self._c.hodei.cancel(self._job_id(job_id), actor=self.actor)

    def release(self, job_id: str | UUID) -> Job:
        """Run a held job now, whatever it waits for (its due time, the jobs it runs
        after, a slot of its concurrency key): an operator's override."""
        return self._c.hodei.release(self._job_id(job_id), actor=self.actor)

    def retry(self, job_id: str | UUID) -> Job:
        """Run a failed, timed-out or cancelled job again as a new attempt."""
        return self._c.hodei.retry(self._job_id(job_id), actor=self.actor)

    # -- providers ----------------------------------------------------------------

    def add_provider(self, name: str, provider_type: str, **fields: Any) -> Provider:
        """Register a provider; ``fields`` as
        :class:`~hodei.services.fleet.provider_registry.ProviderSpec` (config, priority,
        max_workers, min_workers, labels, preferred_region, allowed_regions,
        health_check). Config is validated for its type, and the type's library must be
        installed (:class:`~hodei.errors.MissingExtra` names the pip
        command otherwise)."""
        from hodei.providers.config import validate_new_config
        from hodei.services.fleet.provider_registry import ProviderSpec, add_provider

        known = {f.name for f in dataclasses.fields(ProviderSpec)} - {"name", "provider_type"}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise InvalidConfiguration(f"invalid provider: unknown field(s) {', '.join(unknown)}")
        if not isinstance(provider_type, str):
            raise InvalidConfiguration("invalid provider: its type must be a string")
        spec = ProviderSpec(name, provider_type, **fields)
        provider = add_provider(
            self._c.store, self._c.clock, spec, validate=validate_new_config, actor=self.actor
        )
        self._c.hodei.providers_changed()
        return provider

    def update_provider(self, name: str, **changes: Any) -> Provider:
        """Change a provider's config, priority, limits, labels, regions or health_check."""
        from hodei.providers.config import validate_config
        from hodei.services.fleet.provider_registry import update_provider

        provider = update_provider(
            self._c.store,
            self._c.clock,
            provider_name(name),
            changes,
            validate=validate_config,
            actor=self.actor,
        )
        self._c.hodei.providers_changed()
        return provider

    def remove_provider(self, name: str, *, force: bool = False) -> Removal:
        """Delete a provider (ProviderRemoved). Refused (:class:`~hodei.errors.Conflict`)
        while it has live workers or unfinished jobs, unless ``force``: then its workers
        are ended (and their processes or containers removed) and its jobs FAILED."""
        from hodei.services.fleet.provider_removal import remove_provider

        removal = remove_provider(self._c.store, self._c.clock, name, force=force, actor=self.actor)
        for worker in removal.ended_workers:
            try:
                self._c.launcher_for(removal.provider).destroy(worker)
            except Exception as exc:  # the row is gone either way; say what was left
                logger.warning(
                    "could not remove worker %s of provider %s: %s",
                    worker.id,
                    name,
                    exc,
                    extra={"worker_id": str(worker.id)},
                )
        self._c.hodei.providers_changed()
        return removal

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
        from hodei.services.fleet.provider_registry import get_provider

        return get_provider(self._c.store, provider_name(name))

    def providers(self) -> builtins.list[ProviderView]:
        from hodei.services.fleet.provider_registry import list_providers

        return list_providers(self._c.store)

    def check_provider_health(self, name: str | None = None) -> dict[str, HealthReport]:
        """Check now (all providers, or one), store the result and return it."""
        from hodei.providers.factory import probe_for
        from hodei.services.fleet.provider_health import check_providers

        c = self._c
        if name is not None:
            self.provider(name)  # ProviderNotFound for a wrong name
            name = provider_name(name)
        results = check_providers(
            c.store,
            c.clock,
            lambda p: probe_for(p, c.settings, c.store, c.clock),
            only=name,
            force=True,
        )
        self._c.hodei.providers_changed()  # a provider healthy again takes its waiting jobs now
        return results

    def _set_provider_status(self, name: str, status: ProviderStatus) -> Provider:
        return self._c.hodei.set_provider_status(provider_name(name), status, actor=self.actor)

    # -- workers, their bootstrap tokens, API tokens ----------------------------------

    def workers(self, *, all_states: bool = False, limit: int = 100) -> builtins.list[Worker]:
        """Live workers (``all_states``: terminated and lost ones too), newest first."""
        from hodei.domain.states import LIVE_WORKER_STATES

        limit = checked_int(limit, "limit", 1, 1000)
        with self._c.store.reading() as tx:
            return tx.workers.search(states=() if all_states else LIVE_WORKER_STATES, limit=limit)

    def worker(self, worker_id: str | UUID) -> Worker:
        """One worker, by its id or a unique start of it (the 8 hex digits lists print)."""
        worker_uuid = resolve_worker_id(self._c.store, worker_id)
        with self._c.store.reading() as tx:
            found = tx.workers.get(worker_uuid)
        if found is None:
            raise WorkerNotFound(f"no worker {worker_uuid}")
        return found

    def drain_worker(self, worker_id: str | UUID) -> Worker:
        """Let a worker finish its current job, then exit."""
        from hodei.services.fleet.workers import drain_worker

        c = self._c
        worker_uuid = resolve_worker_id(c.store, worker_id)
        return drain_worker(c.store, c.clock, worker_uuid, actor=self.actor)

    def create_worker_token(self, provider: str = "local", *, ttl_s: float = 300) -> IssuedToken:
        """A single-use bootstrap token (and its worker row) for a worker started by hand."""
        from hodei.services.fleet.workers import create_worker_token

        check_seconds(ttl_s, "ttl_s")
        c = self._c
        return create_worker_token(
            c.store, c.clock, provider_name=provider_name(provider), ttl_s=ttl_s, actor=self.actor
        )

    def create_api_token(
        self, name: str, role: str | Role, *, expires_in: timedelta | None = None
    ) -> tuple[ApiToken, str]:
        """An API token for ``hodei server``, and its secret: shown this once only."""
        from hodei.services.operators.api_tokens import create_api_token, parse_role

        c = self._c
        role = role if isinstance(role, Role) else parse_role(str(role))
        return create_api_token(
            c.store, c.clock, name=name, role=role, expires_in=expires_in, actor=self.actor
        )

    def api_tokens(self, *, include_revoked: bool = False) -> builtins.list[ApiToken]:
        from hodei.services.operators.api_tokens import list_api_tokens

        return list_api_tokens(self._c.store, include_revoked=include_revoked)

    def revoke_api_token(self, name: str) -> ApiToken:
        from hodei.services.operators.api_tokens import revoke_api_token

        return revoke_api_token(self._c.store, self._c.clock, name, actor=self.actor)

    # -- cron schedules -----------------------------------------------------------

    def add_schedule(
        self,
        name: str,
        cron: str,
        spec: JobSpec | str | Sequence[str],
        *,
        timezone: str = "UTC",
        catchup: str = DEFAULT_CATCHUP,
        paused: bool = False,
        **fields: Any,
    ) -> Schedule:
        """A schedule that submits ``spec`` (a JobSpec, or a command plus the fields of
        :meth:`JobSpec.create`) on every tick of ``cron`` in ``timezone``.

        Each fire is a job named like the schedule (unless ``name`` is in the fields),
        with the schedule's name as correlation id. ``catchup`` says what to do with
        ticks missed while no scheduler ran: ``once`` (default) fires the latest of
        them, ``skip`` none. Bad input raises InvalidInput; a taken name, Conflict."""
        from hodei.services.jobs.schedules import create_schedule

        c = self._c
        return create_schedule(
            c.store,
            c.clock,
            name=name,
            cron_expression=cron,
            spec=schedule_spec(name, spec, fields),
            timezone=timezone,
            catchup=catchup,
            paused=paused,
            actor=self.actor,
        )

    def schedules(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        from hodei.services.jobs.schedules import list_schedules

        return list_schedules(self._c.store)

    def schedule(self, name: str) -> ScheduleView:
        """One schedule and its latest fires (ScheduleNotFound if there is none)."""
        from hodei.services.jobs.schedules import get_schedule

        return get_schedule(self._c.store, schedule_name(name))

    def pause_schedule(self, name: str) -> Schedule:
        from hodei.services.jobs.schedules import pause_schedule

        return pause_schedule(self._c.store, self._c.clock, schedule_name(name), actor=self.actor)

    def resume_schedule(self, name: str) -> Schedule:
        """Fire again from the next tick; ticks while paused are not caught up."""
        from hodei.services.jobs.schedules import resume_schedule

        return resume_schedule(self._c.store, self._c.clock, schedule_name(name), actor=self.actor)

    def remove_schedule(self, name: str) -> Schedule:
        """Delete the schedule; the jobs it submitted stay."""
        from hodei.services.jobs.schedules import remove_schedule

        return remove_schedule(self._c.store, self._c.clock, schedule_name(name), actor=self.actor)

    def trigger_schedule(self, name: str) -> Job:
        """Fire the schedule now (also when paused); its cron ticks are unchanged."""
        return self._c.hodei.trigger_schedule(schedule_name(name), actor=self.actor)

    def close(self) -> None:
        """Release the database connections; later calls raise ClientClosed."""
        if not self._closed:
            self._closed = True
            self._container.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


__all__ = ["LOG_PAGE_LINES", "Client", "parse_job_id"]


if TYPE_CHECKING:
    AnyClient: TypeAlias = Client | HttpClient
    """Either backend: what :meth:`Client.from_env` returns."""
