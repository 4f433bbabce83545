"""Publishing run-job messages, and confirming QUEUED from ``after_task_publish``."""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from celery import Celery
from celery.signals import after_task_publish
from kombu.exceptions import KombuError

from hodei.errors import BrokerUnavailable
from hodei.queueing.app import RUN_JOB_TASK
from hodei.services.dispatch import Confirmation
from hodei.services.ports import Publication
from hodei.settings import mask_url

logger = logging.getLogger(__name__)

ConfirmFn = Callable[[Sequence[Confirmation]], object]

# The publisher whose send is in progress on this thread: after_task_publish runs
# synchronously inside send_task, so it reports back to the publisher that sent.
_sending: contextvars.ContextVar[CeleryPublisher | None] = contextvars.ContextVar(
    "hodei_sending", default=None
)

_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}

# Messages per broker round trip. On Redis, kombu's Producer.batch sends a batch's
# commands (each message's LPUSH and its task-sent PUBLISH) as one pipeline; other
# transports publish each message at once, as without a batch.
_BATCH_MESSAGES = 250
_COMMANDS_PER_MESSAGE = 2


class CeleryPublisher:
    """The :class:`hodei.services.ports.TaskPublisher` on a Celery app."""

    def __init__(self, app: Celery, confirm: ConfirmFn) -> None:
        self._app = app
        self._confirm = confirm
        self._pending: list[Confirmation] = []

    def publish(self, publication: Publication) -> str:
        for _publication, task_id in self.publish_many([publication]):
            return task_id
        raise BrokerUnavailable("nothing was published")

    def publish_many(
        self, publications: Sequence[Publication]
    ) -> Iterator[tuple[Publication, str]]:
        """Publish over one pooled connection, in batches; yields each publication once
        the broker has it. QUEUED is confirmed for all in one transaction at the end."""
        token = _sending.set(self)
        try:
            # The app's producer pool keeps the connection (and kombu's record of the
            # queues it already declared) from one submit to the next.
            with self._app.producer_pool.acquire(block=True) as producer:
                for start in range(0, len(publications), _BATCH_MESSAGES):
                    yield from self._send_batch(
                        publications[start : start + _BATCH_MESSAGES], producer
                    )
        finally:
            _sending.reset(token)
            self._flush()

    def _send_batch(
        self, publications: Sequence[Publication], producer: Any
    ) -> list[tuple[Publication, str]]:
        connection = producer.connection
        errors = (KombuError, OSError, *connection.connection_errors, *connection.channel_errors)
        confirmed_so_far = len(self._pending)
        try:
            with producer.batch(max_size=len(publications) * _COMMANDS_PER_MESSAGE + 1):
                return [(p, self._send(p, producer)) for p in publications]
        except errors as exc:
            # after_task_publish ran as each message was buffered; the batch as a whole
            # failed, so none of it counts as published. A part may have reached Redis
            # all the same: those jobs stay PENDING, and the duplicate that
            # dispatch_pending publishes later loses the claim.
            del self._pending[confirmed_so_far:]
            raise BrokerUnavailable(
                f"broker unavailable at {mask_url(self._app.conf.broker_url)}: {exc}"
            ) from exc

    def _send(self, publication: Publication, producer: Any) -> str:
        task_id = str(uuid.uuid4())
        self._app.send_task(
            RUN_JOB_TASK,
            args=[str(publication.job_id), publication.attempt],
            queue=publication.queue,
            task_id=task_id,
            producer=producer,
            retry=True,
            retry_policy=_RETRY_POLICY,
            headers={"hodei_reason": publication.reason},
            argsrepr=_argsrepr(publication),
        )
        return task_id

    def _on_published(self, confirmation: Confirmation) -> None:
        self._pending.append(confirmation)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._confirm(pending)


def _argsrepr(publication: Publication) -> str:
    # What Flower shows for the task: enough to recognise the job at a glance.
    return f"({publication.job_name!r}, id={publication.job_id}, attempt={publication.attempt})"


@after_task_publish.connect
def _confirm_published(
    sender: str | None = None,
    headers: dict[str, Any] | None = None,
    body: Any = None,
    **_: Any,
) -> None:
    """Confirm QUEUED for a run-job message the broker accepted."""
    publisher = _sending.get()
    if publisher is None or sender != RUN_JOB_TASK or headers is None:
        return
    args = body[0] if isinstance(body, list | tuple) and body else None
    if not args or len(args) < 2:
        return
    publisher._on_published(
        Confirmation(
            uuid.UUID(args[0]),
            int(args[1]),
            str(headers.get("id")),
            str(headers.get("hodei_reason") or ""),
        )
    )
