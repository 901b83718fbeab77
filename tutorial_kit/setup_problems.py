"""Every setup problem the tutorial explains, in one catalogue: what matches, message, fix.

A bad setup (a typo in ``DATABASE_URL``, a server that is not running, a role
without CREATE, a missing ``pgbouncer``, …) is the reader's to fix, so each
one gets one short paragraph that says what is wrong and what to do: never a
traceback, never a guess. README.md's Troubleshooting table has one row per
entry here (``tests/test_troubleshooting.py`` checks both ways).

Two kinds of entries:

- **Connection problems** (:data:`CONNECTION_PROBLEMS`) have ``matches``: when
  a connection attempt fails, :func:`explain` tries them in catalogue order on
  the failure and the first that matches writes the paragraph. Where the order
  matters, the comment above the entry says why.
- **The others** are found by a check in the module named in ``when`` (the URL's
  parser, the embedded server's start, …), which raises that module's error with
  the entry's message.

Templates are ``str.format`` strings. A connection problem's fields are the
attributes of a :class:`ConnectFailure` (``{f.where}``); the others' fields are
passed by the code that raises them. ``key`` is the stable name
(``DatabaseConfigError.kind`` for the database's problems).

This module imports nothing else of the tutorial's: every module below it may use it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL, make_url


@dataclass(frozen=True, kw_only=True)
class SetupProblem:
    """One setup problem: how it is recognised, and the paragraph that names the fix."""

    #: Stable name: code that reacts to a problem compares keys, never messages.
    key: str
    #: Words every message of this problem contains ("…" where names vary); README quotes them.
    title: str
    #: What is checked, in words, and by which code.
    when: str
    #: What went wrong, then how to fix it: ``str.format`` templates, joined by a space.
    problem: str
    fix: str = ""
    #: For a failed connection attempt: True if this entry explains it.
    matches: Callable[[ConnectFailure], bool] | None = None

    def message(self, **fields: Any) -> str:
        """The paragraph, with ``fields`` filled in."""
        return " ".join(t for t in (self.problem, self.fix) if t).format(**fields)


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier in a message's SQL (quoted only when it must be)."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class ConnectFailure:
    """A failed connection attempt, as the connection problems' ``matches`` and templates see it.

    ``error`` is what SQLAlchemy raised; the driver's error below it (``orig``,
    ``__cause__``) is part of :attr:`chain`. ``what`` names the server for the
    reader (``DATABASE_URL``, ``the embedded server``); ``timeout`` is the connect
    timeout in seconds.
    """

    error: BaseException
    what: str
    url: URL
    timeout: float

    @classmethod
    def of(cls, error: BaseException, what: str, url: str, timeout: float) -> ConnectFailure:
        return cls(error, what, make_url(url), timeout)

    # --- what the error says -----------------------------------------------------------

    @property
    def chain(self) -> list[BaseException]:
        """The error, then each error it wraps or was raised from, down to the root."""
        chain: list[BaseException] = []
        cur: BaseException | None = self.error
        while cur is not None and cur not in chain:
            chain.append(cur)
            cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
        return chain

    @property
    def root(self) -> BaseException:
        return self.chain[-1]

    def raised(self, *names: str) -> bool:
        """True if an error in the chain is of a class named ``names`` (by name: asyncpg's
        classes are matched without importing the driver)."""
        return any(type(e).__name__ in names for e in self.chain)

    @property
    def text(self) -> str:
        """Every message in the chain, joined: what PostgreSQL or the OS said."""
        return " ".join(str(e) for e in self.chain)

    # --- fields for the templates ------------------------------------------------------

    @property
    def source(self) -> str:
        """``DATABASE_URL (postgresql+asyncpg://u:***@h/db)``: which server, password hidden."""
        return f"{self.what} ({self.url.render_as_string(hide_password=True)})"

    @property
    def or_own(self) -> str:
        """The way out for a URL of the reader's own: the tutorial's server."""
        if self.what != "DATABASE_URL":
            return ""
        return ", or unset DATABASE_URL and the tutorial starts its own PostgreSQL (make db)"

    @property
    def where(self) -> str:
        """``host:port``, or the Unix socket's folder."""
        sock = self.url.query.get("host")
        if isinstance(sock, str) and sock.startswith("/"):
            return f"{sock} (Unix socket)"
        return f"{self.url.host or 'localhost'}:{self.url.port or 5432}"

    @property
    def local(self) -> bool:
        """True for a Unix socket, ``localhost`` or a loopback address."""
        if self.where.endswith("(Unix socket)"):
            return True
        host = self.url.host or "localhost"
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return False

    @property
    def user(self) -> str | None:
        return self.url.username

    @property
    def has_password(self) -> bool:
        """A password in the URL, or in ``PGPASSWORD`` (asyncpg reads it too)."""
        return self.url.password is not None or bool(os.environ.get("PGPASSWORD"))

    @property
    def database(self) -> str:
        return self.url.database or "?"

    @property
    def quoted_database(self) -> str:
        return quote_ident(self.database)

    @property
    def ssl(self) -> object:
        return self.url.query.get("ssl")

    @property
    def option(self) -> str:
        """The keyword asyncpg's ``connect()`` did not take (a URL query option)."""
        found = re.search(r"argument '([^']+)'", str(self.root))
        return found.group(1) if found else "?"

    @property
    def reason(self) -> str:
        """The OS's words for a failed connect, short."""
        return str(self.root)[:120] or type(self.root).__name__

    @property
    def root_said(self) -> str:
        """The root error's class and message (cut at 200 characters)."""
        return f"{type(self.root).__name__}: {str(self.root)[:200]}"

    @property
    def limit(self) -> re.Match[str] | None:
        return _LIMIT_HIT.search(self.text)

    @property
    def limit_kind(self) -> str:
        return self.limit.group(1).lower() if self.limit else "?"

    @property
    def limit_sql(self) -> str:
        return self.limit_kind.upper()

    @property
    def limit_name(self) -> str:
        return self.limit.group(2) if self.limit else "?"


#: PostgreSQL's words (SQLSTATE 53300) when every slot is taken, or a CONNECTION LIMIT is hit.
_SERVER_FULL = re.compile(r"too many clients already|remaining connection slots are reserved",
                          re.I)
_LIMIT_HIT = re.compile(r"too many connections for (role|database) \"?([^\"]+)\"?", re.I)
_PASSWORD_FIX_NOTE = "(percent-encode '@', ':' and '/' in it)"
_MAKE_URL = "postgresql+asyncpg://user:password@host:5432/dbname"


def _password_failed(f: ConnectFailure) -> bool:
    return f.raised("InvalidPasswordError") or "password authentication failed" in f.text


# --------------------------------------------------------------------------- DATABASE_URL
# Checked by database.normalize_url before anything connects, in this order: the '@' check
# runs first because a URL with an unencoded '@' in its password still parses, wrongly.

UNENCODED_AT = SetupProblem(
    key="unencoded-at", title="more than one '@' before the host",
    when="database.normalize_url: more than one '@' between '://' and the database name",
    problem="DATABASE_URL has more than one '@' before the host, so the password is cut at "
            "its '@' and the rest is taken for the host name.",
    fix="Percent-encode special characters in the password ('@' is %40, ':' is %3A, '/' is "
        "%2F), e.g. with python -c \"import urllib.parse; print(urllib.parse.quote(input(), "
        "safe=''))\". (The URL is not shown here because it contains the password.)")
NOT_A_URL = SetupProblem(
    key="not-a-url", title="not a database URL",
    when="database.normalize_url: SQLAlchemy's make_url cannot parse DATABASE_URL",
    problem="DATABASE_URL is not a database URL.",
    fix=f"Expected something like {_MAKE_URL}, or unset it.")
NOT_POSTGRESQL = SetupProblem(
    key="not-postgresql", title="this tutorial needs PostgreSQL",
    when="database.normalize_url: the URL's backend is not postgresql (or postgres)",
    problem="DATABASE_URL points at {backend!r}{did_you_mean}; this tutorial needs "
            "PostgreSQL:",
    fix=f"{_MAKE_URL}.")
PSYCOPG3 = SetupProblem(
    key="psycopg3", title="psycopg works with asyncio too",
    when="database.normalize_url: the driver is psycopg or psycopg_async",
    problem="DATABASE_URL uses {drivername}:// (psycopg 3). psycopg works with asyncio too, "
            "but these lessons are written for asyncpg: its errors, its prepared statements "
            "and its connect options are what they show (lesson 16 puts the two drivers "
            "side by side).",
    fix="Write the same URL with postgresql+asyncpg:// (user, password, host and database "
        "stay as they are).")
SYNC_DRIVER = SetupProblem(
    key="sync-driver", title="a synchronous driver",
    when="database.normalize_url: any other driver than asyncpg (psycopg2, pg8000, …)",
    problem="DATABASE_URL uses {drivername}://, a synchronous driver; AsyncEngine needs an "
            "async one.",
    fix="Write it as postgresql+asyncpg://… (the rest of the URL stays the same), or unset "
        "DATABASE_URL to use the embedded server.")
BAD_SSLMODE = SetupProblem(
    key="bad-sslmode", title="an sslmode= asyncpg cannot take",
    when="database.normalize_url: sslmode= is given twice, with ssl=, or is not a libpq mode",
    problem="DATABASE_URL has an sslmode= asyncpg cannot take:",
    fix="give one sslmode= (and no ssl=) with one of {modes}.")

# --------------------------------------------------------------------------- connecting
# Tried by explain() in this order on a failed connection attempt; the first match wins.

NO_PASSWORD = SetupProblem(
    key="no-password", title="asks for a password … and the URL has none",
    when="the server refused the password (InvalidPasswordError, \"password authentication "
         "failed\") and neither the URL nor PGPASSWORD has one",
    # Before "password": the same error, when no password was sent at all.
    matches=lambda f: _password_failed(f) and not f.has_password,
    problem="{f.source}: the server asks for a password for user {f.user}, and the URL has "
            "none.",
    fix=f"Put it in the URL: postgresql+asyncpg://user:password@host:port/dbname "
        f"{_PASSWORD_FIX_NOTE}.")
PASSWORD_FAILED = SetupProblem(
    key="password", title="password authentication failed",
    when="InvalidPasswordError, or \"password authentication failed\" in the error",
    # Before "user-rejected": asyncpg's InvalidPasswordError is a subclass of
    # InvalidAuthorizationSpecificationError. PostgreSQL answers a wrong password and an
    # unknown user alike (so as not to tell who exists), hence the message names both.
    matches=_password_failed,
    problem="{f.source}: password authentication failed for user {f.user}: either the "
            "password is wrong or the server has no user of that name (PostgreSQL answers "
            "both alike).",
    fix=f"Fix the password or the user name in the URL {_PASSWORD_FIX_NOTE}.")
NO_DATABASE = SetupProblem(
    key="no-database", title="database … does not exist",
    when="InvalidCatalogNameError, or \"database … does not exist\" in the error",
    matches=lambda f: (f.raised("InvalidCatalogNameError")
                       or re.search(r"database .* does not exist", f.text) is not None),
    problem="{f.source}: database {f.database} does not exist on {f.where}.",
    fix="Create it (SQL: CREATE DATABASE {f.quoted_database}; or the shell: createdb "
        "{f.database}), or fix the name after the last '/' in the URL{f.or_own}.")
USER_REJECTED = SetupProblem(
    key="user-rejected", title="the server rejects this user",
    when="InvalidAuthorizationSpecificationError (an unknown role, no pg_hba.conf entry)",
    matches=lambda f: f.raised("InvalidAuthorizationSpecificationError"),
    problem="{f.source}: the server rejects this user ({f.root}).",
    fix="Fix the user name, or ask the server's admin to let it in (pg_hba.conf){f.or_own}.")
URL_OPTION = SetupProblem(
    key="url-option", title="does not understand the URL option",
    when="a TypeError \"unexpected keyword argument\" from asyncpg's connect()",
    matches=lambda f: (isinstance(f.root, TypeError)
                       and "unexpected keyword argument" in str(f.root)),
    problem="{f.source}: asyncpg does not understand the URL option {f.option}=.",
    fix="Remove it from the query string (asyncpg takes ssl=…, server_settings go in "
        "connect_args){f.or_own}.")
SSL_REJECTED = SetupProblem(
    key="ssl-rejected", title="does not accept SSL",
    when="\"rejected SSL upgrade\" in the error",
    # Before "nothing-answers"/"cannot-reach": asyncpg raises it as a ConnectionError (an OSError).
    matches=lambda f: "rejected SSL upgrade" in f.text,
    problem="{f.source}: the server at {f.where} does not accept SSL, and the URL asks for it "
            "(ssl={f.ssl}).",
    fix="Use sslmode=prefer or sslmode=disable for a server without SSL, or turn SSL on in "
        "the server{f.or_own}.")
NO_ANSWER = SetupProblem(
    key="no-answer", title="did not answer within",
    when="a TimeoutError: the connect timeout passed",
    # Before "nothing-answers"/"cannot-reach": TimeoutError is an OSError. A timeout cannot
    # tell a firewall that drops the connection from a service that accepts it and stays
    # silent, so the message names both.
    matches=lambda f: isinstance(f.root, TimeoutError) or f.raised("TimeoutError"),
    problem="{f.source}: {f.where} did not answer within {f.timeout:.0f} s: either nothing "
            "accepted the connection (a firewall dropping it) or something accepted it and "
            "never spoke PostgreSQL.",
    fix="Check that host and port are a PostgreSQL server that is running normally (not "
        "another service, or a tunnel whose far end is down), and that no firewall is in "
        "between{f.or_own}.")
NOTHING_ANSWERS = SetupProblem(
    key="nothing-answers", title="nothing answers at",
    when="an OSError connecting to this machine (localhost, loopback, a Unix socket)",
    matches=lambda f: (isinstance(f.root, OSError) or f.raised("gaierror")) and f.local,
    problem="{f.source}: nothing answers at {f.where} ({f.reason}).",
    fix="Start that server (e.g. docker compose up -d --wait) or fix the port{f.or_own}.")
CANNOT_REACH = SetupProblem(
    key="cannot-reach", title="cannot reach",
    when="an OSError or a name-lookup error (gaierror) connecting to another host",
    matches=lambda f: isinstance(f.root, OSError) or f.raised("gaierror"),
    problem="{f.source}: cannot reach {f.where} ({f.reason}).",
    fix="Check the host name and port, and that the server runs and accepts connections "
        "from this machine (firewall, VPN, listen_addresses, pg_hba.conf){f.or_own}.")
CONNECTION_LIMIT = SetupProblem(
    key="connection-limit", title="has reached its CONNECTION LIMIT",
    when="\"too many connections for role/database …\" in the error (SQLSTATE 53300)",
    matches=lambda f: f.limit is not None,
    problem="{f.source}: {f.limit_kind} {f.limit_name} has reached its CONNECTION LIMIT "
            "(PostgreSQL said: too many connections for {f.limit_kind} {f.limit_name}).",
    fix="Every learner's kernel holds up to pool_size + max_overflow connections (5 + 10 by "
        "default) until its engine is disposed: shut down kernels you are not using (Kernel "
        "→ Shut Down Kernel). An instructor can print the class's budget with `python -m "
        "tutorial_kit class budget --learners N` and raise the limit (ALTER {f.limit_sql} … "
        "CONNECTION LIMIT …).")
SERVER_FULL = SetupProblem(
    key="server-full", title="the server is at max_connections",
    when="\"too many clients already\" or \"remaining connection slots are reserved\" in the "
         "error (SQLSTATE 53300)",
    matches=lambda f: _SERVER_FULL.search(f.text) is not None,
    problem="{f.source}: the server is at max_connections, so every connection slot an "
            "ordinary role may use is taken (PostgreSQL said: too many clients, or the "
            "remaining slots are reserved).",
    fix="In a class every learner's kernel holds up to pool_size + max_overflow connections "
        "(5 + 10 by default) until its engine is disposed: shut down kernels you are not "
        "using (Kernel → Shut Down Kernel) and run the cell again. An instructor can print "
        "the class's budget with `python -m tutorial_kit class budget --learners N`, then "
        "raise max_connections or put PgBouncer in front (lesson 13).")
CANNOT_CONNECT = SetupProblem(
    key="cannot-connect", title="cannot connect:",
    when="any other failure: last, it matches everything",
    # Last: it quotes the error it does not know, rather than guess what it means.
    matches=lambda f: True,
    problem="{f.source}: cannot connect: {f.root_said}")

# --------------------------------------------------------------------------- connected

NO_CREATE = SetupProblem(
    key="no-create", title="may not create schemas",
    when="database's probe: has_database_privilege(current_user, current_database(), "
         "'CREATE') is false",
    problem="{source}: user {user} may not create schemas in database {dbname}, and every "
            "notebook works in a schema of its own (tutorial_NN_<you>), so nothing else of "
            "yours is touched.",
    fix="Ask the database's owner or an admin to run {grant}  Or {other}.")
FOREIGN_SCHEMA = SetupProblem(
    key="foreign-schema", title="exists but was not created by this tutorial",
    when="schema.drop_schema: a schema of the tutorial's name lacks the tutorial's comment",
    problem="Schema {name!r} exists but was not created by this tutorial, so it is left alone.",
    fix="Rename it, or point DATABASE_URL at another database.")

# --------------------------------------------------------------------------- embedded server

USERADD_FAILED = SetupProblem(
    key="useradd-failed", title="does not exist and useradd could not create it",
    when="accounts.ensure_user (embedded.start as root): useradd fails for another reason "
         "than a lock on the user database, or that lock stays taken through every retry",
    problem="The system user {user} does not exist and useradd could not create it ({said}). "
            "As root, the tutorial runs PostgreSQL as that user (PostgreSQL refuses to run as "
            "root).",
    fix="Create it yourself ({command}) and try again, or run the tutorial as an ordinary "
        "user, or set DATABASE_URL to a server of your own.")
PGDATA_PARENT_MISSING = SetupProblem(
    key="pgdata-parent-missing", title="keeps its data in …, but the folder … does not exist",
    when="embedded.start: the data directory's parent folder does not exist",
    problem="The embedded PostgreSQL keeps its data in {pgdata}, but the folder {parent} does "
            "not exist.",
    fix="Create it, or set TUTORIAL_PGDATA to a folder path whose parent exists.")
CANNOT_ENTER = SetupProblem(
    key="cannot-enter", title="cannot enter … (mode …)",
    when="embedded.start, as root: the server's system user cannot enter a parent folder",
    problem="As root, the embedded PostgreSQL runs as the system user {user} (PostgreSQL "
            "refuses to run as root), and that user cannot enter {blocker} (mode {mode}) to "
            "reach {what} ({target}).",
    fix="The tutorial never changes other folders' permissions. Run it as an ordinary user, "
        "or keep the repo (and its .venv) in a folder every user may enter, or set "
        "TUTORIAL_PGDATA to such a folder, or set DATABASE_URL to a server of your own.")
INITDB_FAILED = SetupProblem(
    key="initdb-failed", title="initdb could not create the embedded server's data",
    when="embedded.start: initdb fails or times out",
    problem="initdb could not create the embedded server's data in {pgdata} ({error}).",
    fix="If that folder holds other files, move them away or set TUTORIAL_PGDATA to an empty "
        "or new folder.")
DID_NOT_START = SetupProblem(
    key="did-not-start", title="did not start. The end of its log",
    when="embedded.start: pg_ctl start fails or times out",
    problem="The embedded PostgreSQL in {pgdata} did not start.",
    fix="The end of its log ({log}):\n{tail}")
NOT_RUNNING_AFTER_START = SetupProblem(
    key="not-running-after-start", title="started but is not running",
    when="embedded.start: pg_ctl said it started, but postmaster.pid names no server of ours",
    problem="The embedded PostgreSQL in {pgdata} started but is not running ({note}).",
    fix="Its log: {log}.")
STILL_STOPPING = SetupProblem(
    key="still-stopping", title="is still stopping after",
    when="embedded.start: postmaster.pid says stopping, and the server did not go away in time",
    problem="The embedded PostgreSQL in {pgdata} is still stopping after {seconds} s (a smart "
            "shutdown waits until every session has closed).",
    fix="Shut down the kernels that use it, or run make stop (a fast shutdown), then run the "
        "cell again.")
COULD_NOT_STOP = SetupProblem(
    key="could-not-stop", title="could not stop the embedded server",
    when="embedded.stop: pg_ctl stop fails or times out",
    problem="pg_ctl could not stop the embedded server in {pgdata} ({error}).",
    fix="Its log: {log}.")
STALE_PID = SetupProblem(
    key="stale-pid", title="stale postmaster.pid",
    when="embedded.stop (make stop): postmaster.pid names a process that is not our server; "
         "a note, not an error",
    problem="The embedded server in {pgdata} is not running; it had a stale postmaster.pid: "
            "{pid_note}, which was left alone.",
    fix="Removed the stale file; nothing was signalled.")

# --------------------------------------------------------------------------- PgBouncer

COMPOSE_UP_FAILED = SetupProblem(
    key="compose-up-failed", title="docker compose up failed",
    when="__main__.bring_up (make db, make lab): `docker compose up -d --wait` exits non-zero",
    problem="docker compose up failed (exit status {status}); it said: {said}",
    fix="Fix what it names (docker compose logs shows the server's own log), then run make "
        "db again; or set DATABASE_URL to a PostgreSQL you already have.")
NO_PGBOUNCER = SetupProblem(
    key="no-pgbouncer", title="No pgbouncer binary found",
    when="pgbouncer.PgBouncer: no pgbouncer on PATH, in the conda env, or in the sbin folders",
    problem="No pgbouncer binary found.",
    fix="Install it: apt install pgbouncer, conda install -c conda-forge pgbouncer, or brew "
        "install pgbouncer.")
PGBOUNCER_VERSION = SetupProblem(
    key="pgbouncer-version", title="printed no PgBouncer version",
    when="pgbouncer.pgbouncer_version: `pgbouncer --version` prints no version",
    problem="{binary} --version printed no PgBouncer version: {output!r}")
PREPARED_STATEMENTS_NEED_1_21 = SetupProblem(
    key="pgbouncer-too-old", title="max_prepared_statements needs PgBouncer 1.21+",
    when="pgbouncer.PgBouncer: max_prepared_statements asked of a PgBouncer before 1.21",
    problem="max_prepared_statements needs PgBouncer 1.21+; this is {version}.")
PGBOUNCER_AS_ROOT = SetupProblem(
    key="pgbouncer-as-root", title="PgBouncer refuses to run as root",
    when="pgbouncer.PgBouncer.start, as root: none of the unprivileged users exists",
    problem="PgBouncer refuses to run as root and no unprivileged user ({users}) exists to "
            "run it as.")
PGBOUNCER_DID_NOT_START = SetupProblem(
    key="pgbouncer-did-not-start", title="PgBouncer did not start",
    when="pgbouncer.PgBouncer.start: the process exits, or its port accepts nothing in time",
    problem="PgBouncer did not start: {reason}")
PGBOUNCER_PORT_TAKEN = SetupProblem(
    key="pgbouncer-port-taken", title="PgBouncer could not start again on …: another program",
    when="pgbouncer.PgBouncer.start, a restart: its old port stays taken for RESTART_WAIT s",
    problem="PgBouncer could not start again on {address}: another program took that port "
            "while PgBouncer was stopped, and it was still taken after {seconds} s.",
    fix="The engines made from bouncer.url() name that port, so restart the kernel and run "
        "the notebook from the top: its PgBouncer then starts on a new free port.")
PGBOUNCER_NOT_STARTED = SetupProblem(
    key="pgbouncer-not-started", title="PgBouncer is not running; await bouncer.start() first",
    when="pgbouncer.PgBouncer: its files are asked for before start() or after stop()",
    problem="PgBouncer is not running; await bouncer.start() first.")
NO_OPENSSL = SetupProblem(
    key="no-openssl", title="The openssl command is not installed",
    when="pgbouncer.make_certificates: no openssl on PATH",
    problem="The openssl command is not installed;",
    fix="install it (apt install openssl, conda install openssl, brew install openssl).")
OPENSSL_FAILED = SetupProblem(
    key="openssl-failed", title="openssl … failed",
    when="pgbouncer.make_certificates: an openssl command exits non-zero",
    problem="openssl {command} failed: {stderr}")

NO_ROOM = SetupProblem(
    key="no-room", title="No room on the shared server",
    when="connection_slots.connection_slots: a many-connection cell waited too long for slots",
    problem="No room on the shared server after {seconds} s: this cell needs {need} of the "
            "class's {slots} connection slots, and that many did not come free in time.",
    fix="Run the cell again in a minute; if it keeps happening, tell your instructor (make "
        "class-budget, docs/instructor-guide.md).")

#: Every entry, in the order they are checked: the URL first, then a failed connection
#: (tried in this order by explain), then a connected server, the embedded server, PgBouncer.
CATALOGUE: tuple[SetupProblem, ...] = (
    UNENCODED_AT, NOT_A_URL, NOT_POSTGRESQL, PSYCOPG3, SYNC_DRIVER, BAD_SSLMODE,
    NO_PASSWORD, PASSWORD_FAILED, NO_DATABASE, USER_REJECTED, URL_OPTION, SSL_REJECTED,
    NO_ANSWER, NOTHING_ANSWERS, CANNOT_REACH, CONNECTION_LIMIT, SERVER_FULL, CANNOT_CONNECT,
    NO_CREATE, FOREIGN_SCHEMA,
    USERADD_FAILED, PGDATA_PARENT_MISSING, CANNOT_ENTER, INITDB_FAILED, DID_NOT_START,
    NOT_RUNNING_AFTER_START, STILL_STOPPING, COULD_NOT_STOP, STALE_PID, COMPOSE_UP_FAILED,
    NO_PGBOUNCER, PGBOUNCER_VERSION, PREPARED_STATEMENTS_NEED_1_21, PGBOUNCER_AS_ROOT,
    PGBOUNCER_DID_NOT_START, PGBOUNCER_PORT_TAKEN, PGBOUNCER_NOT_STARTED, NO_OPENSSL,
    OPENSSL_FAILED,
    NO_ROOM,
)
#: The entries :func:`explain` tries, in order.
CONNECTION_PROBLEMS: tuple[SetupProblem, ...] = tuple(p for p in CATALOGUE if p.matches)


def explain(failure: ConnectFailure) -> SetupProblem:
    """The first connection problem that matches ``failure`` (the last one matches all)."""
    return next(p for p in CONNECTION_PROBLEMS if p.matches and p.matches(failure))
