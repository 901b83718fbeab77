"""Execute every notebook: fresh kernel, then a rerun in the same kernel.

Each notebook runs against two servers: (a) the embedded PostgreSQL found with
no DATABASE_URL, and (b) a password-auth server given by DATABASE_URL that
already holds a reader's tables (public.a, public.b, ...), standing in for
compose or an existing server. Any error output fails; so do warnings on
stderr, server connections left open after a pass, and any change to the
reader's tables, and any exercise check that does not print "not yet" (the
committed notebooks hold no answers), or any claim listed in tests/claims/ that
the outputs no longer back. New notebooks are picked up with no new
test code.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tutorial_harness.pg_server import READER_SNAPSHOT_SQL
from tutorial_harness.pytest_plugin import skip_without_pgbouncer
from tutorial_harness.runner import (
    kernel_env,
    notebook_paths,
    run_notebook,
    stderr_problems,
)
from tutorial_kit.database import start_embedded
from tutorial_kit.exercises import printed_verdicts

NOTEBOOKS = notebook_paths()
CLAIMS = Path(__file__).resolve().parent / "claims"
OPEN_CONNECTIONS_SQL = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


async def open_connections(url: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(OPEN_CONNECTIONS_SQL))
    finally:
        await engine.dispose()


async def execute(path: Path, env: dict[str, str], url: str) -> None:
    leaks: list[str] = []

    async def after_pass(n: int) -> None:
        # Give the server a moment to notice closed sockets before counting.
        for _ in range(20):
            count = await open_connections(url)
            if count == 0:
                return
            await asyncio.sleep(0.1)
        leaks.append(f"pass {n + 1}: {count} server connection(s) still open at the end")

    run = await run_notebook(path, env=env, passes=2, after_pass=after_pass)
    assert not leaks, leaks
    problems = stderr_problems(run.nb)
    assert not problems, "stderr output a reader would see:\n" + "\n".join(problems)
    # The committed notebooks are the learner's: no exercise is answered in them.
    answered = [f"cell {i}: {line!r}" for i, line, verdict in printed_verdicts(run.nb.cells)
                if verdict != "not yet"]
    assert not answered, "every check should print its 'not yet' line:\n" + "\n".join(answered)
    wrong = claim_problems(path, run.nb)
    assert not wrong, "claims the outputs no longer back:\n" + "\n".join(wrong)


def output_text(nb) -> str:
    """Everything the code cells printed or displayed as text, in order."""
    parts = []
    for cell in nb.cells:
        # A cell's prints can arrive as several stream messages, split mid-line:
        # join them as printed, and put a line break only between cells and displays.
        text = ""
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text += out.get("text", "")
            elif "data" in out:
                text += "\n" + out["data"].get("text/plain", "") + "\n"
        parts.append(text)
    return "\n".join(parts)


def claim_problems(path: Path, nb) -> list[str]:
    """Check the claims listed in tests/claims/<notebook>.yml against the outputs.

    Each entry: ``claim`` (the sentence the notebook makes), ``pattern`` (a regex
    with named groups, searched in the outputs), and optionally ``min`` / ``max``
    (group -> number) and ``equal`` (pairs of groups that must match).
    """
    source = CLAIMS / f"{path.stem}.yml"
    if not source.exists():
        return []
    text = output_text(nb)
    problems = []
    for entry in yaml.safe_load(source.read_text()) or []:
        found = re.search(entry["pattern"], text, re.M)
        if found is None:
            problems.append(f"{entry['claim']}: no output matches {entry['pattern']!r}")
            continue
        groups = found.groupdict()
        for name, bound in (entry.get("min") or {}).items():
            if float(groups[name]) < bound:
                problems.append(f"{entry['claim']}: {name}={groups[name]} < {bound}")
        for name, bound in (entry.get("max") or {}).items():
            if float(groups[name]) > bound:
                problems.append(f"{entry['claim']}: {name}={groups[name]} > {bound}")
        for a, b in entry.get("equal") or []:
            if groups[a] != groups[b]:
                problems.append(f"{entry['claim']}: {a}={groups[a]} but {b}={groups[b]}")
    return problems


def test_notebooks_found() -> None:
    assert len(NOTEBOOKS) >= 2, "expected notebooks/00_… and 01_…"


@pytest.mark.notebooks
@pytest.mark.asyncio
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
async def test_notebook_embedded(path: Path, embedded_pgdata: Path) -> None:
    """(a) No DATABASE_URL: the notebook finds the embedded server by itself."""
    skip_without_pgbouncer(path)
    url = start_embedded(embedded_pgdata)
    await execute(path, kernel_env(TUTORIAL_PGDATA=str(embedded_pgdata)), url)


@pytest.mark.notebooks
@pytest.mark.asyncio
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
async def test_notebook_database_url(path: Path, password_server,
                                     reader_snapshot: str) -> None:
    """(b) DATABASE_URL names a password-auth server that holds a reader's tables."""
    skip_without_pgbouncer(path)
    await execute(path, kernel_env(DATABASE_URL=password_server.url), password_server.url)
    assert password_server.psql(READER_SNAPSHOT_SQL) == reader_snapshot, (
        "the notebook changed tables it did not create"
    )
