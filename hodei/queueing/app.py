"""The hodei Celery app (docs/architecture.md, "Queues"). Building it connects to nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu.entity import Exchange, Queue

from hodei.errors import InvalidConfiguration
from hodei.queueing.names import CONTROL_QUEUE, RUN_JOB_TASK
from hodei.settings import Settings, mask_url

if TYPE_CHECKING:
    from hodei.bootstrap import Container

__all__ = ["CONTROL_QUEUE", "RUN_JOB_TASK", "create_app"]


def create_app(settings: Settings, container: Container | None = None) -> Celery:
    """A Celery app on ``settings.broker_url``, with hodei's tasks registered. The app
    holds ``container`` (``hodei_container``): its maintenance tasks run against it, so
    no task module needs to build (or import) the wiring."""
    _use_hodei_sqlite_transport()
    check_broker_url(settings)
    # No fix-ups: Celery's only one is Django's, and loading it imports the worker.
    app = Celery("hodei", broker=settings.broker_url, set_as_current=False, fixups=[])
    app.hodei_container = container
    app.conf.update(_config(settings))
    # The tasks, and through them the worker's runtime, are imported when the app is
    # finalized, which a worker, beat and ``app.tasks`` do first: a client publishes by
    # name and never needs them (a tenth of a second of every `job run`).
    app.on_after_finalize.connect(_register_tasks, weak=False)
    from hodei.queueing import task_events

    task_events.install(app)
    _use_hodei_logging()
    return app


def _register_tasks(sender: Celery, **_: Any) -> None:
    """Register hodei's tasks (and connect the worker's signal handlers) on ``sender``."""
    from hodei.queueing import tasks

    tasks.register(sender)


def check_broker_url(settings: Settings) -> None:
    """A broker URL kombu has a transport for, and for a SQLite broker a file whose
    directory exists: one line now rather than a KeyError from deep inside kombu."""
    from kombu.transport import TRANSPORT_ALIASES

    url = settings.broker_url
    scheme, sep, rest = url.partition("://")
    transport = scheme.partition("+")[0].lower()
    if not sep or transport not in TRANSPORT_ALIASES:
        raise InvalidConfiguration(
            f"HODEI_BROKER_URL is not a broker URL hodei can use: {mask_url(url)!r}"
            " (use redis://HOST:6379/0, amqp://USER:PASSWORD@HOST:5672// or sqla+sqlite:///PATH)"
        )
    if transport in ("sqla", "sqlalchemy") and scheme.partition("+")[2].startswith("sqlite"):
        from hodei.store.engine import check_sqlite_directory

        path = rest.removeprefix("/")
        if Path(path).absolute().parent == settings.home:
            settings.make_home()  # the default broker: its home is hodei's to create
        check_sqlite_directory(path, "HODEI_BROKER_URL")


def _use_hodei_sqlite_transport() -> None:
    """Make ``sqla+`` URLs use :mod:`hodei.queueing.sqlite_transport` (idempotent). By
    path: importing it (kombu's SQLAlchemy transport, SQLAlchemy's ORM) took a twentieth
    of a second of every command, on Redis and RabbitMQ too."""
    from kombu.transport import TRANSPORT_ALIASES

    for alias in ("sqla", "sqlalchemy"):
        TRANSPORT_ALIASES[alias] = "hodei.queueing.sqlite_transport:Transport"


def _use_hodei_logging() -> None:
    """Workers and beat log through hodei's configuration (format, level, masking)."""
    from celery.signals import celeryd_init, setup_logging

    from hodei.logconfig import celery_quiet_banner, celery_setup_logging

    setup_logging.connect(celery_setup_logging, weak=False, dispatch_uid="hodei.logging")
    celeryd_init.connect(celery_quiet_banner, weak=False, dispatch_uid="hodei.quiet_banner")


def _config(settings: Settings) -> dict[str, Any]:
    return {
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": CONTROL_QUEUE,
        "task_queues": [Queue(CONTROL_QUEUE, Exchange(CONTROL_QUEUE), routing_key=CONTROL_QUEUE)],
        "task_create_missing_queues": True,
        # Flower shows tasks from these events; the database stays the record.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport": _transport(settings.broker_url),
        "broker_transport_options": _transport_options(settings.broker_url),
        "broker_connection_timeout": 4,
        "enable_utc": True,
        "timezone": "UTC",
        "beat_schedule": _beat_schedule(),
        "beat_schedule_filename": str(settings.home / "celerybeat-schedule"),
    }


