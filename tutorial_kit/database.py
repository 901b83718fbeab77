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
import ipaddress
import os
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tutorial_kit import embedded
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
#: Drivers that are not asyncpg, and what to say about them.
_SYNC_DRIVERS = {"psycopg2", "pg8000", "pygresql", "psycopg2cffi"}
_PSYCOPG3 = {"psycopg", "psycopg_async"}

Source = Literal["DATABASE_URL", "compose", "embedded"]
T = TypeVar("T")

#: URLs that passed the probe in this process (kernel): checked once, then trusted.
_verified: set[str] = set()


class DatabaseConfigError(TutorialError):
    """The database could not be used; the message says why and what to do.

    ``kind`` names the problem for code that reacts to it (``unreachable``,
    ``no-answer``, ``password``, ``no-create``, …).
    """

    def __init__(self, message: str, kind: str = "config") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Database:
    """The chosen server: its URL, where it came from, and why."""

    url: str
    source: Source
    reason: str
    notes: tuple[str, ...] = field(default=())

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
        _run(_probe(url, timeout=CONNECT_TIMEOUT, what="DATABASE_URL"))
        return Database(url, "DATABASE_URL", "DATABASE_URL is set, so it wins", tuple(notes))

    compose_problem = _run(_compose_problem())
    if compose_problem is None:
        return Database(COMPOSE_URL, "compose", "the compose server answers on localhost:5432")

    url = start_embedded()
    _run(_probe(url, timeout=CONNECT_TIMEOUT, what="the embedded server"))
    return Database(url, "embedded", f"DATABASE_URL is not set and {compose_problem}")


def check_async_url(raw: str) -> str:
    """The asyncpg URL for ``raw``, or a DatabaseConfigError naming the fix."""
    return normalize_url(raw)[0]


def normalize_url(raw: str) -> tuple[str, list[str]]:
    """``(asyncpg URL, notes on what was mapped)`` for a URL as people write it."""
    _reject_unencoded_at(raw)
    try:
        url = make_url(raw)
    except sa_exc.ArgumentError:
        raise DatabaseConfigError(
            "DATABASE_URL is not a database URL. Expected something like "
            "postgresql+asyncpg://user:password@host:5432/dbname, or unset it.") from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise DatabaseConfigError(
            f"DATABASE_URL points at {backend!r}; this tutorial needs "
            "PostgreSQL: postgresql+asyncpg://user:password@host:5432/dbname.")
    notes: list[str] = []
    if driver in _PSYCOPG3:
        raise DatabaseConfigError(
            f"DATABASE_URL uses {url.drivername}:// (psycopg 3). psycopg works with asyncio "
            "too, but these lessons are written for asyncpg: its errors, its prepared "
            "statements and its connect options are what they show. Write the same URL with "
            "postgresql+asyncpg:// (user, password, host and database stay as they are).",
            kind="driver")
    if driver in _SYNC_DRIVERS or (driver and driver != "asyncpg"):
        raise DatabaseConfigError(
            f"DATABASE_URL uses {url.drivername}://, a synchronous driver; AsyncEngine needs "
            "an async one. Write it as postgresql+asyncpg://… (the rest of the URL stays "
            "the same), or unset DATABASE_URL to use the embedded server.", kind="driver")
    if url.drivername != "postgresql+asyncpg":
        notes.append(f"{url.drivername}:// read as postgresql+asyncpg://")
        url = url.set(drivername="postgresql+asyncpg")
    if "sslmode" in url.query:
        mode = url.query["sslmode"]
        if isinstance(mode, tuple) or mode not in SSL_MODES or "ssl" in url.query:
            raise DatabaseConfigError(
                "DATABASE_URL has an sslmode= asyncpg cannot take: give one sslmode= (and no "
                f"ssl=) with one of {', '.join(SSL_MODES)}.", kind="ssl")
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
        notes.append(f"sslmode={mode} read as asyncpg's ssl={mode}")
    return url.render_as_string(hide_password=False), notes


def _reject_unencoded_at(raw: str) -> None:
    """A password holding ``@`` must be percent-encoded; say so without showing any of it."""
    _scheme, sep, rest = raw.partition("://")
    authority = rest.split("?", 1)[0]
    # Everything up to the last "@" before the database name is user:password.
    if sep and authority.count("@") > 1:
        raise DatabaseConfigError(
            "DATABASE_URL has more than one '@' before the host, so the password is cut at "
            "its '@' and the rest is taken for the host name. Percent-encode special "
            "characters in the password ('@' is %40, ':' is %3A, '/' is %2F), e.g. with "
            "python -c \"import urllib.parse; print(urllib.parse.quote(input(), safe=''))\". "
            "(The URL is not shown here because it contains the password.)", kind="url")


