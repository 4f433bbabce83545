"""hodei: run shell-command jobs on ephemeral Celery workers, with a durable audit timeline.

The public API::

    from hodei import Client, JobSpec, JobState
    client = Client.from_env()
    job = client.submit("echo hello", name="greet")
    client.wait(job.id)

Errors are the classes of :mod:`hodei.errors`, all subclasses of :class:`HodeiError`.
"""

from __future__ import annotations

import typing as _typing

from hodei import errors
from hodei.domain.specs import JobSpec, RetryPolicy
from hodei.domain.states import JobState
from hodei.errors import HodeiError

if _typing.TYPE_CHECKING:
    from hodei.domain.records import Job, LogLine
    from hodei.sdk import Client

__all__ = [
    "Client",
    "HodeiError",
    "Job",
    "JobSpec",
    "JobState",
    "LogLine",
    "RetryPolicy",
    "errors",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> _typing.Any:
    # The SDK pulls in Celery and SQLAlchemy, and the records uuid: load them only when
    # asked for, so `hodei --help` does not pay for them.
    if name == "Client":
        from hodei.sdk import Client

        return Client
    if name in ("Job", "LogLine"):
        from hodei.domain import records

        return getattr(records, name)
    raise AttributeError(f"module 'hodei' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The public API only, not the helpers and subpackages the import leaves behind.
    return [*__all__, "__version__"]
