"""The alembic-free schema check agrees with alembic, and says "current" only when sure."""

from __future__ import annotations

from pathlib import Path

from hodei.store.engine import create_engine
from hodei.store.migrate import head_revision, upgrade
from hodei.store.schema_version import is_current, migrations_dir, script_head


def test_the_scripts_head_is_alembics_head() -> None:
    assert script_head(migrations_dir()) == head_revision()


def test_two_heads_are_no_plain_answer(tmp_path: Path) -> None:
    (tmp_path / "versions").mkdir()
    for name, revision in (("a", "0002"), ("b", "0003")):
        (tmp_path / "versions" / f"{name}.py").write_text(
            f'revision = "{revision}"\ndown_revision = "0001"\n'
        )
    assert script_head(tmp_path) is None


def test_an_empty_database_is_not_current_and_a_migrated_one_is(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'hodei.db'}")
    try:
        assert not is_current(engine)
        upgrade(engine)
        assert is_current(engine)
    finally:
        engine.dispose()
