"""The floors of docs/architecture.md hold: no module of app/ imports above its own floor."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from app.config import REPO_ROOT

APP = REPO_ROOT / "app"

# Unit of code -> floor. A module may import its own unit or any unit on a lower floor.
FLOORS = {
    "app.domain": 0,
    "app.config": 1,
    "app.contracts": 2,
    "app.core": 2,
    "app.db": 3,
    "app.kafka": 3,
    "app.auth": 3,
    "app.jobs": 4,
    "app.stream": 5,
    "app.delivery": 5,
    "app.portal": 6,
    "entry points": 7,
}
ENTRY_POINTS = ("app.agents", "app.tables", "app.tasks", "app.cli")


def unit_of(module: str) -> str:
    if module.startswith(ENTRY_POINTS):
        return "entry points"
    for unit in FLOORS:
        if module == unit or module.startswith(unit + "."):
            return unit
    raise AssertionError(f"{module} belongs to no floor of docs/architecture.md")


def module_of(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module of ours this file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "app":
                found |= {f"app.{alias.name}" for alias in node.names}
            elif node.module.startswith("app."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("app.")}
    return found


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(APP.rglob("*.py")):
        importer = module_of(path)
        if importer == "app":
            continue
        own = unit_of(importer)
        for imported in sorted(imports_of(path)):
            theirs = unit_of(imported)
            if theirs != own and FLOORS[theirs] >= FLOORS[own]:
                problems.append(f"{importer} ({own}) imports {imported} ({theirs})")
    return problems


def test_no_module_imports_above_its_floor() -> None:
    assert upward_imports() == []


def test_every_module_has_a_floor() -> None:
    modules = [module_of(path) for path in APP.rglob("*.py") if module_of(path) != "app"]
    assert len(modules) > 80
    assert {unit_of(module) for module in modules} == set(FLOORS)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The rule is only as good as its parsing: a function-level import must be found too.
    source = tmp_path / "example.py"
    source.write_text("def f():\n    from app.portal.app import create_app\n")
    assert imports_of(source) == {"app.portal.app"}
    assert FLOORS[unit_of("app.portal.app")] > FLOORS[unit_of("app.db.models")]


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of app/ it imports (at the top or inside a function)."""
    paths = {module_of(path): path for path in APP.rglob("*.py")}
    return {
        module: {imported for imported in imports_of(path) if imported in paths} - {module}
        for module, path in paths.items()
    }


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round a circle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            if group:
                circles.append(sorted([module, *group]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_modules_import_each_other() -> None:
    assert import_circles(import_graph()) == []


def test_the_circle_check_sees_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]


def modules_off_the_map(doc: str, modules: list[Path]) -> list[str]:
    """Modules of app/ that docs/architecture.md does not name in their package's entry."""
    holds = doc.split("### What each package holds", 1)[1].split("\n## ", 1)[0]
    entries = {
        match.group(1): entry
        for entry in holds.split("\n- ")
        if (match := re.match(r"\*\*`(\w+)/`\*\*", entry.strip()))
    }
    missing = []
    for path in modules:
        parts = path.relative_to(APP).parts
        if path.name == "__init__.py" or "migrations" in parts:
            continue
        if len(parts) == 1:  # the entry points and the settings: anywhere on the page
            named = f"`{path.name}`" in doc or f"`app/{path.name}`" in doc
        else:
            named = f"`{path.name}`" in entries.get(parts[0], "")
        if not named:
            missing.append(str(path.relative_to(REPO_ROOT)))
    return missing


def test_every_module_is_on_the_map() -> None:
    doc = (REPO_ROOT / "docs/architecture.md").read_text()
    assert modules_off_the_map(doc, sorted(APP.rglob("*.py"))) == []


def test_the_map_check_sees_a_module_left_out() -> None:
    doc = (REPO_ROOT / "docs/architecture.md").read_text()
    handoffs = APP / "stream" / "handoffs.py"
    assert modules_off_the_map(doc, [handoffs]) == []
    without = doc.replace("`handoffs.py`", "hand-offs")
    assert modules_off_the_map(without, [handoffs]) == ["app/stream/handoffs.py"]
    # Named under another package's entry does not count.
    assert modules_off_the_map(doc, [APP / "stream" / "campaign_pages.py"]) != []


def calls_of(path: Path, names: set[str]) -> set[str]:
    """Which of these functions the file calls (by name or attribute)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in names:
                found.add(name)
    return found


def test_only_the_session_module_creates_engines() -> None:
    # Alembic's env.py runs in migrations only, on a pool of its own. `create_session` is how
    # sqlalchemy-celery-beat's SessionManager builds an engine of its own.
    allowed = {APP / "db" / "session.py", APP / "db" / "migrations" / "env.py"}
    creators = [
        str(path.relative_to(REPO_ROOT))
        for path in sorted(APP.rglob("*.py"))
        if path not in allowed
        and calls_of(path, {"create_engine", "create_async_engine", "create_session"})
    ]
    assert creators == []


def route_modules_opening_sessions() -> list[str]:
    """Portal modules that declare routes and open a session themselves."""
    return [
        str(path.relative_to(REPO_ROOT))
        for path in sorted((APP / "portal").glob("*.py"))
        if "APIRouter(" in path.read_text() and calls_of(path, {"session_scope"})
    ]


def test_routes_reach_the_database_through_the_dependency() -> None:
    # A route takes `db: DatabaseDep` and calls `await db.run(store_function, ...)`; a flow that
    # owns its transactions (app/jobs) is called as a whole, in the thread pool.
    assert route_modules_opening_sessions() == []
    database = (APP / "portal" / "database.py").read_text()
    assert "APIRouter(" not in database and calls_of(
        APP / "portal" / "database.py", {"session_scope"}
    )


# A word of the vocabulary is typed by its Literal wherever it is used; plain `str` only where
# it comes in from outside and is read with `one_of` (a CLI option, a form field, a message).
WORD_NAME = re.compile(r"(^|_)(status|kind|periodicity|role)$")
READ_FROM_OUTSIDE = {
    "app/cli/operators.py:dead_letters_list(status)",
    "app/domain/preferences.py:check_choice(kind)",
    "app/domain/vocabulary.py:outcome_of(status)",
    "app/tasks.py:plan_shard(periodicity)",
}


def words_typed_str(source: str, where: str) -> list[str]:
    """Parameters and class fields named like a vocabulary word but annotated `str`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [
                f"{where}:{node.name}({arg.arg})"
                for arg in node.args.args + node.args.kwonlyargs
                if WORD_NAME.search(arg.arg) and _plain_str(arg.annotation)
            ]
        elif isinstance(node, ast.ClassDef):
            found += [
                f"{where}:{node.name}.{item.target.id}"
                for item in node.body
                if isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
                and WORD_NAME.search(item.target.id)
                and _plain_str(item.annotation)
            ]
    return found


def _plain_str(annotation: ast.expr | None) -> bool:
    return annotation is not None and ast.unparse(annotation) in ("str", "str | None")


def test_vocabulary_words_are_typed_by_their_literal() -> None:
    typed_str = [
        hit
        for path in sorted(APP.rglob("*.py"))
        for hit in words_typed_str(path.read_text(), str(path.relative_to(REPO_ROOT)))
    ]
    # The health check's `status` is "ok", no word of the vocabulary.
    assert sorted(set(typed_str) - READ_FROM_OUTSIDE) == ["app/portal/api_models.py:Health.status"]
    assert set(typed_str) >= READ_FROM_OUTSIDE  # the exceptions are still there to be excused


def test_the_word_check_sees_a_status_typed_str() -> None:
    source = "class Row:\n    status: str\n\ndef f(*, kind: str | None, name: str) -> None: ...\n"
    assert words_typed_str(source, "x.py") == ["x.py:Row.status", "x.py:f(kind)"]


def imports_of_other_tests(source: str) -> list[str]:
    """Imports of a test module or conftest: tests share helpers through harness/ and fixtures."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith("tests")
        ):
            found.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("tests")]
    return found


def test_tests_share_helpers_only_through_the_harness() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT)): imports_of_other_tests(path.read_text())
        for path in (REPO_ROOT / "tests").rglob("*.py")
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_the_sharing_check_sees_a_test_importing_a_test() -> None:
    source = "from .conftest import SmtpSink\nfrom tests.integration.test_a import helper\n"
    assert imports_of_other_tests(source) == [".conftest", "tests.integration.test_a"]
    assert imports_of_other_tests("from harness.stream import event\n") == []


MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 300


def long_functions(source: str, where: str) -> list[str]:
    """Functions of `source` longer than MAX_FUNCTION_LINES, as `where:name (lines)`."""
    return [
        f"{where}:{node.name} ({node.end_lineno - node.lineno + 1})"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_functions_are_short() -> None:
    # Alembic's migrations are a record of the schema as it was, not code one reads to change.
    found = [
        problem
        for path in sorted(APP.rglob("*.py"))
        if "migrations" not in path.parts
        for problem in long_functions(path.read_text(), str(path.relative_to(REPO_ROOT)))
    ]
    assert found == []


def test_the_length_check_sees_a_long_function() -> None:
    source = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    assert long_functions(source, "m.py") == [f"m.py:f ({MAX_FUNCTION_LINES + 1})"]


def test_a_long_module_says_why_it_is_one_piece() -> None:
    unexplained = [
        str(path.relative_to(REPO_ROOT))
        for path in sorted(APP.rglob("*.py"))
        if "migrations" not in path.parts
        and len(path.read_text().splitlines()) > MAX_MODULE_LINES
        and "one module" not in (ast.get_docstring(ast.parse(path.read_text())) or "").lower()
    ]
    assert unexplained == []
