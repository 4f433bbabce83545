"""``hodei worker start``: register with the token, heartbeat, consume, exit when idle."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from hodei.bootstrap import Container
from hodei.domain.records import Job
from hodei.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    HodeiError,
    InvalidConfiguration,
    Unauthorized,
)
from hodei.queueing import worker_step
from hodei.queueing.app import broker_reachable, provider_queue, retries_within
from hodei.queueing.signals import write_outcome
from hodei.runtime import hardening, proctree
from hodei.runtime.broker_link import BrokerLink, consumer_class
from hodei.runtime.context import WorkerContext
from hodei.runtime.control_plane import ControlPlane, DirectControlPlane
from hodei.runtime.orphan_guard import OrphanGuard
from hodei.runtime.outcomes import OutcomeKeeper
from hodei.services.jobs.attempts import Outcome
from hodei.settings import mask_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    queue: str | None
    concurrency: int = 1
    idle_timeout_s: float = 60.0
    worker_id: UUID | None = None  # the one the token must be for, if given
    burst: bool = False  # exit once its queue has nothing waiting or running


def run_worker(
    container: Container,
    token: str,
    options: WorkerOptions,
    control: ControlPlane | None = None,
) -> int:
    """Run a worker until it is idle, drained, declared lost or sent SIGTERM; exit code.

    ``control`` is how it reaches the platform: the database through ``container``
    (the default), or ``hodei server`` (API mode: runtime/control_http.py)."""
    control = control or DirectControlPlane(container)
    # Before any job can run: its jobs must not read this process's environment (the
    # database and broker URLs, the token), memory or descriptors (runtime/hardening).
    if not hardening.make_undumpable():
        logger.warning("this worker's memory and environment are readable by its jobs")
    hardening.scrub_environment()
    try:
        job_user = hardening.job_user(container.settings.job_user)
    except ValueError as exc:
        raise InvalidConfiguration(str(exc)) from None
    # Orphans of its jobs re-parent to the worker, which kills what a job left behind at
    # its end (proctree) and reaps them, instead of their piling up as zombies.
    if not proctree.TRACKER.adopt_orphans():
        logger.debug("could not become a child subreaper")
    if container.settings.job_cgroup == "off":
        proctree.cgroups_disabled()
    # Before anything else: SIGHUP's default would end the worker unrecorded.
    signal.signal(signal.SIGHUP, _ignore_sighup)
    # Register (READY, heartbeating) only once the broker answers: a worker that cannot
    # consume must not look like capacity, and its single-use token stays unused.
    wait_for_broker(container)
    control.announce()
    infra_ref = f"pid:{os.getpid()}@{socket.gethostname()}"
    worker = control.register(token, infra_ref)
    if options.worker_id is not None and options.worker_id != worker.id:
        logger.warning("token is for worker %s, not %s", worker.id, options.worker_id)
    if options.queue and options.queue != worker.queue:
        logger.warning("token is for queue %s; ignoring --queue %s", worker.queue, options.queue)
    guard = _start_guard(worker.id)

    def give_up(job: Job, outcome: Outcome) -> None:
        # Stop heartbeating and leave: the reaper (or the deadline check) recovers the job.
        ctx.gave_up.set()
        _stop(ctx, f"could not record the outcome of job {job.id} before its deadline")

    outcomes = OutcomeKeeper(
        lambda claimed, outcome: write_outcome(ctx, claimed, outcome),
        control.append_logs,
        container.clock,
        on_give_up=give_up,
    )
    link = BrokerLink(container.settings.broker_url, container.settings.broker_wait_s)
    ctx = WorkerContext(
        container, control, worker, outcomes, guard=guard, job_user=job_user, broker=link
    )
    ctx.stop = lambda reason: _stop(ctx, reason)
    extra = {"worker_id": str(worker.id)}
    logger.info("worker %s ready on %s", worker.id, worker.queue, extra=extra)
    keeper = threading.Thread(
        target=_housekeeping, args=(ctx, options), daemon=True, name="hodei-heartbeat"
    )
    keeper.start()
    # A job worker that loses its broker gives up after about HODEI_BROKER_WAIT seconds;
    # Celery's default (100 retries, up to 30 s apart) kept one retrying for most of an
    # hour. The scheduler keeps Celery's default: it is the long-lived service.
    container.app.conf.broker_connection_max_retries = retries_within(
        container.settings.broker_wait_s
    )
    lost_broker = False
    provider_queue(container.app, worker.queue)  # declared as the publisher declares it
    # Celery's worker holds the context; its tasks and signal handlers reach it by app.
    worker_step.install(container.app)
    from kombu.utils.imports import symbol_by_name  # Celery's own way to name its consumer

    try:
        celery_worker = _celery_worker_class(container, ctx)(
            hostname=f"{worker.name}@{socket.gethostname()}",
            queues=[worker.queue],
            pool="threads",
            concurrency=options.concurrency,
            prefetch_multiplier=1,
            without_mingle=True,
            without_gossip=True,
            optimization="fair",
            loglevel=container.settings.log_level,
            # Not READY while its broker is unreachable: DEGRADED until Celery reconnects.
            consumer_cls=consumer_class(symbol_by_name(container.app.conf.worker_consumer), link),
            hodei_context=ctx,
        )
        celery_worker.start()
        lost_broker = bool(celery_worker.exitcode) and not broker_reachable(container.app)
        if lost_broker:
            # Celery gave up reconnecting (broker_connection_max_retries): say why it ended.
            _set_reason(
                ctx,
                f"lost its broker for about {container.settings.broker_wait_s:g}s"
                " (HODEI_BROKER_WAIT)",
            )
        if ctx.stop_reason is None:
            code = getattr(celery_worker, "exitcode", None)
            _set_reason(ctx, f"the Celery worker stopped (exit code {code})")
    except BaseException as exc:
        # Only the exception's type: its message may hold a broker URL with a password.
        _set_reason(ctx, f"error: {type(exc).__name__}")
        raise
    finally:
        # Outcomes still kept are written before the worker says it is gone (each is
        # bounded by its attempt's deadline).
        outcomes.wait_until_written()
        ctx.stopping.set()
        proctree.TRACKER.sweep(None)  # what no run could be told from another's, if any
        proctree.remove_cgroup_base()
        if guard is not None:
            guard.close()
        reason = ctx.stop_reason or "stopped"
        control.terminate(reason)
    if lost_broker:
        raise BrokerUnavailable(
            f"the worker {ctx.stop_reason}: {mask_url(container.settings.broker_url)}"
        )
    return 0


def wait_for_broker(container: Container) -> None:
    """Connect to the broker, retrying for up to HODEI_BROKER_WAIT seconds; then
    :class:`BrokerUnavailable` (the worker exits 5 without registering)."""
    from kombu.exceptions import KombuError

    wait_s = container.settings.broker_wait_s
    url = mask_url(container.settings.broker_url)
    warned = False

    def _waiting(exc: Exception, _interval: float) -> None:
        nonlocal warned
        if not warned:  # one line, not one per retry
            logger.warning(
                "broker unreachable at %s (%s); retrying for up to %gs", url, exc, wait_s
            )
            warned = True

    with container.app.connection_for_read() as connection:
        errors = (KombuError, OSError, *connection.connection_errors)
        try:
            connection.ensure_connection(
                errback=_waiting,
                # 0 means one attempt: kombu reads a timeout of 0 as "retry forever".
                max_retries=0 if wait_s == 0 else None,
                interval_start=1,
                interval_step=1,
                interval_max=5,
                timeout=wait_s,
            )
        except errors as exc:
            raise BrokerUnavailable(
                f"the broker at {url} is still unreachable after {wait_s:g}s"
                f" (HODEI_BROKER_WAIT): {exc}; the worker exits without registering"
            ) from None
    if warned:
        logger.info("broker reachable at %s", url)


def _start_guard(worker_id: UUID) -> OrphanGuard | None:
    try:
        return OrphanGuard()
    except OSError as exc:
        # Jobs still run; they just may outlive a worker that is killed outright.
        logger.warning(
            "could not start the orphan guard: %s", exc, extra={"worker_id": str(worker_id)}
        )
        return None


def _housekeeping(ctx: WorkerContext, options: WorkerOptions) -> None:
    """Heartbeat from a thread of its own, so a long job never starves it; stop the
    worker when it is idle (unless its provider keeps it warm), drained or was declared
    lost, or in burst mode when its queue is empty; publish due retries."""
    settings = ctx.container.settings
    tick = min(1.0, settings.heartbeat_interval_s)
    last_beat = time.monotonic()
    last_busy = last_beat
    while not ctx.stopping.wait(tick):
        if ctx.gave_up.is_set():
            return  # silent from now on, so that recovery takes over
        now = time.monotonic()
        record = now - last_beat >= settings.heartbeat_interval_s
        try:
            pulse = ctx.control.heartbeat(record=record, report=ctx.outcomes.held)
            ctx.outcomes.wake()  # the database answers: kept outcomes go now
            if ctx.broker is not None:
                ctx.broker.record(ctx.control)
        except DatabaseUnavailable as exc:
            # Said once per process by hodei.store.outage; here only at debug.
            logger.debug("heartbeat failed: %s", exc, extra={"worker_id": str(ctx.worker_id)})
            continue
        except Unauthorized as exc:
            # API mode: the credential is revoked (the worker was declared LOST, or it
            # expired). Nothing it does will be taken any more: stop.
            _stop(ctx, f"its credential was refused: {exc.message}")
            return
        except HodeiError as exc:
            logger.warning("heartbeat failed: %s", exc, extra={"worker_id": str(ctx.worker_id)})
            continue
        if record:
            last_beat = now
        # A worker its provider keeps warm (min_workers) is never idle: when it stops
        # being one, it gets a whole idle timeout from then. One holding an outcome isn't.
        if pulse.running_jobs or pulse.waiting_jobs or pulse.keep_warm or ctx.outcomes.pending:
            last_busy = now
        if pulse.should_stop:
            _stop(ctx, f"{pulse.state.lower()} by the control plane")
            return
        if options.burst and not (pulse.running_jobs or pulse.waiting_jobs or ctx.outcomes.pending):
            # Like RQ's burst mode or dramatiq's join: the queue is drained, so leave
            # (a warm pool's min_workers does not hold a burst worker).
            _stop(ctx, "its queue is empty (burst)")
            return
        if now - last_busy >= options.idle_timeout_s:
            _stop(ctx, f"idle for {options.idle_timeout_s:g}s")
            return


def _celery_worker_class(container: Container, ctx: WorkerContext) -> type[Any]:
    """Celery's worker, with hodei's signal handling on top of Celery's own: SIGHUP
    ignored (Celery would re-execute the worker, whose single-use token is spent), and
    the stop signals recorded as the worker's end reason before Celery handles them."""
    base: type[Any] = container.app.Worker

    class HodeiCeleryWorker(base):  # type: ignore[misc,valid-type]
        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            signal.signal(signal.SIGHUP, _ignore_sighup)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                signal.signal(sig, _recording(ctx, sig, signal.getsignal(sig)))

    return HodeiCeleryWorker


def _recording(ctx: WorkerContext, sig: signal.Signals, handler: Any) -> Any:
    """``handler`` (Celery's), after noting ``sig`` as the reason unless one is set (the
    worker's own stop sends itself SIGTERM after setting its reason)."""
    if not callable(handler):
        return handler

    def record_then_handle(signum: int, frame: Any) -> Any:
        _set_reason(ctx, sig.name)
        return handler(signum, frame)

    return record_then_handle


def _ignore_sighup(signum: int, frame: object) -> None:
    logger.warning(
        "SIGHUP ignored: a hodei worker is not reloaded; SIGTERM stops it after its jobs"
    )


def _set_reason(ctx: WorkerContext, reason: str) -> None:
    if ctx.stop_reason is None:
        ctx.stop_reason = reason


def _stop(ctx: WorkerContext, reason: str) -> None:
    logger.info(
        "worker %s stopping: %s", ctx.worker_id, reason, extra={"worker_id": str(ctx.worker_id)}
    )
    _set_reason(ctx, reason)
    # Celery's warm shutdown: stop consuming, let the running job finish, then exit.
    os.kill(os.getpid(), signal.SIGTERM)
