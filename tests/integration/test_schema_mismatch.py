"""A schema changed by hand while the migration table says head: `db current`, readiness
and every command say so in one line, with exit code 6, instead of an SQL dump."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from hodei.errors import SchemaOutOfDate
from hodei.settings import Settings
from tests.support import fast_settings, run_cli

RENAME = "ALTER TABLE jobs RENAME COLUMN failure_reason TO failure_cause"
DIFFERENCE = "column jobs.failure_reason is missing; column jobs.failure_cause is not expected"


def _one_line(result: object, *words: str) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == SchemaOutOfDate.exit_code == 6, stderr  # type: ignore[attr-defined]
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hodei: error: "), stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_db_current_exits_6_until_the_database_is_upgraded(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "home")
    settings.home.mkdir()
    before = run_cli(settings, "db", "current")
    _one_line(before, "no hodei schema yet", "run `hodei db upgrade`")
    assert "current: none" in before.stdout
    assert run_cli(settings, "db", "upgrade").returncode == 0
    after = run_cli(settings, "db", "current")
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines()[-1] == "up to date: the tables match"


def test_a_hand_renamed_column_is_named_on_sqlite(embedded_settings: Settings) -> None:
    settings = embedded_settings
    assert run_cli(settings, "db", "upgrade").returncode == 0
    with sqlite3.connect(settings.home / "hodei.sqlite") as connection:
        connection.execute(RENAME)

    _one_line(run_cli(settings, "db", "current"), "at revision", DIFFERENCE)
    quiet = run_cli(settings, "db", "current", "--check")
    _one_line(quiet, DIFFERENCE)
    assert quiet.stdout == ""
    for command in (["job", "list"], ["doctor"], ["job", "submit", "--", "true"]):
        _one_line(
            run_cli(settings, *command),
            "the database schema does not match",
            "hodei db current --check",
        )


def test_readiness_names_the_difference(embedded_settings: Settings) -> None:
    from hodei.bootstrap import Container
    from hodei.observability.health import HealthChecker

    container = Container(embedded_settings)
    container.ensure_schema()
    checker = HealthChecker(container.engine, container.app)
    assert checker.check_database().ok
    with container.engine.begin() as connection:
        connection.exec_driver_sql(RENAME)
    checker = HealthChecker(container.engine, container.app)
    result = checker.check_database()
    assert not result.ok
    assert result.error is not None and DIFFERENCE in result.error
    container.close()


@pytest.mark.postgres
def test_a_hand_renamed_column_is_one_line_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    settings = fast_settings(tmp_path / "home", database_url=postgres_url)
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.exec_driver_sql(RENAME)
    engine.dispose()
    _one_line(run_cli(settings, "db", "current"), DIFFERENCE)
    _one_line(run_cli(settings, "job", "list"), "the database schema does not match")


@pytest.mark.postgres
def test_status_on_a_database_not_migrated_names_it(tmp_path: Path, postgres_url: str) -> None:
    # `hodei status` exited 6 with only "no hodei schema yet": not which database, the
    # first thing it prints when all is well.
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    url = sa.engine.make_url(postgres_url).set(password="s3cretpw")  # trust: any is taken
    settings = fast_settings(tmp_path / "home", database_url=url.render_as_string(False))
    shown = url.render_as_string(hide_password=True)
    assert "s3cretpw" not in shown and "***" in shown
    text = run_cli(settings, "status")
    _one_line(text, "no hodei schema yet", "run `hodei db upgrade`", f"(database: {shown})")
    assert text.stdout.splitlines()[0] == f"database: {shown}"
    as_json = run_cli(settings, "status", "--output", "json")
    _one_line(as_json, "no hodei schema yet", f"(database: {shown})")
    assert as_json.stdout == ""
    assert "s3cretpw" not in text.stdout + text.stderr + as_json.stderr
