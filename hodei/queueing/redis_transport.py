"""kombu's Redis transport, with one reusable client per channel for plain commands.

The stock channel builds a new ``redis.Redis`` for every LPUSH, PUBLISH, ack and
unacked-index update. The connections themselves come from the channel's pool either
way; what is thrown away is the client object, and building one costs about 0.1 ms of
CPU (redis-py fills a table of several hundred response callbacks). A worker does
several such commands per job (the ack, the unacked index, three Flower events) and a
submit does two, so this was some 13% of a worker's CPU and 5% of a submit's.

A ``redis.Redis`` that only holds a connection pool is safe to share between threads:
each command checks a connection out of the pool and back in. Pipelines and pub/sub
objects are still made per use by the callers.

hodei's app names this transport in its own configuration (Celery's
``broker_transport``, see :mod:`hodei.queueing.app`) instead of re-pointing kombu's
``redis`` alias: kombu caches what an alias resolved to, so a process that had already
connected another Celery app to Redis kept the stock transport for hodei's too; and
other apps in the process are left as they are.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: tuple[Any, Any] | None = None  # (pool, client built on that pool)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        cached = self._sync_client
        if cached is None or cached[0] is not pool:
            # The channel drops its pool on close or reconnect; a new pool gets a new client.
            cached = self._sync_client = (pool, super()._create_client())
        return cached[1]


class Transport(kombu_redis.Transport):
    Channel = Channel
