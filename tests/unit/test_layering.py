"""domain/ and services/ import no infrastructure (docs/architecture.md, "Layers")."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hodei"
FORBIDDEN = (
    "sqlalchemy",
    "alembic",
    "celery",
    "kombu",
    "redis",
    "psycopg",
    "docker",
    "kubernetes",
    "click",
    "hodei.store",
    "hodei.queueing",
    "hodei.providers",
    "hodei.runtime",
    "hodei.cli",
    "hodei.sdk",
    "hodei.bootstrap",
)
STDLIB_ONLY = ("hodei.domain",)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path",
    sorted(
        [
            *PACKAGE.joinpath("domain").rglob("*.py"),
            *PACKAGE.joinpath("services").rglob("*.py"),
            PACKAGE / "testing.py",  # the shipped fakes run on a bare machine
        ]
    ),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_core_layers_import_no_infrastructure(path: Path) -> None:
    bad = sorted(
        name
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.joinpath("domain").rglob("*.py")), ids=lambda p: p.name
)
def test_domain_is_stdlib_only(path: Path) -> None:
    import sys

    third_party = sorted(
        name
        for name in _imports(path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in ("hodei", "__future__")
    )
    assert not third_party, f"{path.name} imports {third_party}"


def test_the_rule_would_catch_a_violation(tmp_path: Path) -> None:
    offender = tmp_path / "bad.py"
    offender.write_text("import sqlalchemy\nfrom celery import Celery\n")
    assert {"sqlalchemy", "celery"} <= _imports(offender)
