"""Flower's task events, published a batch at a time instead of one message each.

A worker sends three task events per job (received, started, succeeded). Celery buffers
them and publishes the buffer on the next turn of its event loop, which at a job's pace
means one broker message per event: a fifth of a worker's CPU went to those publishes.
:class:`BatchedTaskEvents` publishes the buffer at most every :data:`FLUSH_INTERVAL_S`
instead (or as soon as it holds the dispatcher's ``buffer_limit`` events), as one
``task.multi`` message that Flower and Celery's event receivers read like single events.
Flower sees a task's events up to that interval later; the database stays the record.
"""

from __future__ import annotations

from typing import Any, Final

from celery import bootsteps

FLUSH_INTERVAL_S: Final = 0.1


class BatchedTaskEvents(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Consumer step: flush the task-event buffer on a short timer, not every loop turn."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._consumer: Any = None
        self._scheduled = False

    def start(self, parent: Any) -> None:
        # Called again after each reconnection, when Events has made a new dispatcher.
        dispatcher = getattr(parent, "event_dispatcher", None)
        if getattr(parent, "hub", None) is None or dispatcher is None:
            return  # no event loop, so Celery does not buffer: nothing to batch
        if getattr(dispatcher, "on_send_buffered", None) is None:
            return  # buffering is off, or a Celery whose dispatcher works differently
        self._consumer = parent
        self._scheduled = False
        dispatcher.on_send_buffered = self._schedule

    def _schedule(self) -> None:
        # Called by whichever thread sent the event (the loop's, or a pool thread): the
        # timer is set from the loop's own thread. A race that schedules twice only
        # flushes twice.
        if not self._scheduled:
            self._scheduled = True
            self._consumer.hub.call_soon(self._arm)

    def _arm(self) -> None:
        self._consumer.hub.call_later(FLUSH_INTERVAL_S, self._flush)

    def _flush(self) -> None:
        # Clear the flag first: an event sent during the flush schedules the next one.
        self._scheduled = False
        self._flush_now()

    def _flush_now(self) -> None:
        dispatcher = self._consumer.event_dispatcher if self._consumer else None
        if dispatcher is not None:
            dispatcher.flush()

    def stop(self, parent: Any) -> None:
        # Events closes its dispatcher without flushing: send what is still buffered.
        self._flush_now()

    def shutdown(self, parent: Any) -> None:
        self._flush_now()


def install(app: Any) -> None:
    """Add the step to ``app``'s worker consumers."""
    app.steps["consumer"].add(BatchedTaskEvents)
