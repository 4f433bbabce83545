"""Whether the schema is at the newest migration, answered without importing alembic.

Every command checks the schema once; alembic's import was a tenth of a second of a
CLI command's start. This reads the migration scripts' ``revision`` and
``down_revision`` lines and the database's ``alembic_version`` row; whenever it cannot
answer "current" with certainty, :func:`hodei.store.migrate.ensure_schema` (alembic)
decides.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


def migrations_dir() -> Path:
    """Where the alembic scripts are: inside the wheel, or at the repository root."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("hodei's migrations are missing from this installation")


def script_head(directory: Path) -> str | None:
    """The one revision no script revises, or None if the scripts do not say plainly."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (directory / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or down is None:
            return None
        revisions.add(revision[1])
        revised.update(_QUOTED.findall(down[1]))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def is_current(engine: Engine) -> bool:
    """True only if the database is certainly at the scripts' head."""
    head = script_head(migrations_dir())
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            found = [str(v) for v in versions.scalars()]
    except sa.exc.DBAPIError:  # no table yet, or no database: alembic's check says which
        return False
    return found == [head]
