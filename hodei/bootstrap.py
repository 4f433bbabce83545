"""Wiring: the one place that builds hodei's dependencies, lazily, from Settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from hodei.domain.records import Provider
from hodei.services.jobs.dispatch import Confirmation, confirm_queued
from hodei.services.ports.providers import HealthProbe, InfrastructureInspector, WorkerLauncher
from hodei.settings import Settings

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.engine import Engine

    from hodei.core import Hodei
    from hodei.queueing.publisher import CeleryPublisher
    from hodei.store.job_watch import JobWatches
    from hodei.store.listen import SqlEventFeed
    from hodei.store.read_models import SqlReadStore
    from hodei.store.secrets import SecretBox
    from hodei.store.sql_store import SqlStore

logger = logging.getLogger(__name__)


class SystemClock:
    """The real clock (the Clock port), timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class Container:
    """The wiring (:class:`hodei.core.Wiring`) for one Settings: engine, store, Celery
    app, publisher and launchers. In hodei's code a ``Container`` is always this one; the
    Docker adapter calls a Docker container a ``DockerContainer``.

    Nothing connects until a property is first used.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = SystemClock()
        self._schema_lock = threading.Lock()
        self._schema_checked = False

    @cached_property
    def engine(self) -> Engine:
        from hodei.store.engine import create_engine

        # A transaction idle for half the stale threshold belongs to a frozen process:
        # let PostgreSQL end it, so its locks cannot keep the reaper from that worker.
        idle_tx_timeout_s = min(max(self.settings.worker_stale_after_s / 2, 2.0), 60.0)
        self._prepare_home()
        return create_engine(self.settings.database_url, idle_tx_timeout_s=idle_tx_timeout_s)

    @cached_property
    def store(self) -> SqlStore:
        from hodei.store.sql_store import SqlStore

        self.ensure_schema()
        return SqlStore(self.engine, self.secrets.seal)

    @cached_property
    def secrets(self) -> SecretBox:
        """Encrypts and decrypts secret_env; its key is read on first use."""
        from hodei.store.secrets import SecretBox

        return SecretBox(self.settings)

    @cached_property
    def reads(self) -> SqlReadStore:
        """Read models for operators' views (status, timeline, diagnose, doctor)."""
        from hodei.store.read_models import SqlReadStore

        self.ensure_schema()
        return SqlReadStore(self.engine)

    def event_feed(self) -> SqlEventFeed:
        """A new feed for one follower (on PostgreSQL it holds a LISTEN connection)."""
        from hodei.store.listen import SqlEventFeed

        self.ensure_schema()
        return SqlEventFeed(self.engine)

    @cached_property
    def job_watches(self) -> JobWatches:
        """Wake-ups for callers waiting on a job (on PostgreSQL: LISTEN/NOTIFY)."""
        from hodei.store.job_watch import JobWatches

        return JobWatches(self.engine)

    def ensure_schema(self) -> None:
        """Check (or, on the embedded default, apply) migrations once per process."""
        from hodei.store.schema_version import is_current

        with self._schema_lock:
            if not self._schema_checked:
                if not is_current(self.engine):  # alembic only when it has work to do
                    from hodei.store.migrate import ensure_schema

                    ensure_schema(self.engine, auto_upgrade=self.settings.is_embedded)
                self._schema_checked = True

    @cached_property
    def app(self) -> Celery:
        from hodei.queueing.app import create_app

        self._prepare_home()
        return create_app(self.settings, self)

    def _prepare_home(self) -> None:
        # The default database and broker are files in HODEI_HOME: create it for them,
        # and only for them (a SQLite URL elsewhere must name an existing directory).
        if self.settings.uses_home:
            self.settings.make_home()

    @cached_property
    def publisher(self) -> CeleryPublisher:
        from hodei.queueing.publisher import CeleryPublisher

        return CeleryPublisher(self.app, self._confirm)

    def _confirm(self, confirmations: Sequence[Confirmation]) -> None:
        confirm_queued(self.store, self.clock, confirmations)

    @cached_property
    def hodei(self) -> Hodei:
        """The use cases, composed over this container's ports (read on first use)."""
        from hodei.core import Hodei

        return Hodei(self)

    def launcher_for(self, provider: Provider) -> WorkerLauncher:
        """The launcher for a provider's type."""
        from hodei.providers.factory import adapter_for

        launcher: WorkerLauncher = adapter_for(provider, self.settings, self.store, self.clock)
        return launcher

    def probe_for(self, provider: Provider) -> HealthProbe:
        """The health check of a provider's type."""
        from hodei.providers.factory import probe_for

        probe: HealthProbe = probe_for(provider, self.settings, self.store, self.clock)
        return probe

    def inspector_for(self, provider: Provider) -> InfrastructureInspector:
        """A Docker or Kubernetes provider's adapter, which lists and removes what it runs."""
        from hodei.providers.factory import adapter_for

        inspector: InfrastructureInspector = adapter_for(
            provider, self.settings, self.store, self.clock
        )
        return inspector

    def database_back_for(self) -> float | None:
        """Seconds since the database answers again after an outage, else None."""
        from hodei.store import outage

        return outage.DATABASE.reachable_for()

    def close(self) -> None:
        """Release pooled connections."""
        if "job_watches" in self.__dict__:
            self.job_watches.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
