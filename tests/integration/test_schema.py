"""The migrations create exactly the ORM metadata, on PostgreSQL and SQLite."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hodei.store.engine import create_engine
from hodei.store.migrate import current_revision, head_revision, upgrade
from hodei.store.tables import metadata


def _diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


@pytest.mark.postgres
def test_postgres_schema_matches_the_metadata(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    assert current_revision(engine) == head_revision()
    assert _diff(engine) == []
    with engine.connect() as conn:
        views = set(sa.inspect(conn).get_view_names())
        id_type = conn.exec_driver_sql(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name='jobs' AND column_name='id'"
        ).scalar()
    assert {"job_queue", "audit_logs"} <= views
    assert id_type == "uuid"
    engine.dispose()


def test_sqlite_schema_matches_the_metadata(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'h.sqlite'}")
    upgrade(engine)
    assert _diff(engine) == []
    with engine.connect() as conn:
        assert {"job_queue", "audit_logs"} <= set(sa.inspect(conn).get_view_names())
        local = conn.exec_driver_sql("SELECT name FROM provider_configs").scalars().all()
    assert local == ["local"]
    engine.dispose()


def test_a_second_upgrade_changes_nothing(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'h.sqlite'}")
    assert upgrade(engine) == upgrade(engine) == head_revision()
    engine.dispose()
