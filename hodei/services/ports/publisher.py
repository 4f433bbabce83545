"""The broker, as services see it: ``hodei.queueing.publisher`` implements it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True)
class Publication:
    """A message to publish: run ``attempt`` of ``job_id`` on ``queue``."""

    job_id: UUID
    attempt: int
    queue: str
    job_name: str = ""
    reason: str = ""  # why this provider was chosen, for the JobQueued event
    correlation_id: str | None = None  # the job's, for the JobQueued event
    priority: int = 5  # 0..9, 9 first: the broker delivers higher ones first


class TaskPublisher(Protocol):
    """Puts run-job messages on the broker. Raises BrokerUnavailable when it cannot."""

    def publish(self, publication: Publication) -> str: ...
    def publish_many(
        self, publications: Sequence[Publication]
    ) -> Iterator[tuple[Publication, str]]:
        """Publish over one connection; yields each publication with its task id."""
        ...
