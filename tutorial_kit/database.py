"""Where the tutorial's PostgreSQL is: one URL, chosen in a fixed order.

1. ``DATABASE_URL``, if set. It is checked before use, so a typo gives one
   clear paragraph instead of a driver traceback. URLs are accepted as people
   write them: ``postgres://`` and ``postgresql://`` are read as
   ``postgresql+asyncpg://``, and libpq's ``sslmode=`` as asyncpg's ``ssl=``;
   the URL actually used is printed (password hidden).
2. The docker compose server, if it answers on ``localhost:5432`` with the
   credentials in ``docker-compose.yml``.
3. Otherwise an embedded PostgreSQL 18 kept in ``.pgdata/`` inside the repo,
   started on first use and shared by every notebook and kernel
   (``tutorial_kit.embedded``).

Each server is probed once per kernel: it must answer, and the user must be
allowed to create schemas there (every notebook works in a schema of its own).

Only the *location* lives here. The notebooks call ``create_async_engine()``
themselves, because that is the API the reader is learning.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import os
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from tutorial_kit import embedded
from tutorial_kit import setup_problems as problems
from tutorial_kit.errors import TutorialError

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

#: asyncpg's connect timeout (seconds) for DATABASE_URL, and the limit on the whole probe.
CONNECT_TIMEOUT = 5.0
PROBE_LIMIT = 9.0
#: libpq's sslmode values; asyncpg's ``ssl=`` takes the same words.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: psycopg 3's drivers: async, but not the driver these lessons are written for.
_PSYCOPG3 = {"psycopg", "psycopg_async"}

Source = Literal["DATABASE_URL", "compose", "embedded"]
T = TypeVar("T")

#: URLs that passed the probe in this process (kernel): checked once, then trusted.
_verified: set[str] = set()
#: Starts of the embedded server before its probe's failure counts: a stop at that
#: moment (make stop in another terminal) is followed by a start, not by an error.
_EMBEDDED_ATTEMPTS = 3


class DatabaseConfigError(TutorialError):
    """The database could not be used; the message says why and what to do.

    ``kind`` is the problem's key in ``tutorial_kit.setup_problems`` (``nothing-answers``,
    ``no-answer``, ``password``, ``no-create``, …), for code that reacts to it.
    ``started`` is the embedded server that :func:`find_database` started before its
    probe failed (a probe can time out on a busy machine while the server runs): a
    caller that stops what it started (``make lab``, ``make reset-db``) stops that too.
    """

    def __init__(self, message: str, kind: str = "config") -> None:
        super().__init__(message)
        self.kind = kind
        self.started: embedded.Started | None = None

    @classmethod
    def of(cls, problem: problems.SetupProblem, **fields: Any) -> DatabaseConfigError:
        """The error for a catalogued problem, its message filled in with ``fields``."""
        return cls(problem.message(**fields), problem.key)


@dataclass(frozen=True)
class Database:
    """The chosen server: its URL, where it came from, and why."""

    url: str
    source: Source
    reason: str
    notes: tuple[str, ...] = field(default=())
    #: The embedded server, and whether this call started it (None for the other sources).
    server: embedded.Started | None = None

    def describe(self) -> str:
        shown = make_url(self.url).render_as_string(hide_password=True)
        why = "; ".join([self.reason, *self.notes])
        return f"Database: {self.source} -> {shown} ({why})"


def database_url(*, quiet: bool = False) -> str:
    """Return the URL the notebooks should use, printing one line on what and why."""
    db = find_database()
    if not quiet:
        print(db.describe())
    return db.url


def find_database() -> Database:
    """Resolve the database in the documented order (see the module docstring)."""
    env_url = os.environ.get("DATABASE_URL", "").strip()
    if env_url:
        url, notes = normalize_url(env_url)
        run_sync(_probe(url, timeout=CONNECT_TIMEOUT, what="DATABASE_URL"))
        return Database(url, "DATABASE_URL", "DATABASE_URL is set, so it wins", tuple(notes))

    compose_problem = run_sync(_compose_problem())
    if compose_problem is None:
        return Database(COMPOSE_URL, "compose", "a server on localhost:5432 accepts the "
                        "compose settings (user, password and database 'tutorial')")

    reason = f"DATABASE_URL is not set and {compose_problem}"
    attempts_left = _EMBEDDED_ATTEMPTS
    while True:
        server = embedded.start(EMBEDDED_DIR)
        url = embedded_url(server.postmaster)
        try:
            run_sync(_probe(url, timeout=CONNECT_TIMEOUT, what="the embedded server"))
            return Database(url, "embedded", reason, server=server)
        except DatabaseConfigError as err:
            attempts_left -= 1
            now, _ = embedded.running(EMBEDDED_DIR)
            if not attempts_left or (now is not None and now.status == "ready"):
                # The server runs and still fails: that is the problem to show. If this
                # call started it, the error says so, for the caller to stop it.
                err.started = server if server.started_here else None
                raise
            # else it was stopped (or is stopping) since it was found: start it again


def normalize_url(raw: str) -> tuple[str, list[str]]:
    """``(asyncpg URL, notes on what was mapped)`` for a URL as people write it.

    A URL that cannot work raises a DatabaseConfigError for its problem in
    ``tutorial_kit.setup_problems`` (checked in the catalogue's order).
    """
    _scheme, sep, rest = raw.partition("://")
    # Everything up to the last "@" before the database name is user:password.
    if sep and rest.split("?", 1)[0].count("@") > 1:
        raise DatabaseConfigError.of(problems.UNENCODED_AT)
    try:
        url = make_url(raw)
    except sa_exc.ArgumentError:
        raise DatabaseConfigError.of(problems.NOT_A_URL) from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        # A typo (postgressql, postgre) deserves the name it missed, not a lecture.
        close = difflib.get_close_matches(backend, ["postgresql"], n=1, cutoff=0.75)
        raise DatabaseConfigError.of(
            problems.NOT_POSTGRESQL, backend=backend,
            did_you_mean=" (did you mean 'postgresql'?)" if close else "")
    notes: list[str] = []
    if driver in _PSYCOPG3:
        raise DatabaseConfigError.of(problems.PSYCOPG3, drivername=url.drivername)
    if driver and driver != "asyncpg":  # psycopg2, pg8000, pygresql, …
        raise DatabaseConfigError.of(problems.SYNC_DRIVER, drivername=url.drivername)
    if url.drivername != "postgresql+asyncpg":
        notes.append(f"{url.drivername}:// read as postgresql+asyncpg://")
        url = url.set(drivername="postgresql+asyncpg")
    if "sslmode" in url.query:
        mode = url.query["sslmode"]
        if isinstance(mode, tuple) or mode not in SSL_MODES or "ssl" in url.query:
            raise DatabaseConfigError.of(problems.BAD_SSLMODE, modes=", ".join(SSL_MODES))
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
        notes.append(f"sslmode={mode} read as asyncpg's ssl={mode}")
    return url.render_as_string(hide_password=False), notes


def psycopg_url(asyncpg_url: str) -> URL:
    """The same server, user and database through psycopg 3 (lessons 16 and 18).

    Only the driver part changes, and asyncpg's ``ssl=MODE`` (what ``normalize_url``
    makes of ``sslmode=``) goes back to libpq's ``sslmode=MODE``: psycopg hands its
    settings to libpq. ``create_async_engine`` picks psycopg's async dialect for it,
    ``create_engine`` the sync one.
    """
    url = make_url(asyncpg_url).set(drivername="postgresql+psycopg")
    if "ssl" in url.query:
        url = url.difference_update_query(["ssl"]).update_query_dict(
            {"sslmode": url.query["ssl"]})
    return url


def start_embedded(pgdata: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL and return its asyncpg URL.

    The server keeps running after this process exits, so every kernel shares
    one server and later starts take milliseconds. ``make stop`` stops it.
    """
    return embedded_url(embedded.start(Path(pgdata or EMBEDDED_DIR)).postmaster)


