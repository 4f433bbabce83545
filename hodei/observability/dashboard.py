"""Flower, the live Celery console, on hodei's Celery app and broker.

Flower shows what the broker and the workers are doing right now, from Celery's events;
it is not the record. A job's state, attempts and timeline are hodei's (``hodei job
show``, ``hodei job timeline``), read from the database.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
from types import FrameType

from celery import Celery

from hodei.errors import InvalidConfiguration
from hodei.listening import listen_errors

logger = logging.getLogger(__name__)

# Flower's task list: the args column shows the publisher's argsrepr,
# "('<job name>', id=<job id>, attempt=<n>)", so a job is recognisable at a glance.
TASK_COLUMNS = "name,uuid,state,args,received,runtime,worker"
# Workers are ephemeral: forget the ones that have been gone for ten minutes.
PURGE_OFFLINE_WORKERS_S = 600
MAX_TASKS_IN_MEMORY = 10_000


def is_loopback(address: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # "" (every interface) or a host name: assume reachable from outside


def parse_basic_auth(value: str) -> list[str]:
    """``user:password[,user2:password2]`` as Flower's list of credentials."""
    credentials = [item.strip() for item in value.split(",") if item.strip()]
    for item in credentials:
        user, _, password = item.partition(":")
        if not user or not password:
            raise InvalidConfiguration(
                "HODEI_FLOWER_BASIC_AUTH must be user:password (comma-separated for several)"
            )
    return credentials


def check_exposure(address: str, credentials: list[str]) -> None:
    """Refuse to serve the console beyond this machine without a password."""
    if credentials or is_loopback(address):
        return
    shown = address or "every interface"
    raise InvalidConfiguration(
        f"refusing to serve Flower on {shown} without authentication: "
        "set HODEI_FLOWER_BASIC_AUTH=user:password, or listen on 127.0.0.1"
    )


def run_flower(app: Celery, address: str, port: int, credentials: list[str]) -> None:
    """Run Flower in this process until SIGTERM or Ctrl-C."""
    from flower.app import Flower
    from flower.options import default_options as options
    from flower.urls import settings as flower_settings

    # Flower keeps its configuration in tornado's global options; set them here rather
    # than on a command line, so the password never shows in `ps`.
    options.address = address
    options.port = port
    options.basic_auth = credentials
    options.tasks_columns = TASK_COLUMNS
    options.purge_offline_workers = PURGE_OFFLINE_WORKERS_S
    options.max_tasks = MAX_TASKS_IN_MEMORY
    options.persistent = False
    options.enable_events = True
    # Flower logs every request at INFO through tornado.access; keep that out. Its
    # inspector warns on every poll that finds no worker, which with workers that
    # scale to zero is the normal idle state.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    logging.getLogger("flower.inspector").setLevel(logging.ERROR)
    dashboard = Flower(capp=app, options=options, **flower_settings)
    with listen_errors(address, port):  # the port is in use, or not ours to take
        bound = dashboard.start_http_server()
    logger.info(
        "hodei flower: http://%s:%s (basic auth %s)",
        address or "0.0.0.0",  # noqa: S104 (only a display string)
        bound,
        "on" if credentials else "off",
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        dashboard.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        dashboard.stop()
        logger.info("hodei flower stopped")
