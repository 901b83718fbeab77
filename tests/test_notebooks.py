"""Execute every notebook: fresh kernel, then a rerun in the same kernel.

Each notebook runs against two servers: (a) the embedded PostgreSQL found with
no DATABASE_URL, and (b) a password-auth server given by DATABASE_URL that
already holds a reader's tables (public.a, public.b, ...), standing in for
compose or an existing server. Any error output fails; so do warnings on
stderr, server connections left open after a pass, and any change to the
reader's tables, and any exercise check that does not print "not yet" (the
committed notebooks hold no answers), or any claim listed in tests/claims/ that
the outputs no longer back (tutorial_harness.claims: the bar of a clean run). On
the embedded server, the first pass's peak of client connections must stay
within the lesson's measured peak in tutorial_kit.classroom. New notebooks are
picked up with no new test code.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest

from tutorial_harness.claims import run_problems
from tutorial_harness.connections import PeakSampler, wait_for_at_most
from tutorial_harness.pg_server import READER_SNAPSHOT_SQL
from tutorial_harness.pytest_plugin import skip_without_pgbouncer
from tutorial_harness.runner import kernel_env, notebook_paths, run_notebook
from tutorial_kit.classroom import LESSON_PEAKS
from tutorial_kit.connection_slots import PER_LEARNER
from tutorial_kit.database import start_embedded

NOTEBOOKS = notebook_paths()
#: How often the first pass on the embedded server counts client connections, in seconds.
PEAK_SAMPLE_EVERY = 0.02


async def execute(path: Path, env: dict[str, str], url: str, peak_bound: int | None = None) -> None:
    """Two passes in one kernel, each leaving no connection open; the run must be clean.

    With ``peak_bound``, the client connections on the server are sampled during the
    first pass (the test's own server: nothing else connects) and must stay within it,
    and within ``PER_LEARNER`` beyond the class's connection slots held.
    """
    leaks: list[str] = []
    sampler = None if peak_bound is None else PeakSampler(url, every=PEAK_SAMPLE_EVERY)

    async def after_pass(n: int) -> None:
        if n == 0 and sampler is not None:
            sampler.stop()  # before the count below, whose connection it would see
        count = await wait_for_at_most(url, 0, timeout=2.0)
        if count:
            leaks.append(f"pass {n + 1}: {count} server connection(s) still open at the end")

    with sampler or nullcontext():
        run = await run_notebook(path, env=env, passes=2, after_pass=after_pass)
    assert not leaks, leaks
    problems = run_problems(path, run.nb)
    assert not problems, "not a clean run:\n" + "\n".join(problems)
    if sampler is not None and peak_bound is not None:
        assert sampler.peak <= peak_bound, (
            f"{path.stem} held {sampler.peak} client connections at once on its first pass "
            f"(sampled every {PEAK_SAMPLE_EVERY * 1000:.0f} ms); its measured peak in "
            f"tutorial_kit.classroom is {peak_bound}")
        # The class budget's rule (docs/instructor-guide.md, "The connection budget"):
        # beyond the class's connection slots it holds, a learner holds at most PER_LEARNER.
        assert sampler.beyond_slots <= PER_LEARNER, (
            f"{path.stem} held {sampler.beyond_slots} client connections beyond the "
            f"connection slots it held at that moment (at most {PER_LEARNER}): a cell that "
            "opens more needs `async with connection_slots(DATABASE_URL, n)`")


def test_notebooks_found() -> None:
    assert len(NOTEBOOKS) >= 2, "expected notebooks/00_… and 01_…"


@pytest.mark.notebooks
@pytest.mark.asyncio
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
async def test_notebook_embedded(path: Path, embedded_pgdata: Path) -> None:
    """(a) No DATABASE_URL: the notebook finds the embedded server by itself."""
    skip_without_pgbouncer(path)
    url = start_embedded(embedded_pgdata)
    await execute(path, kernel_env(TUTORIAL_PGDATA=str(embedded_pgdata)), url,
                  peak_bound=LESSON_PEAKS[path.name[:2]])


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