def embedded_url(info: embedded.Postmaster) -> str:
    """The asyncpg URL of the embedded server ``info`` describes."""
    if info.socket_dir is None:  # TCP on loopback instead of a socket
        return URL.create(
            "postgresql+asyncpg", username="postgres", host=info.host or "127.0.0.1",
            port=info.port, database="postgres",
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
        if err.kind in (problems.NOTHING_ANSWERS.key, problems.NO_ANSWER.key):
            return "nothing answers on localhost:5432"
        if err.kind == problems.NO_CREATE.key:
            return "the compose server's user may not create schemas"
        return "a server on localhost:5432 refuses the compose credentials"
    return None


_CAN_CREATE = text(
    "SELECT has_database_privilege(current_user, current_database(), 'CREATE'), "
    "current_user, current_database()"
)


async def _probe(url: str, *, timeout: float, what: str) -> None:
    """Connect once, check the user may create schemas; translate failures into a paragraph.

    A URL that passed is not probed again in this process.
    """
    if url in _verified:
        return
    try:
        async with asyncio.timeout(max(timeout, PROBE_LIMIT)):
            async with one_off_connection(url, timeout=timeout) as conn:
                can_create, user, dbname = (await conn.execute(_CAN_CREATE)).one()
    except Exception as err:
        failure = problems.ConnectFailure.of(err, what, url, timeout)
        raise DatabaseConfigError.of(problems.explain(failure), f=failure) from None
    if not can_create:
        grant = (f"GRANT CREATE ON DATABASE {problems.quote_ident(dbname)} TO "
                 f"{problems.quote_ident(user)};")
        other = ("unset DATABASE_URL and the tutorial uses its own PostgreSQL (make db)"
                 if what == "DATABASE_URL" else "set DATABASE_URL to a server where you may")
        shown = make_url(url).render_as_string(hide_password=True)
        raise DatabaseConfigError.of(problems.NO_CREATE, source=f"{what} ({shown})",
                                     user=user, dbname=dbname, grant=grant, other=other)
    _verified.add(url)


@asynccontextmanager
async def one_off_connection(url: str, **connect_args: Any) -> AsyncIterator[AsyncConnection]:
    """One connection on an engine of its own, without a pool, disposed on the way out.

    For a check or a report that runs a query or two and leaves (the probe, the
    instructor tools, the tests' connection counts): nothing stays open after it.
    ``connect_args`` go to asyncpg (``timeout=``, ``ssl=``, …).
    """
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion even inside Jupyter's running loop.

    The kernel's loop is already running, so ``asyncio.run`` would fail there;
    a short-lived worker thread gets a loop of its own instead.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
