"""What storing a job's output costs: the runner's line splitting and the batch write.

Lossless storage (job_logs.data, see docs/architecture.md "Job output") changed both:
the runner keeps each line's bytes beside its text, and each row carries a ``data``
column (NULL for plain text). This measures, in one run, on PostgreSQL (COPY) and on
SQLite:

- ``split``: lines/s of splitting 20 MB of output into lines, hodei's reader against
  the reader it replaced (split, strip CR, decode), copied here as the baseline;
- ``write``: lines/s of writing batches of 100 lines (the runner's batch size) in a
  transaction each, hodei's ``LogRepository.append`` (plain text lines: data NULL; and
  binary lines: data stored) against a COPY / INSERT of the old row shape, without
  the ``data`` column, as the baseline.

Medians of ``--repeat`` runs; ratios are new/baseline (1.0: the same speed).

    .venv/bin/python benchmarks/output.py [--lines 20000] [--repeat 5] [--json]
        [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import command_line, median, scratch_database

from hodei.bootstrap import SystemClock
from hodei.domain.records import LogLine
from hodei.domain.specs import JobSpec
from hodei.runtime.runner import OutputLine, _LineReader, readable
from hodei.services.jobs.submission import _store_jobs
from hodei.store.driver_statement import insert_rows
from hodei.store.engine import create_engine
from hodei.store.migrate import upgrade
from hodei.store.sql_store import SqlStore
from hodei.store.tables import job_logs

BATCH = 100


def old_split(data: bytes, chunk: int) -> int:
    """The reader before lossless storage: text only, CR stripped, bytes replaced."""
    partial, count = b"", 0
    for i in range(0, len(data), chunk):
        lines = (partial + data[i : i + chunk]).split(b"\n")
        partial = lines.pop()
        now = datetime.now(UTC)
        for line in lines:
            OutputLine("stdout", line.removesuffix(b"\r").decode("utf-8", errors="replace"), now)
            count += 1
    return count


def new_split(data: bytes, chunk: int) -> int:
    reader, count = _LineReader("stdout"), 0
    for i in range(0, len(data), chunk):
        now = datetime.now(UTC)
        for stream, raw in reader.feed(data[i : i + chunk]):
            OutputLine.of_bytes(stream, now, raw)
            count += 1
    return count


def rate(count: int, run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def make_lines(job_id: uuid.UUID, n: int, binary: bool) -> list[LogLine]:
    """Plain text lines (their data stores NULL) or 40 random bytes each (stored)."""
    rng, now = random.Random(n), datetime.now(UTC)
    if not binary:
        return [
            LogLine(job_id, 1, "stdout", f"line {i} of plain text output", now) for i in range(n)
        ]
    raws = [rng.randbytes(40).replace(b"\n", b" ") + b"\n" for _ in range(n)]
    return [LogLine(job_id, 1, "stdout", readable(raw), now, data=raw) for raw in raws]


def write_new(store: SqlStore, lines: Sequence[LogLine]) -> None:
    for i in range(0, len(lines), BATCH):
        with store.transaction() as tx:
            tx.logs.append(lines[i : i + BATCH])


def write_old(store: SqlStore, lines: Sequence[LogLine]) -> None:
    for i in range(0, len(lines), BATCH):
        rows = [
            {
                "job_id": ln.job_id,
                "attempt_no": 1,
                "stream": ln.stream,
                "line": ln.line,
                "ts": ln.ts,
            }
            for ln in lines[i : i + BATCH]
        ]
        with store.transaction() as tx:
            insert_rows(tx.logs._c, job_logs, rows)  # type: ignore[attr-defined]


def measure_writes(url: str, n: int, repeat: int) -> dict[str, float]:
    engine = create_engine(url)
    upgrade(engine)
    store = SqlStore(engine)
    job_id = _store_jobs(store, SystemClock(), [JobSpec.create("true")], "bench")[0].job.id
    plain, binary = make_lines(job_id, n, False), make_lines(job_id, n, True)
    results: dict[str, list[float]] = {"old_plain": [], "new_plain": [], "new_binary": []}
    for _ in range(repeat):  # alternate, so drift hits all alike
        results["old_plain"].append(rate(n, lambda: write_old(store, plain)))
        results["new_plain"].append(rate(n, lambda: write_new(store, plain)))
        results["new_binary"].append(rate(n, lambda: write_new(store, binary)))
    engine.dispose()
    return {k: median(v) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    text = b"".join(f"line {i} of plain text output\n".encode() for i in range(500_000))
    split: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(args.repeat):
        split["old"].append(rate(500_000, lambda: old_split(text, 64 * 1024)))
        split["new"].append(rate(500_000, lambda: new_split(text, 64 * 1024)))
    out: dict[str, Any] = {
        "command": command_line(),
        "split_lines_per_s": {k: median(v) for k, v in split.items()},
    }
    with scratch_database(args.database_url) as url:
        out["postgresql"] = measure_writes(url, args.lines, args.repeat)
    with tempfile.TemporaryDirectory() as home:
        out["sqlite"] = measure_writes(
            f"sqlite:///{os.path.join(home, 'h.sqlite')}", args.lines, args.repeat
        )
    if args.json:
        print(json.dumps(out))
        return
    print(f"{'what':<32}{'baseline':>12}{'new':>12}{'ratio':>8}")
    s = out["split_lines_per_s"]
    print(f"{'split, lines/s':<32}{s['old']:>12.0f}{s['new']:>12.0f}{s['new'] / s['old']:>8.2f}")
    for db in ("postgresql", "sqlite"):
        r = out[db]
        for kind in ("plain", "binary"):
            label = f"{db} write {kind}, lines/s"
            ratio = r[f"new_{kind}"] / r["old_plain"]
            print(f"{label:<32}{r['old_plain']:>12.0f}{r[f'new_{kind}']:>12.0f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
