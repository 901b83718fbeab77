"""tutorial_kit.pgbouncer: a real PgBouncer in front of both test servers, TLS, cleanup.

Where no pgbouncer binary exists these tests skip, unless TUTORIAL_PGBOUNCER=required
(CI sets it): then a missing binary is a failure, so lessons 13 and 15 never
pass CI by skipping their point.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import ssl
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tutorial_harness import REPO
from tutorial_kit import pgbouncer
from tutorial_kit.database import one_off_connection, start_embedded
from tutorial_kit.net import LOOPBACK, port_in_use

BINARY = pgbouncer.find_pgbouncer()
needs_binary = pytest.mark.skipif(BINARY is None and not pgbouncer.required(),
                                  reason="no pgbouncer binary (set TUTORIAL_PGBOUNCER=required "
                                         "to make this a failure)")
SAFE_ARGS = {"statement_cache_size": 0, "prepared_statement_cache_size": 0,
             "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__"}


def test_pgbouncer_is_installed_where_required() -> None:
    if pgbouncer.required():
        assert BINARY is not None, "TUTORIAL_PGBOUNCER=required but no pgbouncer binary found"
        assert pgbouncer.pgbouncer_version(BINARY) >= (1, 12)
    elif BINARY is None:
        pytest.skip("no pgbouncer binary here")


def test_ci_installs_pgbouncer_and_requires_it() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "pgbouncer" in ci and "apt-get install" in ci
    assert "TUTORIAL_PGBOUNCER=required" in ci


def test_compose_has_a_loopback_pgbouncer_in_transaction_mode() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    bouncer = services["pgbouncer"]
    assert all(p.startswith("127.0.0.1:") for p in bouncer["ports"]), "publish on loopback only"
    assert bouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = bouncer["environment"]
    assert env["POOL_MODE"] == "transaction"
    assert env["DB_HOST"] == "postgres"
    postgres = services["postgres"]["environment"]
    assert (env["DB_USER"], env["DB_PASSWORD"], env["DB_NAME"]) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])


def test_environment_yml_brings_pgbouncer_from_conda_forge() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    names = [re.split(r"[<>=]", d)[0] for d in env["dependencies"] if isinstance(d, str)]
    assert "pgbouncer" in names and "openssl" in names


def test_missing_binary_is_one_sentence(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.setattr(pgbouncer, "_CANDIDATES", ())
    assert pgbouncer.find_pgbouncer() is None
    with pytest.raises(pgbouncer.PgBouncerError, match="apt install pgbouncer"):
        pgbouncer.PgBouncer("postgresql+asyncpg://u@/db?host=/tmp")


async def _server_connections(url: str) -> int:
    async with one_off_connection(url) as conn:
        return int(await conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")))


async def _through(bouncer: pgbouncer.PgBouncer, **connect_args: object) -> int:
    async with one_off_connection(bouncer.url(), **connect_args) as conn:
        return int(await conn.scalar(text("SELECT 41 + 1")))


async def _round_trip(server_url: str, **options: object) -> tuple[pgbouncer.PgBouncer, Path]:
    bouncer = pgbouncer.PgBouncer(server_url, **options)  # type: ignore[arg-type]
    await bouncer.start()
    directory = bouncer.directory
    try:
        assert port_in_use(bouncer.port)
        assert await _through(bouncer, **SAFE_ARGS) == 42
    finally:
        await bouncer.stop()
    return bouncer, directory


@needs_binary
@pytest.mark.asyncio
async def test_embedded_server_over_its_unix_socket(embedded_pgdata: Path) -> None:
    url = start_embedded(embedded_pgdata)
    bouncer, directory = await _round_trip(url)
    assert not port_in_use(bouncer.port), "PgBouncer still listens after stop()"
    assert not directory.exists(), "its temporary directory was not removed"
    assert not bouncer.running
    assert await _server_connections(url) == 0, "PgBouncer's server connections remain"


@needs_binary
@pytest.mark.asyncio
async def test_a_restart_keeps_the_port(embedded_pgdata: Path) -> None:
    """Lesson 13 restarts its PgBouncer: new connections from url() reach it again, but a
    connection pooled before the restart died with the old process (the lesson disposes
    such an engine first)."""
    url = start_embedded(embedded_pgdata)
    bouncer = await pgbouncer.PgBouncer(url).start()
    engine = create_async_engine(bouncer.url(), connect_args=SAFE_ARGS)
    try:
        async with engine.connect() as conn:   # stays in the engine's pool
            await conn.execute(text("SELECT 1"))
        port = bouncer.port
        await bouncer.stop()
        await bouncer.start()
        assert bouncer.port == port
        assert await _through(bouncer, **SAFE_ARGS) == 42
        with pytest.raises(DBAPIError, match="connection is closed"):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        await engine.dispose()
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT 41 + 1")) == 42
    finally:
        await engine.dispose()
        await bouncer.stop()


@needs_binary
@pytest.mark.asyncio
async def test_a_restart_waits_for_its_port_then_says_it_is_taken(
        embedded_pgdata: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program on the kept port: a restart waits for it, then names the fix.

    Before PgBouncer fails to bind, the other program accepts connections on the port,
    so start() must not take an accepted connection for PgBouncer's.
    """
    monkeypatch.setattr(pgbouncer, "RESTART_WAIT", 1.0)
    url = start_embedded(embedded_pgdata)
    bouncer, _ = await _round_trip(url)
    port = bouncer.port
    refused = rf"could not start again on {LOOPBACK}:{port}.*restart the kernel"
    with socket.create_server((LOOPBACK, port)), pytest.raises(pgbouncer.PgBouncerError,
                                                               match=refused):
        await bouncer.start()
    assert not bouncer.running
    taken = socket.create_server((LOOPBACK, port))
    asyncio.get_running_loop().call_later(0.3, taken.close)   # freed while start() waits
    await bouncer.start()
    try:
        assert bouncer.port == port
        assert await _through(bouncer, **SAFE_ARGS) == 42
    finally:
        taken.close()
        await bouncer.stop()


