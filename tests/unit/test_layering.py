"""domain/ and services/ (with their subpackages: services/jobs/, fleet/, ...) import no
infrastructure (docs/architecture.md, "Layers")."""

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
            PACKAGE / "core.py",  # the facade composes use cases over the ports
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
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


# domain/ and services/ may use only each other and the error types: a list of what is
# forbidden missed hodei.settings (services/fleet imported it for mask_url), and would
# miss the next outer module too.
CORE_MAY_IMPORT = ("hodei.domain", "hodei.services", "hodei.errors")


def _outer_hodei_imports(path: Path) -> list[str]:
    return sorted(
        name
        for name in _imports(path)
        if (name == "hodei" or name.startswith("hodei."))
        and not any(name == m or name.startswith(m + ".") for m in CORE_MAY_IMPORT)
    )


@pytest.mark.parametrize(
    "path",
    sorted(
        [*PACKAGE.joinpath("domain").rglob("*.py"), *PACKAGE.joinpath("services").rglob("*.py")]
    ),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_core_layers_import_only_domain_services_and_errors(path: Path) -> None:
    bad = _outer_hodei_imports(path)
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_the_core_rule_would_catch_settings(tmp_path: Path) -> None:
    offender = tmp_path / "bad.py"
    offender.write_text("from hodei.settings import mask_url\nfrom hodei.errors import Conflict\n")
    assert _outer_hodei_imports(offender) == ["hodei.settings"]


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


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The hodei modules ``path`` imports when it runs, in functions too (an import
    put inside a function to dodge a cycle is still one); ``if TYPE_CHECKING:`` blocks
    are left out, they never run."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found & modules


def _import_graph() -> dict[str, set[str]]:
    """Each hodei module and the hodei modules it imports when it runs."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _runtime_imports(path, set(paths)) - {name} for name, path in paths.items()}
    # A package imports its __init__ first: that edge is no cycle of ours.
    return {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                walk(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    return cycles


def test_no_import_cycle_in_hodei() -> None:
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_would_catch_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


# The entry points: the CLI, the SDK (its local backend), the API and metrics servers,
# and the worker process behind `hodei worker start` (Celery's entry point for hodei).
ENTRY_POINTS = (
    "hodei.cli",
    "hodei.sdk",
    "hodei.api",
    "hodei.observability.server",
    "hodei.runtime.worker",
)


def _wiring_importers(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        name
        for name, deps in graph.items()
        if "hodei.bootstrap" in deps
        and not any(name == e or name.startswith(e + ".") for e in ENTRY_POINTS)
    )


def test_only_entry_points_import_the_wiring() -> None:
    """Components get what they need handed over; only an entry point builds it."""
    assert _wiring_importers(_import_graph()) == []


def test_the_wiring_check_would_catch_a_component() -> None:
    graph = {"hodei.cli.jobs": {"hodei.bootstrap"}, "hodei.queueing.tasks": {"hodei.bootstrap"}}
    assert _wiring_importers(graph) == ["hodei.queueing.tasks"]
