"""Classroom tooling: the database reset, the instructor's `class` commands, and two
learners running one notebook at once on one server (per-learner schemas).

The exercise builds (student and instructor copies) are tested in test_exercises.py."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import nbformat
import pytest

from tutorial_harness import REPO
from tutorial_harness.pg_server import READER_SNAPSHOT_SQL, PasswordServer
from tutorial_harness.runner import (
    NotebookRun,
    kernel_env,
    notebook_paths,
    run_notebook,
    stderr_problems,
)
from tutorial_kit.schema import MARKER, Learner, learner_schema, marker_comment

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


def tutorial_kit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tutorial_kit", *args],
                          env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def make_schema(server, name: str, learner: str | None) -> None:
    comment = marker_comment(Learner(learner) if learner else None)
    server.psql(f"CREATE SCHEMA {name}; COMMENT ON SCHEMA {name} IS '{comment}';"
                f"CREATE TABLE {name}.t AS SELECT g AS x FROM generate_series(1, 1000) g")


def tutorial_names(server) -> str:
    return server.psql("SELECT string_agg(nspname, ',' ORDER BY nspname) "
                       "FROM pg_namespace WHERE nspname LIKE 'tutorial%'")


def test_reset_db_keeps_other_learners_schemas(password_server, reader_snapshot: str) -> None:
    """On a shared server, make reset-db drops only the current learner's schemas."""
    for name, learner in [("tutorial_04_alice", "alice"), ("tutorial_05_alice", "alice"),
                          ("tutorial_04_bob", "bob")]:
        make_schema(password_server, name, learner)
    out = tutorial_kit("reset", DATABASE_URL=password_server.url, JUPYTERHUB_USER="alice")
    assert out.returncode == 0, out.stderr
    assert "tutorial_04_alice, tutorial_05_alice" in out.stdout
    assert "Kept 1 other learners'" in out.stdout
    assert tutorial_names(password_server) == "tutorial_04_bob"
    password_server.psql("DROP SCHEMA tutorial_04_bob CASCADE")
    assert password_server.psql(READER_SNAPSHOT_SQL) == reader_snapshot


def test_class_list_drop_and_budget(password_server, reader_snapshot: str) -> None:
    jane = learner_schema("04", "jane.doe@uni.edu")
    for name, learner in [("tutorial_04_alice", "alice"), (jane, "jane.doe@uni.edu"),
                          ("tutorial_05_bob", "bob")]:
        make_schema(password_server, name, learner)
    password_server.psql("CREATE SCHEMA tutorial_04_mallory; "
                         "CREATE TABLE tutorial_04_mallory.t (x int)")
    url = password_server.url
    try:
        listed = tutorial_kit("class", "list", DATABASE_URL=url)
        assert listed.returncode == 0, listed.stderr
        assert "jane.doe@uni.edu" in listed.stdout and jane in listed.stdout
        assert "3 learner(s), 3 schema(s)" in listed.stdout
        assert "mallory" not in listed.stdout, "an unmarked schema is not the tutorial's"
        assert re.search(r"tutorial_04_alice\s+\d+\.\d kB", listed.stdout), listed.stdout

        refused = tutorial_kit("class", "drop", "--learner", "jane.doe@uni.edu", DATABASE_URL=url)
        assert refused.returncode == 1 and "--yes" in refused.stderr
        assert jane in tutorial_names(password_server)

        dropped = tutorial_kit("class", "drop", "--learner", "jane.doe@uni.edu", "--yes",
                               DATABASE_URL=url)
        assert dropped.returncode == 0, dropped.stderr
        assert tutorial_names(password_server) == (
            "tutorial_04_alice,tutorial_04_mallory,tutorial_05_bob")

        refused = tutorial_kit("class", "drop", "--all", DATABASE_URL=url)
        assert refused.returncode == 1 and "Nothing dropped" in refused.stderr
        dropped = tutorial_kit("class", "drop", "--all", "--yes", DATABASE_URL=url)
        assert dropped.returncode == 0, dropped.stderr
        assert tutorial_names(password_server) == "tutorial_04_mallory", "only marked schemas go"

        budget = tutorial_kit("class", "budget", "--learners", "30", DATABASE_URL=url)
        assert budget.returncode == 0, budget.stderr
        max_conn = password_server.psql("SHOW max_connections")
        assert f"max_connections = {max_conn}" in budget.stdout
        assert "30 × 2 + " in budget.stdout and "shared connection slots" in budget.stdout
    finally:
        password_server.psql("DROP SCHEMA IF EXISTS tutorial_04_mallory CASCADE")
    assert password_server.psql(READER_SNAPSHOT_SQL) == reader_snapshot