def start_embedded(pgdata: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL and return its asyncpg URL.

    The server keeps running after this process exits, so every kernel shares
    one server and later starts take milliseconds. ``make db-stop`` stops it.
    """
    info = embedded.start(Path(pgdata or EMBEDDED_DIR))
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
        if err.kind in ("unreachable", "no-answer"):
            return "nothing answers on localhost:5432"
        if err.kind == "no-create":
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
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": timeout})
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        async with asyncio.timeout(max(timeout, PROBE_LIMIT)):
            async with engine.connect() as conn:
                can_create, user, dbname = (await conn.execute(_CAN_CREATE)).one()
    except Exception as err:
        raise DatabaseConfigError(*_explain(err, what, url)) from None
    finally:
        await engine.dispose()
    if not can_create:
        raise DatabaseConfigError(_no_create_message(what, shown, user, dbname), "no-create")
    _verified.add(url)


def _quote_ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def _no_create_message(what: str, shown: str, user: str, dbname: str) -> str:
    grant = f"GRANT CREATE ON DATABASE {_quote_ident(dbname)} TO {_quote_ident(user)};"
    other = ("unset DATABASE_URL and the tutorial uses its own PostgreSQL (make db)"
             if what == "DATABASE_URL" else "set DATABASE_URL to a server where you may")
    return (f"{what} ({shown}): user {user} may not create schemas in database {dbname}, "
            "and every notebook works in a schema of its own (tutorial_NN_<you>), so nothing "
            f"else of yours is touched. Ask the database's owner or an admin to run "
            f"{grant}  Or {other}.")


def _endpoint(url: URL) -> tuple[str, bool]:
    """``("host:port", is_local)`` for messages; a Unix socket counts as local."""
    sock = url.query.get("host")
    if isinstance(sock, str) and sock.startswith("/"):
        return f"{sock} (Unix socket)", True
    host = url.host or "localhost"
    local = host == "localhost"
    if not local:
        try:
            local = ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            local = False
    return f"{host}:{url.port or 5432}", local


def _explain(err: BaseException, what: str, url_text: str) -> tuple[str, str]:
    """``(message, kind)``: the problem and the fix for a failed connection attempt."""
    chain: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
    names = {type(e).__name__ for e in chain}
    message = " ".join(str(e) for e in chain)
    root = chain[-1]
    url = make_url(url_text)
    shown = url.render_as_string(hide_password=True)
    where, local = _endpoint(url)
    is_env = what == "DATABASE_URL"
    own = ("unset DATABASE_URL and the tutorial starts its own PostgreSQL (make db)"
           if is_env else "")

    def say(problem: str, fix: str, kind: str) -> tuple[str, str]:
        tail = f", or {own}" if own and kind not in ("password", "no-password") else ""
        return f"{what} ({shown}): {problem}. {fix}{tail}.", kind

    if "InvalidPasswordError" in names or "password authentication failed" in message:
        if url.password is None and not os.environ.get("PGPASSWORD"):
            return say(f"the server asks for a password for user {url.username}, and the URL "
                       "has none", "Put it in the URL: postgresql+asyncpg://user:password@"
                       "host:port/dbname (percent-encode '@', ':' and '/' in it)", "no-password")
        return say(f"wrong password for user {url.username} (password authentication failed)",
                   "Fix the password in the URL (percent-encode '@', ':' and '/' in it)",
                   "password")
    if "InvalidCatalogNameError" in names or re.search(r"database .* does not exist", message):
        db = url.database or "?"
        return say(f"database {db} does not exist on {where}",
                   f"Create it (SQL: CREATE DATABASE {_quote_ident(db)}; or the shell: "
                   f"createdb {db}), or fix the name after the last '/' in the URL", "no-database")
    if "InvalidAuthorizationSpecificationError" in names:
        return say(f"the server rejects this user ({root})",
                   "Fix the user name, or ask the server's admin to let it in (pg_hba.conf)",
                   "user")
    if isinstance(root, TypeError) and "unexpected keyword argument" in str(root):
        option = re.search(r"argument '([^']+)'", str(root))
        name = option.group(1) if option else "?"
        return say(f"asyncpg does not understand the URL option {name}=",
                   "Remove it from the query string (asyncpg takes ssl=…, server_settings go "
                   "in connect_args)", "option")
    if "rejected SSL upgrade" in message:
        return say(f"the server at {where} does not accept SSL, and the URL asks for it "
                   f"(ssl={url.query.get('ssl')})",
                   "Use sslmode=prefer or sslmode=disable for a server without SSL, or turn "
                   "SSL on in the server", "ssl")
    if isinstance(root, TimeoutError) or "TimeoutError" in names:
        return say(f"{where} accepted the connection but did not answer within "
                   f"{CONNECT_TIMEOUT:.0f} s",
                   "Check that host and port are a PostgreSQL server (not another service, "
                   "or a tunnel whose far end is down) and that it is running normally",
                   "no-answer")
    if isinstance(root, OSError) or "gaierror" in names:
        reason = str(root)[:120] or type(root).__name__
        if local:
            return say(f"nothing answers at {where} ({reason})",
                       "Start that server (e.g. docker compose up -d --wait) or fix the port",
                       "unreachable")
        return say(f"cannot reach {where} ({reason})",
                   "Check the host name and port, and that the server runs and accepts "
                   "connections from this machine (firewall, VPN, listen_addresses, "
                   "pg_hba.conf)", "unreachable")
    # No connection slot left (a class on one server): the paragraph and the connection
    # budget live with the instructor tools, tutorial_kit/classroom.py (issue 16).
    from tutorial_kit.classroom import server_full_message

    full = server_full_message(message, f"{what} ({shown})")
    if full is not None:
        return full, "server-full"
    return (f"{what} ({shown}): cannot connect: {type(root).__name__}: {str(root)[:200]}",
            "other")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion even inside Jupyter's running loop.

    The kernel's loop is already running, so ``asyncio.run`` would fail there;
    a short-lived worker thread gets a loop of its own instead.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
