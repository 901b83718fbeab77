"""The layers of docs/architecture.md hold: who may import whom, and no path tricks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tutorial_harness import REPO

PACKAGES = ("tutorial_kit", "tutorial_harness")


def python_files() -> list[Path]:
    skip = (".venv", ".nox", "build", "node_modules")
    return [p for p in REPO.rglob("*.py") if not any(part in skip for part in p.parts)]


def imports_of(path: Path) -> set[str]:
    """The modules of this repository's packages that ``path`` imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module in PACKAGES:  # from tutorial_kit import database: a module each
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(n for n in names if n.split(".")[0] in PACKAGES)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_no_sys_path_manipulation() -> None:
    found = [str(p.relative_to(REPO)) for p in python_files()
             if re.search(r"sys\.path\s*(\.insert|\.append|\[|\+?=)", p.read_text())]
    assert not found, f"import it as a package instead: {found}"


def test_the_learners_package_never_imports_the_harness() -> None:
    found = {module_name(p): sorted(m for m in imports_of(p) if m.startswith("tutorial_harness"))
             for p in (REPO / "tutorial_kit").rglob("*.py")}
    assert not {k: v for k, v in found.items() if v}, (
        "tutorial_kit is what a learner's kernel imports; the harness is for contributors")


def test_no_import_circle_in_tutorial_kit() -> None:
    modules = {module_name(p): p for p in (REPO / "tutorial_kit").rglob("*.py")}
    graph = {name: {m for m in imports_of(path) if m in modules and m != name}
             for name, path in modules.items()}

    def circle_from(start: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph[path[-1]]):
            if nxt == start:
                return [*path, nxt]
            if nxt not in path and (found := circle_from(start, [*path, nxt])):
                return found
        return None

    circles = [c for name in sorted(graph) if (c := circle_from(name, [name]))]
    assert not circles, " -> ".join(circles[0])


def test_setup_problems_is_the_bottom_layer() -> None:
    """The catalogue imports nothing of the tutorial's, so every module may use it."""
    assert not imports_of(REPO / "tutorial_kit" / "setup_problems.py")
