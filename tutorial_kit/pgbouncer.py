"""A real PgBouncer for lessons 13 and 15, started and stopped by the notebook.

Plumbing only: find the ``pgbouncer`` binary, write its configuration into a
temporary directory, start it on a free loopback port in front of the
tutorial's server (the embedded one on its unix socket, or whatever
``DATABASE_URL`` names), wait until it accepts connections, and stop it. The
settings a lesson is about (``pool_mode``, ``max_prepared_statements``, the
``client_tls_*`` files) are arguments, so the notebook shows them.

Authentication mirrors the server behind it: with no password in the URL
(the embedded server trusts its socket) PgBouncer trusts loopback clients;
with a password it asks clients for SCRAM and keeps that password in an
``auth_file`` readable only by PgBouncer, inside the temporary directory,
never printed, removed on stop.

PgBouncer refuses to run as root. As root (CI, containers) it runs as the
embedded server's system user, which can also reach that server's socket.

``make_certificates`` makes a throwaway CA and a server certificate for
127.0.0.1 (and the name ``localhost``) with the ``openssl`` command-line tool, for
lesson 15's TLS endpoint; given another ``host``, a certificate for that address only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url

from tutorial_kit import setup_problems as problems
from tutorial_kit.errors import TutorialError
from tutorial_kit.net import LOOPBACK, free_port

#: Set to ``required`` (CI does) to make a missing pgbouncer binary a test failure.
REQUIRED_ENV = "TUTORIAL_PGBOUNCER"
#: ``max_prepared_statements`` (prepared statements in transaction mode) arrived in 1.21.
PREPARED_STATEMENTS_SINCE = (1, 21)
#: From 1.23.0 SIGTERM no longer stops PgBouncer at once: it waits for every client to
#: disconnect, and SIGQUIT is the immediate shutdown. The changelog, 1.23.0 (2024-07-03):
#: "SIGTERM doesn't cause immediate shutdown of the PgBouncer process anymore. It now does
#: a 'super safe shutdown': waiting for all clients to disconnect before shutting down
#: [...] you should now use SIGQUIT" (https://www.pgbouncer.org/changelog.html#pgbouncer-123x).
#: Before 1.23 SIGTERM is the immediate shutdown, and SIGQUIT has no handler.
SIGQUIT_STOPS_SINCE = (1, 23)
#: How long a restart waits for its old port to be free again (another program took it).
RESTART_WAIT = 5.0
#: Where package managers put the binary when ``sbin`` is not on a user's PATH.
_CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer",
               "/opt/homebrew/bin/pgbouncer", "/usr/local/bin/pgbouncer")
#: The unprivileged users PgBouncer runs as when this process is root.
_RUN_AS_WHEN_ROOT = ("embedded_postgres", "postgres", "nobody")

PoolMode = Literal["session", "transaction", "statement"]


class PgBouncerError(TutorialError):
    """PgBouncer could not be set up; the message says why and what to do."""


def find_pgbouncer() -> Path | None:
    """The pgbouncer binary: ``PATH``, the active conda env, then the usual sbin places."""
    found = shutil.which("pgbouncer")
    if found:
        return Path(found)
    places = list(_CANDIDATES)
    if os.environ.get("CONDA_PREFIX"):
        places.insert(0, str(Path(os.environ["CONDA_PREFIX"]) / "bin" / "pgbouncer"))
    for place in places:
        if os.access(place, os.X_OK):
            return Path(place)
    return None


def pgbouncer_version(binary: Path) -> tuple[int, ...]:
    """``(1, 18, 0)`` from ``pgbouncer --version``."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                         timeout=10, check=False).stdout
    found = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", out)
    if found is None:
        raise PgBouncerError(problems.PGBOUNCER_VERSION.message(binary=binary, output=out[:120]))
    return tuple(int(part or 0) for part in found.groups())


def required() -> bool:
    """True where a missing pgbouncer must fail rather than skip (CI)."""
    return os.environ.get(REQUIRED_ENV, "").strip().lower() == "required"


