"""The floors of docs/architecture.md hold: no module of app/ imports above its own floor."""

from __future__ import annotations

import ast
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
