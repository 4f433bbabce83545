"""On the embedded default, reads take no write lock: a client polling its job neither
waits for a worker that is writing nor holds one up."""

from __future__ import annotations

import sqlite3
import threading

from hodei.domain.states import JobState
from hodei.sdk import Client
from tests.integration.operators_plant import plant_job


def test_reads_go_on_while_another_process_holds_the_write_lock(
    embedded_client: Client,
) -> None:
    c = embedded_client
    job = plant_job(c, state=JobState.QUEUED)
    path = c.settings.database_url.removeprefix("sqlite:///")
    writer = sqlite3.connect(path, timeout=0, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # what a worker's claim or finish holds
    seen: list[object] = []
    try:
        reader = threading.Thread(
            target=lambda: seen.extend([c.get(job.id), c.list(limit=5), c.logs(job.id)]),
            daemon=True,
        )
        reader.start()
        reader.join(timeout=5)  # a locked read would wait for the 30 s busy timeout
        assert not reader.is_alive(), "a read waited for the writer"
        assert seen[0] == job
    finally:
        writer.execute("ROLLBACK")
        writer.close()
