"""A private PostgreSQL server that a test or benchmark may stop and start: an outage
without touching the shared server. Uses Debian's PostgreSQL 15 binaries (``initdb``,
``pg_ctl``) on a free port in a temporary directory; as root it runs them as the
``postgres`` user, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

BINDIR = Path(os.environ.get("HODEI_TEST_PG_BINDIR", "/usr/lib/postgresql/15/bin"))


def available() -> bool:
    """True when this machine has the binaries (and a ``postgres`` user if root)."""
    if not (BINDIR / "initdb").exists() or not (BINDIR / "pg_ctl").exists():
        return False
    if os.geteuid() != 0:
        return True
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivatePostgres:
    """``start()`` once, then ``stop()``/``start()`` for outages, ``destroy()`` at the end."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hodei-private-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_postgres: dict[str, Any] = {}
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as_postgres = {"user": "postgres", "group": "postgres"}
        self._run(BINDIR / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(BINDIR / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-o", options, "start")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, new ones refused."""
        self._run(BINDIR / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        """Create ``name`` and return its URL."""
        import sqlalchemy as sa

        admin = sa.create_engine(
            self.admin_url.replace("postgresql://", "postgresql+psycopg://"),
            isolation_level="AUTOCOMMIT",
            poolclass=sa.pool.NullPool,
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(BINDIR / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                check=False,
                **self._as_postgres,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *argv: object) -> None:
        done = subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, check=False, **self._as_postgres
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