@needs_binary
@pytest.mark.asyncio
async def test_stop_is_immediate_while_clients_are_connected(embedded_pgdata: Path) -> None:
    """stop() is PgBouncer's immediate shutdown on every version: SIGTERM before 1.23, SIGQUIT
    from 1.23, where SIGTERM waits for the clients to disconnect (the changelog of 1.23.0)."""
    url = start_embedded(embedded_pgdata)
    bouncer = await pgbouncer.PgBouncer(url).start()
    engine = create_async_engine(bouncer.url(), connect_args=SAFE_ARGS)
    try:
        async with engine.connect() as conn:   # an idle client of PgBouncer from here on
            await conn.execute(text("SELECT 1"))
        started = time.monotonic()
        await bouncer.stop()
        assert time.monotonic() - started < 2, "stop() waited for the idle client"
    finally:
        await engine.dispose()
        await bouncer.stop()


def default_signals() -> None:
    for number in (signal.SIGTERM, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)


@pytest.mark.parametrize(("version", "sent"), [((1, 18, 0), signal.SIGTERM),
                                               ((1, 22, 1), signal.SIGTERM),
                                               ((1, 23, 0), signal.SIGQUIT),
                                               ((1, 25, 1), signal.SIGQUIT)])
def test_stop_sends_the_immediate_shutdown_signal_of_each_version(
        version: tuple[int, ...], sent: signal.Signals) -> None:
    bouncer = object.__new__(pgbouncer.PgBouncer)   # no binary needed: a stand-in process
    bouncer.version = version
    bouncer._tmp = None
    # The stand-in starts with the default action for both signals: a shell that runs a
    # command in the background (`cmd &`) starts it with SIGQUIT and SIGINT ignored.
    process = bouncer._process = subprocess.Popen(["sleep", "60"], preexec_fn=default_signals)
    bouncer._stop_now()
    assert process.returncode == -sent


