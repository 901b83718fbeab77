"""Classroom tooling: the one-command database reset.

The exercise builds (student and instructor copies) are tested in test_exercises.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
from conftest import READER_SNAPSHOT_SQL
from notebook_runner import notebook_paths

from tutorial_kit.schema import MARKER

REPO = Path(__file__).resolve().parent.parent
LESSONS = [p for p in notebook_paths() if int(p.name[:2]) >= 2]


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return cell.metadata.get("tags", [])


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
