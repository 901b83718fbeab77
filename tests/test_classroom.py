"""Classroom tooling: student copies, both directions of the exercise checks,
HTML handouts, and the one-command database reset."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import READER_SNAPSHOT_SQL, kernel_env
from make_student import main as make_student
from notebook_runner import notebook_paths, run_notebook

from tutorial_kit.database import start_embedded
from tutorial_kit.schema import MARKER

REPO = Path(__file__).resolve().parent.parent
LESSONS = [p for p in notebook_paths() if int(p.name[:2]) >= 2]


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return cell.metadata.get("tags", [])


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("student")
    assert make_student(out) == 0
    return out / "notebooks"


def test_student_copies_have_no_solutions(student_dir: Path) -> None:
    copies = sorted(student_dir.glob("*.ipynb"))
    assert [p.name for p in copies] == [p.name for p in notebook_paths()]
    for copy in copies:
        nb = nbformat.read(copy, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert not [c for c in nb.cells if "solution" in tags(c)], f"{copy.name}: solution left"
        original = nbformat.read(REPO / "notebooks" / copy.name, as_version=4)
        for tag in ("exercise", "scaffold", "check"):
            assert sum(tag in tags(c) for c in nb.cells) == sum(
                tag in tags(c) for c in original.cells), f"{copy.name}: lost a {tag} cell"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.notebooks
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_check_fails_friendly_without_solutions(path: Path, student_dir: Path,
                                                      embedded_pgdata: Path) -> None:
    """Student copy: each check cell fails with one line of advice, and only check cells fail."""
    start_embedded(embedded_pgdata)
    copy = student_dir / path.name
    run = asyncio.run(run_notebook(copy, env=kernel_env(TUTORIAL_PGDATA=str(embedded_pgdata)),
                                   allow_errors=True))
    for i, cell in enumerate(run.nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "check" in tags(cell):
            assert errors, f"cell {i}: the check passed with no solution"
            err = errors[0]
            assert err.ename == "ExerciseNotDone", f"cell {i}: {err.ename}: {err.evalue}"
            assert len(err.traceback) == 1, f"cell {i}: a traceback wall, not one friendly line"
        else:
            assert not errors, f"cell {i} fails without the solutions: {errors[0].evalue}"


def test_make_html_renders_executed_notebooks(embedded_pgdata: Path) -> None:
    start_embedded(embedded_pgdata)
    env = kernel_env(TUTORIAL_PGDATA=str(embedded_pgdata))
    nb = REPO / "notebooks" / "01_seed_example.ipynb"
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "build_html.py"), str(nb)],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    html = (REPO / "build" / "html" / "01_seed_example.html").read_text()
    assert "MissingGreenlet: greenlet_spawn has not been called" in html
    assert "CREATE TABLE a" in html and "round trip" in html
    assert (REPO / "build" / "html" / "index.html").exists()


def test_reset_db_drops_only_tutorial_schemas(password_server, reader_snapshot: str) -> None:
    password_server.psql(
        f"CREATE SCHEMA tutorial_99; COMMENT ON SCHEMA tutorial_99 IS '{MARKER}';"
        "CREATE TABLE tutorial_99.t (x int); CREATE SCHEMA tutorial_mine; "
        "CREATE TABLE tutorial_mine.keep (x int)"
    )
    env = {**os.environ, "DATABASE_URL": password_server.url}
    out = subprocess.run([sys.executable, "-m", "tutorial_kit", "reset"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "tutorial_99" in out.stdout
    schemas = password_server.psql("SELECT string_agg(nspname, ',' ORDER BY nspname) "
                                   "FROM pg_namespace WHERE nspname LIKE 'tutorial%'")
    assert schemas == "tutorial_mine", "reset must drop tutorial schemas and nothing else"
    assert password_server.psql(READER_SNAPSHOT_SQL) == reader_snapshot
    password_server.psql("DROP SCHEMA tutorial_mine CASCADE")