@needs_binary
@pytest.mark.asyncio
async def test_start_leaves_the_event_loop_free(embedded_pgdata: Path) -> None:
    """While PgBouncer comes up, other tasks on the notebook's loop keep running."""
    url = start_embedded(embedded_pgdata)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    try:
        async with pgbouncer.PgBouncer(url):
            assert ticks > 1, "start() held the loop until PgBouncer accepted connections"
    finally:
        ticker.cancel()


@needs_binary
@pytest.mark.asyncio
async def test_password_server_with_scram_and_a_private_auth_file(password_server) -> None:
    bouncer = await pgbouncer.PgBouncer(password_server.url).start()
    try:
        config = bouncer.config()
        assert "auth_type = scram-sha-256" in config
        assert "harness-secret" not in config and "harness-secret" not in bouncer.describe()
        users = bouncer.directory / "userlist.txt"
        assert stat.S_IMODE(users.stat().st_mode) == 0o600
        assert await _through(bouncer, **SAFE_ARGS) == 42
        wrong = bouncer.url().replace("harness-secret", "not-the-password")
        with pytest.raises(Exception, match=r"password authentication failed|SASL"):
            async with one_off_connection(wrong):
                pass
    finally:
        await bouncer.stop()
    assert await _server_connections(password_server.url) == 0


@needs_binary
@pytest.mark.asyncio
async def test_transaction_pooling_breaks_asyncpg_default_caches(embedded_pgdata: Path) -> None:
    """The lesson's failure is real: a cached statement meets another server connection."""
    url = start_embedded(embedded_pgdata)

    async def scenario() -> str:
        async with pgbouncer.PgBouncer(url, pool_size=2) as bouncer:
            engine = create_async_engine(bouncer.url())
            other = create_async_engine(bouncer.url(), poolclass=NullPool)
            query = text("SELECT count(*) FROM pg_class WHERE relname = :n")
            try:
                async with engine.connect() as conn:
                    await conn.execute(query, {"n": "a"})
                    await conn.commit()
                    async with other.connect() as pin:
                        await pin.execute(text("SELECT 1"))
                        try:
                            await conn.execute(query, {"n": "b"})
                        except Exception as err:
                            return str(err)
                return "no error"
            finally:
                await engine.dispose()
                await other.dispose()

    assert "does not exist" in await scenario()


def test_max_prepared_statements_needs_1_21(embedded_pgdata: Path) -> None:
    if BINARY is None:
        pytest.skip("no pgbouncer binary here")
    bouncer_version = pgbouncer.pgbouncer_version(BINARY)
    if bouncer_version >= (1, 21):
        pytest.skip("this PgBouncer supports max_prepared_statements")
    with pytest.raises(pgbouncer.PgBouncerError, match=r"1\.21"):
        pgbouncer.PgBouncer("postgresql+asyncpg://u@/db?host=/tmp", max_prepared_statements=100)


@needs_binary
@pytest.mark.asyncio
async def test_client_tls_verifies_against_the_right_ca_only(embedded_pgdata: Path,
                                                              tmp_path: Path) -> None:
    url = start_embedded(embedded_pgdata)
    certs = pgbouncer.make_certificates(tmp_path / "pki")
    async with pgbouncer.PgBouncer(url, pool_mode="session", tls=certs) as bouncer:
        good = ssl.create_default_context(cafile=certs.ca)
        assert await _through(bouncer, ssl=good) == 42
        assert bouncer.logins()[-1].split("tls=")[1].startswith("TLS")
        wrong = ssl.create_default_context(cafile=certs.other_ca)
        with pytest.raises(ssl.SSLCertVerificationError):
            await _through(bouncer, ssl=wrong)
        with pytest.raises(Exception, match="SSL required"):
            await _through(bouncer, ssl=False)
    assert await _server_connections(url) == 0
