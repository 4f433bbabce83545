"""hodei: run shell-command jobs on ephemeral Celery workers, with a durable audit timeline.

The public API::

    from hodei import Client, JobSpec, JobState
    client = Client.from_env()
    job = client.submit(JobSpec.create("echo hello"))
    client.wait(job.id)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hodei import errors
from hodei.domain.specs import JobSpec, RetryPolicy
from hodei.domain.states import JobState

if TYPE_CHECKING:
    from hodei.sdk import Client

__all__ = ["Client", "JobSpec", "JobState", "RetryPolicy", "errors"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The SDK pulls in Celery and SQLAlchemy; load it only when asked for.
    if name == "Client":
        from hodei.sdk import Client

        return Client
    raise AttributeError(name)