@dataclass(frozen=True)
class Certificates:
    """Files of a throwaway PKI: a CA, a server key and certificate it signed, another CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    #: A second, unrelated CA: verifying the server against it must fail.
    other_ca: Path


def make_certificates(directory: Path, *, host: str = LOOPBACK) -> Certificates:
    """Make a CA and a server certificate for the IP address ``host`` with ``openssl``.

    For the loopback address the certificate also names ``localhost``; for any
    other address it names nothing else, so that it matches no name of this machine
    (lesson 15's host-name check).

    EC P-256 keys (fast to make), valid for 2 days, with the extensions that
    Python's strict verification (3.13+) asks for.
    """
    names = ("localhost",) if host == LOOPBACK else ()
    alt_names = ", ".join([f"IP:{host}", *(f"DNS:{name}" for name in names)])
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PgBouncerError(problems.NO_OPENSSL.message())
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.ext").write_text(
        "basicConstraints = critical, CA:TRUE\n"
        "keyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n")
    (d / "server.ext").write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = {alt_names}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n")

    def run(*args: str) -> None:
        out = subprocess.run([openssl, *args], cwd=d, capture_output=True, text=True,
                             timeout=30, check=False)
        if out.returncode != 0:
            raise PgBouncerError(problems.OPENSSL_FAILED.message(
                command=args[0], stderr=out.stderr.strip()[:300]))

    def new_key(name: str) -> None:
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", f"{name}.key")

    for ca in ("ca", "other-ca"):
        new_key(ca)
        run("req", "-new", "-key", f"{ca}.key", "-subj", f"/CN=Tutorial throwaway {ca}",
            "-out", f"{ca}.csr")
        run("x509", "-req", "-in", f"{ca}.csr", "-key", f"{ca}.key", "-days", "2",
            "-extfile", "ca.ext", "-out", f"{ca}.crt")
    new_key("server")
    run("req", "-new", "-key", "server.key", "-subj", f"/CN={names[0] if names else host}",
        "-out", "server.csr")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", "2", "-days", "2", "-extfile", "server.ext", "-out", "server.crt")
    (d / "server.key").chmod(0o600)
    return Certificates(d / "ca.crt", d / "server.crt", d / "server.key", d / "other-ca.crt")


@dataclass(frozen=True)
class _Server:
    """Where PgBouncer reaches the real server, parsed from its SQLAlchemy URL."""

    host: str  # a hostname, an IP, or a unix-socket directory
    port: int
    database: str
    user: str
    password: str | None


def _server(url: str) -> _Server:
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or "/tmp"  # libpq's default socket dir
    if isinstance(host, tuple):  # several hosts: PgBouncer takes one
        host = host[0]
    return _Server(str(host), int(parsed.port or parsed.query.get("port") or 5432),
                   parsed.database or "postgres", parsed.username or "postgres",
                   parsed.password or None)


def _db_key(name: str) -> str:
    """A database name as a [databases] key (quoted only when it has to be)."""
    return name if re.fullmatch(r"[A-Za-z0-9_]+", name) else '"' + name + '"'


def _quote(value: str) -> str:
    """A value in a PgBouncer connection string (single-quoted if it needs it)."""
    if re.fullmatch(r"[A-Za-z0-9_./:-]+", value):
        return value
    return "'" + value.replace("'", "''") + "'"


class PgBouncer:
    """One PgBouncer process of this notebook, in front of the server ``server_url`` names.

    ``await bouncer.start()`` … ``await bouncer.stop()`` (or ``async with``).
    ``bouncer.url()`` is the asyncpg URL a client uses to go through it.
    """

    def __init__(self, server_url: str, *, pool_mode: PoolMode = "transaction",
                 pool_size: int = 5, max_prepared_statements: int | None = None,
                 tls: Certificates | None = None, binary: Path | None = None,
                 application_name: str = "tutorial-pgbouncer") -> None:
        found = binary or find_pgbouncer()
        if found is None:
            raise PgBouncerError(problems.NO_PGBOUNCER.message())
        self.binary = found
        self.version = pgbouncer_version(found)
        self.server = _server(server_url)
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        if max_prepared_statements and self.version < PREPARED_STATEMENTS_SINCE:
            raise PgBouncerError(problems.PREPARED_STATEMENTS_NEED_1_21.message(
                version=self.version_text))
        self.max_prepared_statements = max_prepared_statements
        self.tls = tls
        self.application_name = application_name
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # --- what the notebook reads ------------------------------------------------------

    @property
    def version_text(self) -> str:
        return "PgBouncer " + ".".join(map(str, self.version))

    @property
    def supports_prepared_statements(self) -> bool:
        """True if this PgBouncer can track prepared statements (``max_prepared_statements``)."""
        return self.version >= PREPARED_STATEMENTS_SINCE

    @property
    def directory(self) -> Path:
        if self._tmp is None:
            raise PgBouncerError(problems.PGBOUNCER_NOT_STARTED.message())
        return Path(self._tmp.name)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def url(self, **query: str) -> str:
        """The asyncpg URL through PgBouncer: same user, password and database name."""
        s = self.server
        return URL.create("postgresql+asyncpg", username=s.user, password=s.password,
                          host=LOOPBACK, port=self.port, database=s.database,
                          query=query).render_as_string(hide_password=False)

    def config(self) -> str:
        """The pgbouncer.ini it runs with (holds no password: that is in the auth_file)."""
        return (self.directory / "pgbouncer.ini").read_text()

    def settings(self) -> str:
        """The lines of the config a lesson talks about, one per line."""
        keep = ("pool_mode", "default_pool_size", "max_prepared_statements", "auth_type",
                "client_tls_sslmode", "listen_addr", "listen_port")
        return "\n".join(ln for ln in self.config().splitlines() if ln.split(" =")[0] in keep)

    def log(self) -> list[str]:
        """PgBouncer's log lines so far."""
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def logins(self) -> list[str]:
        """``login attempt: db=… user=… tls=…`` lines, as PgBouncer logged them."""
        return [ln.split("login attempt: ", 1)[1] for ln in self.log() if "login attempt: " in ln]

    def describe(self) -> str:
        s = self.server
        behind = f"unix socket {s.host}" if s.host.startswith("/") else f"{s.host}:{s.port}"
        tls = ", TLS for clients" if self.tls else ""
        return (f"{self.version_text} on {LOOPBACK}:{self.port} ({self.pool_mode} pooling, "
                f"{self.pool_size} server connections at most{tls}) in front of {behind}")

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, *, timeout: float = 10.0) -> PgBouncer:
        """Write the config, start the process, return once it accepts connections.

        The wait is awaited, so the notebook's event loop (and anything else on it) keeps
        running while PgBouncer comes up. After :meth:`stop`, this restarts it on the
        same port, with no server connections: new connections from engines made from
        :meth:`url` reach it, but the ones already in an engine's pool died with the old
        process (dispose such an engine before :meth:`stop`).
        """
        if self.running:
            return self
        self._tmp = tempfile.TemporaryDirectory(prefix="tutorial-pgbouncer-")
        run_as = _run_as()
        # A restart keeps the port, which the URLs of the notebook's engines name.
        kept = self.port
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTART_WAIT
        attempt = 0
        while True:
            self.port = kept or free_port()
            self._write_config(run_as)
            # -q: log to the logfile only; stderr keeps what comes before it (config errors).
            with open(self.directory / "stderr.log", "wb") as stderr:
                self._process = subprocess.Popen(
                    [str(self.binary), "-q", str(self.directory / "pgbouncer.ini")],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                    start_new_session=True,  # a Ctrl-C in a terminal kernel goes to us, not it
                    **_user_kwargs(run_as),
                )
            atexit.register(self._stop_now)
            problem = await self._wait_until_accepting(timeout)
            if problem is None:
                return self
            self._stop_now(keep_files=True)
            attempt += 1
            # It logs "cannot listen on ADDRESS: bind(): Address already in use" (a warning),
            # then "FATAL nowhere to listen on".
            if any("Address already in use" in ln for ln in self.log()):
                # First start: another program took the free port first; try another one.
                if not kept and attempt < 3:
                    continue
                # Restart: the port may be a client's for a moment (free_port draws from the
                # range the OS also gives outgoing connections); wait for it, then give up
                # with the paragraph that says what to do.
                if kept and loop.time() < deadline:
                    await asyncio.sleep(0.25)
                    continue
                if kept:
                    self._cleanup()
                    raise PgBouncerError(problems.PGBOUNCER_PORT_TAKEN.message(
                        address=f"{LOOPBACK}:{kept}", seconds=f"{RESTART_WAIT:g}"))
            self._cleanup()
            raise PgBouncerError(problems.PGBOUNCER_DID_NOT_START.message(reason=problem))

    async def stop(self) -> None:
        """Stop the process at once and remove its directory.

        The immediate shutdown: SIGTERM before 1.23, SIGQUIT from 1.23 on (where SIGTERM
        waits for every client to disconnect, ``SIGQUIT_STOPS_SINCE``); SIGKILL if it is
        still running 5 s later. Its client connections close with it. Waiting for the
        process to exit happens in a worker thread, off the event loop.
        """
        await asyncio.to_thread(self._stop_now)

    async def __aenter__(self) -> PgBouncer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _stop_now(self, *, keep_files: bool = False) -> None:
        """``stop``, blocking: also what runs at interpreter exit if a notebook never stopped it."""
        process, self._process = self._process, None
        if process is not None:
            atexit.unregister(self._stop_now)
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT if self.version >= SIGQUIT_STOPS_SINCE
                                    else signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        if not keep_files:
            self._cleanup()

    def _cleanup(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()

    async def _wait_until_accepting(self, timeout: float) -> str | None:
        """None once PgBouncer listens on its port and it accepts; else the reason from its log.

        A connection that succeeds is not enough: another program listening on the port
        accepts it too, before PgBouncer fails to bind. PgBouncer logs ``listening on
        ADDRESS`` once its own listen() has succeeded (``pooler.c``), so that line comes first.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        listening = f" listening on {LOOPBACK}:{self.port}"
        assert self._process is not None
        while loop.time() < deadline:
            if self._process.poll() is not None:
                early = self.directory / "stderr.log"
                lines = early.read_text(errors="replace").splitlines() if early.exists() else []
                errors = [ln for ln in lines + self.log() if " FATAL " in ln or " ERROR " in ln]
                return (errors[-1].split(" ", 3)[-1] if errors
                        else f"it exited with code {self._process.returncode}")
            if not any(ln.endswith(listening) for ln in self.log()):
                await asyncio.sleep(0.02)
                continue
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(0.2):
                    _, writer = await asyncio.open_connection(LOOPBACK, self.port)
                writer.close()
                await writer.wait_closed()
                return None
            await asyncio.sleep(0.02)
        return f"nothing accepted connections on {LOOPBACK}:{self.port} within {timeout:.0f} s"

    def _write_config(self, run_as: pwd.struct_passwd | None) -> None:
        d = self.directory
        s = self.server
        auth_type = "scram-sha-256" if s.password else "trust"
        # Plain-text password: PgBouncer needs it to answer the server's own SCRAM
        # challenge. Readable by PgBouncer only; removed with the directory.
        users = d / "userlist.txt"
        users.write_text(f'"{s.user}" "{(s.password or "").replace(chr(34), chr(34) * 2)}"\n')
        users.chmod(0o600)
        target = (f"host={_quote(s.host)} port={s.port} dbname={_quote(s.database)} "
                  f"application_name={_quote(self.application_name)}")
        lines = [
            "[databases]",
            f"{_db_key(s.database)} = {target}",
            "",
            "[pgbouncer]",
            f"listen_addr = {LOOPBACK}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",  # TCP on loopback only: no socket file in /tmp
            f"auth_type = {auth_type}",
            f"auth_file = {users}",
            f"pool_mode = {self.pool_mode}",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 200",
            f"logfile = {d / 'pgbouncer.log'}",
            "server_login_retry = 1",
        ]
        if self.supports_prepared_statements:
            # Say it explicitly: the default changed (0 until 1.23, 200 from 1.24).
            lines.append(f"max_prepared_statements = {self.max_prepared_statements or 0}")
        if self.tls is not None:
            for name in ("server_cert", "server_key"):
                shutil.copy(getattr(self.tls, name), d / f"tls-{name}.pem")
            (d / "tls-server_key.pem").chmod(0o600)
            lines += ["client_tls_sslmode = require",
                      f"client_tls_cert_file = {d / 'tls-server_cert.pem'}",
                      f"client_tls_key_file = {d / 'tls-server_key.pem'}"]
        (d / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        if run_as is not None:
            for path in (d, *d.iterdir()):
                os.chown(path, run_as.pw_uid, run_as.pw_gid)


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user PgBouncer runs as when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in _RUN_AS_WHEN_ROOT:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PgBouncerError(problems.PGBOUNCER_AS_ROOT.message(users=", ".join(_RUN_AS_WHEN_ROOT)))


def _user_kwargs(run_as: pwd.struct_passwd | None) -> dict[str, object]:
    if run_as is None:
        return {}
    return {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}


async def start_if_installed(server_url: str, **options: object) -> PgBouncer | None:
    """Start a PgBouncer in front of ``server_url``, or say in one line why not.

    Returns the running PgBouncer (its description printed), or None when no
    binary is installed, so the lesson's PgBouncer cells can skip quietly.
    Where ``TUTORIAL_PGBOUNCER=required`` (CI), a missing binary raises instead.
    """
    if find_pgbouncer() is None and not required():
        print("PgBouncer is not installed, so the PgBouncer cells below do nothing; "
              "the paragraph above says how to install it.")
        return None
    bouncer = PgBouncer(server_url, **options)  # type: ignore[arg-type]
    await bouncer.start()
    print(bouncer.describe())
    return bouncer