MAX_PRIORITY = 9  # JobSpec priorities are 0..9, 9 first


def provider_queue(app: Celery, name: str) -> Queue:
    """The Queue of a provider's ``name`` (hodei.<provider>) on ``app``, the same for the
    publisher and the worker: on RabbitMQ a priority queue (``x-max-priority`` 9), so a
    higher-priority message waiting in it is delivered first. RabbitMQ cannot change an
    existing queue's arguments: a queue declared by an older hodei must be deleted once
    drained (docs/operations.md, "Upgrading to job priorities")."""
    queues = app.amqp.queues
    if name not in queues:
        arguments = {"x-max-priority": MAX_PRIORITY} if _is_amqp(app.conf.broker_url) else {}
        queues.add(Queue(name, Exchange(name), routing_key=name, queue_arguments=arguments))
    queue: Queue = queues[name]
    return queue


def broker_priority(broker_url: str, priority: int) -> int:
    """A job's priority (0..9, 9 first) as the broker reads it: kombu's Redis transport
    serves priority 0 first, RabbitMQ the highest number."""
    return MAX_PRIORITY - priority if _is_redis(broker_url) else priority


def _is_amqp(broker_url: str | None) -> bool:
    return bool(broker_url) and str(broker_url).startswith(("amqp", "pyamqp", "librabbitmq"))


def broker_reachable(app: Celery, timeout_s: float = 2.0) -> bool:
    """One connection attempt, no retry loop: cheap enough to ask every second."""
    from kombu.exceptions import KombuError

    with app.connection_for_read() as connection:
        try:
            connection.ensure_connection(max_retries=0, timeout=timeout_s)
        except (KombuError, OSError, *connection.connection_errors):
            return False
    return True


def retries_within(seconds: float) -> int:
    """How many of Celery's reconnection attempts fit in ``seconds``: it sleeps 2, 4, 6 s
    and so on (at most 30 s) between them."""
    retries, slept = 0, 0.0
    while slept < seconds:
        retries += 1
        slept += min(2.0 * retries, 30.0)
    return max(retries, 1)


def _is_redis(broker_url: str) -> bool:
    """redis://, rediss:// and kombu's other redis+... schemes."""
    return broker_url.startswith("redis")


def _transport(broker_url: str) -> str | None:
    """hodei's own transport class for Redis URLs; None keeps kombu's choice by scheme."""
    if _is_redis(broker_url):
        # A path, not the class: the embedded default must not import Redis's client.
        return "hodei.queueing.redis_transport:Transport"
    return None


def _transport_options(broker_url: str) -> dict[str, Any]:
    if broker_url.startswith(("sqla+", "sqlalchemy+")):
        return {"polling_interval": 0.1, "pool_pre_ping": True}
    if _is_redis(broker_url):
        # Unacked messages of a SIGKILLed worker come back after this; the claim then
        # drops them as stale, because the reaper has already requeued a new attempt.
        # One list per priority (kombu serves the lists in this order, 0 first): a job's
        # priority p goes to step 9 - p (broker_priority).
        return {
            "visibility_timeout": 3600,
            "socket_connect_timeout": 4,
            "priority_steps": list(range(MAX_PRIORITY + 1)),
            "queue_order_strategy": "priority",
        }
    return {}


def _beat_schedule() -> dict[str, Any]:
    every = {
        "dispatch_pending": 2.0,
        "release_gated": 2.0,  # the due times go from the scheduler's own loop (leader_loop)
        "reap_stale_workers": 15.0,
        "expire_tokens": 60.0,
        "enforce_deadlines": 10.0,
        "purge": 3600.0,
        "fold_state_counts": 60.0,
        "provision": 5.0,
        "check_provider_health": 5.0,  # each provider on its own health_check interval
        "reconcile_providers": 5.0,
        "reschedule_unschedulable": 5.0,
    }
    return {
        name: {
            "task": f"hodei.{name}",
            "schedule": seconds,
            "options": {"queue": CONTROL_QUEUE, "expires": seconds},
        }
        for name, seconds in every.items()
    }
