"""Schema migrations through alembic: upgrade, current revision, and the startup check."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from hodei.errors import SchemaOutOfDate
from hodei.store.engine import database_errors
from hodei.store.schema_version import migrations_dir

logger = logging.getLogger(__name__)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when it was never migrated)."""
    with database_errors(), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate the database to ``revision``; returns the revision it is at afterwards."""
    config = _config()
    with database_errors(), engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    current = current_revision(engine)
    logger.info("database at revision %s", current)
    return current or ""


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    """Make sure the schema is current: migrate it (embedded default) or say how to."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    if auto_upgrade:
        upgrade(engine)
        return
    raise SchemaOutOfDate(revision_gap(current, head))


def revision_gap(current: str | None, head: str) -> str:
    """Why the schema is not current, and what to run, in one line."""
    if current is None:
        return f"the database has no hodei schema yet (hodei needs {head}): run `hodei db upgrade`"
    if not _known(current):
        return f"the database is at revision {current}, which this hodei (at {head}) does not know"
    return f"the database is at revision {current}, hodei needs {head}: run `hodei db upgrade`"


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for an unknown revision
        return False


def table_exists(engine: Engine, name: str) -> bool:
    with database_errors():
        return sa.inspect(engine).has_table(name)
