"""Publishing run-job messages, and confirming QUEUED from ``after_task_publish``."""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.signals import after_task_publish
from kombu.exceptions import KombuError

from hodei.errors import BrokerUnavailable
from hodei.queueing.app import broker_priority, provider_queue
from hodei.queueing.names import RUN_JOB_TASK
from hodei.services.jobs.dispatch import Confirmation
from hodei.services.ports.publisher import Publication
from hodei.settings import mask_url

logger = logging.getLogger(__name__)

ConfirmFn = Callable[[Sequence[Confirmation]], object]

_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}

# Connecting for a publish: two tries half a second apart. kombu's default, reached when
# a producer first touches its channel, retries for the whole connect timeout with
# sleeps of 2 and 4 s: a submit took 6-7 s to say the broker was down. The job is
# stored either way, and dispatch_pending publishes it once the broker is back.
_CONNECT_POLICY = {"max_retries": 1, "interval_start": 0.5, "interval_step": 0, "interval_max": 0.5}

# Messages per broker round trip. On Redis, kombu's Producer.batch sends a batch's
# commands (each message's LPUSH and its task-sent PUBLISH) as one pipeline; other
# transports publish each message at once, as without a batch.
_BATCH_MESSAGES = 250
_COMMANDS_PER_MESSAGE = 2


@dataclass
class _Sending:
    """One publish_many call: its messages by task id, and those the broker accepted."""

    in_flight: dict[str, Publication] = field(default_factory=dict)
    confirmed: list[Confirmation] = field(default_factory=list)

    def accepted(self, task_id: str) -> None:
        publication = self.in_flight.pop(task_id, None)
        if publication is not None:
            self.confirmed.append(Confirmation.of(publication, task_id))


# The publish_many call in progress on this thread: after_task_publish runs
# synchronously inside send_task, so it reports back to the call that sent.
_sending: contextvars.ContextVar[_Sending | None] = contextvars.ContextVar(
    "hodei_sending", default=None
)


class CeleryPublisher:
    """The :class:`hodei.services.ports.publisher.TaskPublisher` on a Celery app."""

    def __init__(self, app: Celery, confirm: ConfirmFn) -> None:
        self._app = app
        self._confirm = confirm

    def publish(self, publication: Publication) -> str:
        for _publication, task_id in self.publish_many([publication]):
            return task_id
        raise BrokerUnavailable("nothing was published")

    def publish_many(
        self, publications: Sequence[Publication]
    ) -> Iterator[tuple[Publication, str]]:
        """Publish over one pooled connection, in batches; yields each publication once
        the broker has it. QUEUED is confirmed for all in one transaction at the end."""
        sending = _Sending()
        token = _sending.set(sending)
        try:
            # The app's producer pool keeps the connection (and kombu's record of the
            # queues it already declared) from one submit to the next.
            with self._app.producer_pool.acquire(block=True) as producer:
                for start in range(0, len(publications), _BATCH_MESSAGES):
                    yield from self._send_batch(
                        publications[start : start + _BATCH_MESSAGES], producer, sending
                    )
        finally:
            _sending.reset(token)
            if sending.confirmed:
                self._confirm(sending.confirmed)

    def _send_batch(
        self, publications: Sequence[Publication], producer: Any, sending: _Sending
    ) -> list[tuple[Publication, str]]:
        connection = producer.connection
        errors = (KombuError, OSError, *connection.connection_errors, *connection.channel_errors)
        confirmed_so_far = len(sending.confirmed)
        # One message keeps its task-sent event in the pipeline; many send theirs together.
        sent_events = _SentEvents(self._app, producer) if len(publications) > 1 else None
        try:
            connection.ensure_connection(**_CONNECT_POLICY)
            self._declare_queues(publications, producer)
            with producer.batch(max_size=len(publications) * _COMMANDS_PER_MESSAGE + 1):
                sent = [(p, self._send(p, producer, sending, sent_events)) for p in publications]
        except errors as exc:
            # after_task_publish ran as each message was buffered; the batch as a whole
            # failed, so none of it counts as published. A part may have reached Redis
            # all the same: those jobs stay PENDING, and the duplicate that
            # dispatch_pending publishes later loses the claim.
            del sending.confirmed[confirmed_so_far:]
            raise BrokerUnavailable(
                f"broker unavailable at {mask_url(self._app.conf.broker_url)}: {exc}"
            ) from exc
        if sent_events is not None:
            sent_events.flush()  # after the messages, and only for a batch that went out
        return sent

    def _declare_queues(self, publications: Sequence[Publication], producer: Any) -> None:
        """Declare the batch's queues once (kombu remembers, per connection, what it has
        declared), so its messages need not: Celery declares the queue with every message,
        and kombu copies the queue to check its record each time, a seventh of a publish's
        CPU."""
        for name in sorted({p.queue for p in publications}):
            queue = provider_queue(self._app, name)
            producer.maybe_declare(queue, retry=True, **_RETRY_POLICY)

    def _send(
        self,
        publication: Publication,
        producer: Any,
        sending: _Sending,
        sent_events: _SentEvents | None,
    ) -> str:
        task_id = str(uuid.uuid4())
        sending.in_flight[task_id] = publication
        self._app.send_task(
            RUN_JOB_TASK,
            args=[str(publication.job_id), publication.attempt],
            queue=publication.queue,
            priority=broker_priority(self._app.conf.broker_url, publication.priority),
            task_id=task_id,
            producer=producer,
            retry=True,
            retry_policy=_RETRY_POLICY,
            argsrepr=_argsrepr(publication),
            declare=[],  # declared by _declare_queues
            event_dispatcher=sent_events,  # None: Celery's own, one message per event
        )
        return task_id


class _SentEvents:
    """Flower's task-sent events of a batch, published as one ``task.multi`` message
    after the batch instead of one message per task: a fifth of a ``submit_many``'s CPU
    went to those publishes. Celery hands each event to :meth:`publish`, which only
    buffers it; event receivers, Flower's included, read the batch like single events."""

    def __init__(self, app: Celery, producer: Any) -> None:
        self._dispatcher = app.events.Dispatcher(
            channel=producer.channel, buffer_group=["task"], buffer_limit=_BATCH_MESSAGES + 1
        )

    def publish(self, event_type: str, fields: dict[str, Any], producer: Any, **_: Any) -> None:
        self._dispatcher.send(event_type, **fields)

    def flush(self) -> None:
        """Publish the buffered events. Best effort, as Celery's own: the dispatcher keeps
        an event it could not publish instead of raising, and this one is then dropped,
        so the jobs, already on the broker, are not reported as unpublished."""
        self._dispatcher.flush()


def _argsrepr(publication: Publication) -> str:
    # What Flower shows for the task: enough to recognise the job at a glance.
    return f"({publication.job_name!r}, id={publication.job_id}, attempt={publication.attempt})"


@after_task_publish.connect
def _confirm_published(
    sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any
) -> None:
    """Confirm QUEUED for a run-job message the broker accepted."""
    sending = _sending.get()
    if sending is None or sender != RUN_JOB_TASK or headers is None:
        return
    sending.accepted(str(headers.get("id")))