def isolation_notebook() -> Path:
    """A quick lesson that already takes its schema from learner_schema()."""
    for path in notebook_paths():
        if path.name.startswith(("02_", "04_")) and "learner_schema(" in path.read_text():
            return path
    pytest.fail("neither 02 nor 04 uses learner_schema(): per-learner isolation is missing")


@pytest.mark.notebooks
@pytest.mark.asyncio
async def test_two_learners_run_one_notebook_at_once(password_server,
                                                     reader_snapshot: str) -> None:
    """alice and bob run the same notebook at the same moment on one server: both clean."""
    path = isolation_notebook()
    lesson = path.name[:2]

    spans: dict[str, tuple[float, float]] = {}

    async def learner(who: str) -> NotebookRun:
        env = kernel_env(DATABASE_URL=password_server.url, JUPYTERHUB_USER=who)
        start = time.monotonic()
        run = await run_notebook(path, env=env, passes=2)  # raises on any error output
        spans[who] = (start, time.monotonic())
        return run

    for run in await asyncio.gather(learner("alice"), learner("bob")):
        assert not stderr_problems(run.nb)
    (a0, a1), (b0, b1) = spans["alice"], spans["bob"]
    assert max(a0, b0) < min(a1, b1), "the two learners' kernels did not run at the same time"
    schemas = password_server.psql(
        "SELECT string_agg(nspname || '=' || obj_description(oid, 'pg_namespace'), '|' "
        f"ORDER BY nspname) FROM pg_namespace WHERE nspname LIKE 'tutorial_{lesson}_%'")
    assert schemas.split("|") == [f"tutorial_{lesson}_{who}={marker_comment(Learner(who))}"
                                  for who in ("alice", "bob")]
    dropped = tutorial_kit("class", "drop", "--all", "--yes", DATABASE_URL=password_server.url)
    assert dropped.returncode == 0, dropped.stderr
    assert password_server.psql(READER_SNAPSHOT_SQL) == reader_snapshot


@pytest.mark.asyncio
async def test_a_full_server_gets_one_paragraph_naming_the_budget() -> None:
    """At max_connections, `make db`/a notebook's first cell say so, with the budget."""
    with PasswordServer() as server:
        # 5 slots, 3 of them reserved for superusers: the test role (postgres) is one.
        server.psql("ALTER SYSTEM SET max_connections = 5")
        subprocess.run([str(server.bin / "pg_ctl"), "-D", str(server.data), "-w", "-m", "fast",
                        "restart", "-l", str(server.dir / "log"), "-o",
                        f"-h 127.0.0.1 -p {server.port} -k {server.dir}"],
                       user=server.user, check=True, capture_output=True, timeout=120)
        holders = []
        try:
            while True:  # take every slot there is
                try:
                    holders.append(await asyncpg.connect(
                        server.url.replace("postgresql+asyncpg", "postgresql")))
                except asyncpg.TooManyConnectionsError:
                    break
            assert len(holders) == 5
            out = await asyncio.to_thread(tutorial_kit, "url", DATABASE_URL=server.url)
        finally:
            for conn in holders:
                await conn.close()
    assert out.returncode == 2
    message = out.stderr.strip()
    assert "Traceback" not in message and "\n" not in message
    assert "max_connections" in message and "class budget --learners N" in message
    assert "harness-secret" not in message, "never print the password"
