"""The files in tests/claims/: well formed, and each `source:` names real installed code.

A claim about a library's behaviour is only as good as the reading behind it, so its
entry names the installed file and function it was checked against
(``source: sqlalchemy/orm/persistence.py::_emit_update_statements``; the standard library as
``stdlib/asyncio/runners.py::run``; PostgreSQL and PgBouncer by their documentation's
address). This test keeps
those names honest: the file exists in this environment's site-packages and each dotted
part of the name is a ``def`` or ``class`` in it. The readings are of the pinned versions
(requirements.txt), so this test runs in the main environment only; the matrix's SQLAlchemy
2.0 row checks the claims' outputs, not these names (2.0 keeps some code elsewhere, e.g.
``util/_concurrency_py3k.py``). It runs without a database.
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

import pytest
import yaml

from tutorial_harness import REPO
from tutorial_harness.lessons import lessons

CLAIMS = REPO / "tests" / "claims"
NOTEBOOKS = REPO / "notebooks"
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
STDLIB = Path(sysconfig.get_paths()["stdlib"])
# PostgreSQL and PgBouncer are not Python: a claim about them names their documentation.
DOCS = ("https://www.postgresql.org/docs/", "https://www.pgbouncer.org/")
KEYS = {"claim", "pattern", "min", "max", "equal", "source"}
CLAIM_FILES = sorted(CLAIMS.glob("*.yml"))


def entries(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text()) or []


def sources(entry: dict) -> list[str]:
    value = entry.get("source") or []
    return [value] if isinstance(value, str) else list(value)


def defines(code: str, name: str) -> bool:
    """True if ``code`` has ``def name``/``async def name``/``class name`` (Cython too)."""
    return re.search(rf"^\s*(?:async\s+def|c?p?def|class|cdef\s+class)\s+(?:\w+\s+)?{name}\b",
                     code, re.M) is not None


def source_problem(source: str) -> str | None:
    if source.startswith(DOCS):
        return None
    path, sep, name = source.partition("::")
    if not sep or not name:
        return (f"{source!r}: expected '<file under site-packages>::<function or Class.method>',"
                f" 'stdlib/<file>::<name>' or a documentation page under {DOCS}")
    file = STDLIB / path.removeprefix("stdlib/") if path.startswith("stdlib/") else (
        SITE_PACKAGES / path)
    if not file.is_file():
        return f"{source!r}: {path} is not an installed file"
    code = file.read_text(errors="replace")
    missing = [part for part in name.split(".") if not defines(code, part)]
    if missing:
        return f"{source!r}: no def/class {', '.join(missing)} in {path}"
    return None


def test_every_lesson_has_a_claims_file() -> None:
    """A lesson's sentences that outputs back are asserted on every run: none is exempt."""
    missing = [lesson.path.stem for lesson in lessons()
               if not (CLAIMS / f"{lesson.path.stem}.yml").is_file()]
    assert not missing, f"write tests/claims/<stem>.yml (tests/claims/README.md) for {missing}"


def test_every_claims_file_belongs_to_a_notebook() -> None:
    stems = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    orphans = [p.name for p in CLAIM_FILES if p.stem not in stems]
    assert not orphans, f"claims for notebooks that do not exist: {orphans}"


@pytest.mark.parametrize("path", CLAIM_FILES, ids=[p.stem for p in CLAIM_FILES])
def test_claims_are_well_formed(path: Path) -> None:
    problems = []
    for entry in entries(path):
        unknown = set(entry) - KEYS
        if unknown:
            problems.append(f"{entry.get('claim')!r}: unknown keys {sorted(unknown)}")
        if not entry.get("claim") or not entry.get("pattern"):
            problems.append(f"{entry!r}: needs both 'claim' and 'pattern'")
            continue
        groups = set(re.compile(entry["pattern"]).groupindex)
        named = set(entry.get("min") or {}) | set(entry.get("max") or {})
        named |= {g for pair in entry.get("equal") or [] for g in pair}
        if named - groups:
            problems.append(f"{entry['claim']!r}: bounds on groups the pattern lacks "
                            f"{sorted(named - groups)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", CLAIM_FILES, ids=[p.stem for p in CLAIM_FILES])
def test_claim_sources_name_installed_code(path: Path) -> None:
    problems = [problem for entry in entries(path) for source in sources(entry)
                if (problem := source_problem(source))]
    assert not problems, "\n".join(problems)


def test_source_problem_finds_real_and_missing_names() -> None:
    assert source_problem("sqlalchemy/orm/persistence.py::_emit_update_statements") is None
    assert source_problem("sqlalchemy/orm/persistence.py::no_such_function")
    assert source_problem("sqlalchemy/orm/no_such_file.py::x")
    assert source_problem("sqlalchemy/orm/persistence.py")
    assert source_problem("stdlib/asyncio/runners.py::run") is None
    assert source_problem("stdlib/asyncio/runners.py::no_such_function")
    assert source_problem("https://www.pgbouncer.org/config.html#pool_mode") is None
    assert source_problem("https://example.com/blog")
