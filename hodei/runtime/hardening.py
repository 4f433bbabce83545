"""Keep a job from reading the credentials of the hodei processes around it.

A job runs as a child of its worker, and by default as the same user: without more, it
can read the worker's ``/proc/<pid>/environ`` (the database and broker URLs, the
bootstrap token), its memory (``/proc/<pid>/mem``, ptrace) and its open descriptors.
Three things close that (docs/architecture.md, "Trust boundaries"):

- :func:`make_undumpable`: ``PR_SET_DUMPABLE`` 0, after which the kernel gives the
  process's ``/proc`` files to root and refuses ptrace, ``mem``, ``environ`` and ``fd``
  to every process without ``CAP_SYS_PTRACE``, the same user's included. A job's command
  is a new program (``execve`` makes it dumpable again), so this never reaches the jobs;
- :func:`scrub_environment`: the worker's secrets leave ``os.environ`` once read, so no
  child (the orphan guard, a job) can inherit them by mistake;
- :func:`job_user`: a worker running as root runs its jobs as an unprivileged user.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import pwd
import sys
from dataclasses import dataclass
from typing import Final

logger = logging.getLogger(__name__)

_PR_SET_DUMPABLE: Final = 4
_PR_GET_DUMPABLE: Final = 3
# What a worker reads from its environment and no child may inherit.
SECRET_ENV: Final = (
    "HODEI_DATABASE_URL",
    "HODEI_BROKER_URL",
    "HODEI_OTP_TOKEN",
    "HODEI_FLOWER_BASIC_AUTH",
    "HODEI_SECRET_KEY",
    "HODEI_SECRET_KEYS",
)
DEFAULT_JOB_USER: Final = "nobody"  # for a worker running as root
NOBODY_UID: Final = 65534  # nobody's uid and gid on Linux distributions, where it has none


def make_undumpable() -> bool:
    """Make this process unreadable to other processes of its user; whether it is now.

    Linux only (elsewhere False): other systems have no ``/proc/<pid>/environ`` of the
    same kind, and ptrace there is their own matter."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())
            return False
        return bool(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError) as exc:
        logger.warning("could not make this process undumpable: %s", exc)
        return False


def scrub_environment() -> list[str]:
    """Remove the worker's secrets from ``os.environ``; the names removed.

    Call it after the settings were read. ``/proc/<pid>/environ`` still shows the
    environment the process started with (the kernel keeps that copy), which is why
    :func:`make_undumpable` comes first."""
    removed = [name for name in SECRET_ENV if name in os.environ]
    for name in removed:
        del os.environ[name]
    return removed


@dataclass(frozen=True)
class JobUser:
    """The user a job's command runs as, when it is not the worker's own."""

    name: str
    uid: int
    gid: int
    home: str


def job_user(setting: str, *, euid: int | None = None) -> JobUser | None:
    """The user jobs run as for the HODEI_JOB_USER ``setting``; None: the worker's own.

    Empty (the default): the worker's own user, unless the worker is root, then
    ``nobody``. A user name or a numeric uid: that user (a uid without a passwd entry
    runs with the same gid and ``/`` as its home). ``root`` or ``0`` keeps root.
    Raises ValueError for a user that does not exist, or another user than the
    worker's own when the worker is not root."""
    effective = os.geteuid() if euid is None else euid
    wanted = setting.strip() or (DEFAULT_JOB_USER if effective == 0 else "")
    if not wanted:
        return None
    try:
        entry = pwd.getpwuid(int(wanted)) if wanted.isdigit() else pwd.getpwnam(wanted)
    except KeyError:
        if wanted == DEFAULT_JOB_USER and not setting.strip():
            # A minimal image without a passwd entry for it: nobody's customary uid.
            return JobUser(DEFAULT_JOB_USER, NOBODY_UID, NOBODY_UID, "/")
        if not wanted.isdigit():
            raise ValueError(f"HODEI_JOB_USER: no such user {wanted!r}") from None
        return _same_or(JobUser(wanted, int(wanted), int(wanted), "/"), effective)
    return _same_or(JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir), effective)


def _same_or(user: JobUser, euid: int) -> JobUser | None:
    if user.uid == euid:
        return None
    if euid != 0:
        # Said at the worker's start, not as every job failing to start.
        raise ValueError(
            f"HODEI_JOB_USER: a worker running as uid {euid} cannot run jobs as"
            f" {user.name!r} (only a worker running as root can switch users)"
        )
    return user
