"""tutorial_kit.database: resolution order and one clear sentence per bad input."""

from __future__ import annotations

import socket
import time

import pytest

from tutorial_kit import database
from tutorial_kit.database import DatabaseConfigError, find_database, normalize_url, psycopg_url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://u:p@localhost/db",
    "postgresql+pg8000://u:p@localhost/db",
])
def test_sync_driver_is_refused_with_the_fix(url: str, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(DatabaseConfigError, match=r"synchronous driver.*postgresql\+asyncpg://"):
        find_database()


@pytest.mark.parametrize("url", ["postgresql+psycopg://u:p@localhost/db",
                                 "postgresql+psycopg_async://u:p@localhost/db"])
def test_psycopg3_is_not_called_synchronous(url: str) -> None:
    with pytest.raises(DatabaseConfigError) as info:
        normalize_url(url)
    message = str(info.value)
    assert "synchronous" not in message and "psycopg works with asyncio" in message
    assert "postgresql+asyncpg://" in message


def test_not_postgres_or_not_a_url() -> None:
    with pytest.raises(DatabaseConfigError, match="needs PostgreSQL"):
        normalize_url("sqlite+aiosqlite:///x.db")
    with pytest.raises(DatabaseConfigError, match="not a database URL"):
        normalize_url("not a url")


@pytest.mark.parametrize(("url", "suggested"), [
    ("postgressql+asyncpg://u:p@localhost/db", True), ("postgre://u:p@localhost/db", True),
    ("mysql+aiomysql://u:p@localhost/db", False), ("sqlite+aiosqlite:///x.db", False)])
def test_a_misspelt_backend_gets_the_name_it_missed(url: str, suggested: bool) -> None:
    with pytest.raises(DatabaseConfigError, match="needs PostgreSQL") as info:
        normalize_url(url)
    assert ("did you mean 'postgresql'?" in str(info.value)) is suggested


def test_unreachable_host(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql+asyncpg://u:p@127.0.0.1:{closed_port()}/db")
    with pytest.raises(DatabaseConfigError, match=r"nothing answers at.*unset DATABASE_URL"):
        find_database()


def test_wrong_password(monkeypatch, password_server) -> None:
    monkeypatch.setenv("DATABASE_URL", password_server.url.replace("harness-secret", "nope"))
    with pytest.raises(DatabaseConfigError,
                       match=r"password authentication failed.*password is wrong.*no user of "
                             r"that name.*Fix the password or the user name"):
        find_database()


def test_missing_database(monkeypatch, password_server) -> None:
    monkeypatch.setenv("DATABASE_URL", password_server.admin_url("no_such_db"))
    with pytest.raises(DatabaseConfigError,
                       match=r"database no_such_db does not exist.*CREATE DATABASE no_such_db;"
                             r".*createdb no_such_db"):
        find_database()


def test_password_is_hidden_in_messages(monkeypatch, password_server) -> None:
    monkeypatch.setenv("DATABASE_URL", password_server.url.replace("harness-secret", "s3cr3t"))
    with pytest.raises(DatabaseConfigError) as info:
        find_database()
    assert "s3cr3t" not in str(info.value) and "***" in str(info.value)


def test_database_url_wins(monkeypatch, password_server, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", password_server.url)
    assert database.database_url() == password_server.url
    line = capsys.readouterr().out.strip()
    assert line.startswith("Database: DATABASE_URL") and "harness-secret" not in line
    assert len(line.splitlines()) == 1


def test_unix_socket_url_is_accepted(monkeypatch, embedded_pgdata) -> None:
    url = database.start_embedded(embedded_pgdata)
    assert "?host=" in url
    monkeypatch.setenv("DATABASE_URL", url)
    assert find_database().source == "DATABASE_URL"


def test_compose_is_used_when_it_answers(monkeypatch, password_server) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(database, "COMPOSE_URL", password_server.url)
    db = find_database()
    assert (db.source, db.url) == ("compose", password_server.url)


def test_embedded_when_nothing_answers(monkeypatch, embedded_pgdata) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(database, "COMPOSE_URL",
                        f"postgresql+asyncpg://tutorial:tutorial@127.0.0.1:{closed_port()}/tutorial")
    monkeypatch.setattr(database, "EMBEDDED_DIR", embedded_pgdata)
    db = find_database()
    assert db.source == "embedded" and "nothing answers" in db.reason


def test_embedded_when_5432_belongs_to_someone_else(monkeypatch, password_server,
                                                   embedded_pgdata) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(database, "COMPOSE_URL", password_server.url.replace("harness-secret", "x"))
    monkeypatch.setattr(database, "EMBEDDED_DIR", embedded_pgdata)
    db = find_database()
    assert db.source == "embedded" and "refuses the compose credentials" in db.reason


def test_docker_client_without_engine_is_not_an_engine(monkeypatch, tmp_path) -> None:
    from tutorial_kit.__main__ import docker_engine_running

    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Docker version 28' && exit 0\n"
                    "echo 'Cannot connect to the Docker daemon' >&2; exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}")
    assert docker_engine_running() is False


# --- URLs as people write them -----------------------------------------

@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_plain_and_heroku_style_urls_are_mapped_to_asyncpg(scheme: str, monkeypatch, capsys,
                                                           password_server) -> None:
    plain = password_server.url.replace("postgresql+asyncpg", scheme)
    monkeypatch.setenv("DATABASE_URL", plain)
    assert database.database_url() == password_server.url  # what engines get
    line = capsys.readouterr().out
    assert "-> postgresql+asyncpg://postgres:***@" in line
    assert f"{scheme}:// read as postgresql+asyncpg://" in line and "harness-secret" not in line


@pytest.mark.parametrize("mode", database.SSL_MODES)
def test_libpq_sslmode_becomes_asyncpg_ssl(mode: str) -> None:
    url, notes = database.normalize_url(f"postgresql://u:p@db.example.com/app?sslmode={mode}")
    assert url == f"postgresql+asyncpg://u:p@db.example.com/app?ssl={mode}"
    assert f"sslmode={mode} read as asyncpg's ssl={mode}" in notes


def test_sslmode_against_a_server_without_ssl(monkeypatch, password_server) -> None:
    monkeypatch.setenv("DATABASE_URL", password_server.url + "?sslmode=prefer")
    assert find_database().url.endswith("?ssl=prefer")  # prefer falls back to plain
    monkeypatch.setenv("DATABASE_URL", password_server.url + "?sslmode=require")
    with pytest.raises(DatabaseConfigError, match=r"does not accept SSL.*sslmode=prefer"):
        find_database()


def test_unknown_sslmode_is_named() -> None:
    with pytest.raises(DatabaseConfigError, match="verify-full"):
        normalize_url("postgresql://u:p@h/db?sslmode=sometimes")


def test_silent_server_times_out_naming_host_and_port(monkeypatch) -> None:
    """Something accepts TCP on the port but never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        monkeypatch.setenv("DATABASE_URL", f"postgresql+asyncpg://u:p@127.0.0.1:{port}/db")
        t0 = time.perf_counter()
        with pytest.raises(DatabaseConfigError) as info:
            find_database()
        elapsed = time.perf_counter() - t0
    assert elapsed < 10
    assert f"127.0.0.1:{port} did not answer within 5 s" in str(info.value)


def test_no_password_is_not_called_a_wrong_password(monkeypatch, password_server) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("DATABASE_URL", password_server.url.replace(":harness-secret", ""))
    with pytest.raises(DatabaseConfigError) as info:
        find_database()
    message = str(info.value)
    assert "asks for a password" in message and "has none" in message
    assert "password is wrong" not in message


def test_unencoded_at_in_password_is_explained_without_showing_it(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://learner:Xy7qK2@Zr9wQ4@db.example.com/app")
    with pytest.raises(DatabaseConfigError) as info:
        find_database()
    message = str(info.value)
    assert "%40" in message and "Percent-encode" in message
    for piece in ("Xy7qK2", "Zr9wQ4", "Xy7", "Zr9", "wQ4"):
        assert piece not in message


def test_unreachable_remote_host_is_not_told_make_db_only(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:p@db.example.invalid:5433/app")
    with pytest.raises(DatabaseConfigError) as info:
        find_database()
    message = str(info.value)
    assert "cannot reach db.example.invalid:5433" in message
    assert "Check the host name and port" in message and "firewall" in message
    fix = message.split(". ", 1)[1]
    assert not fix.startswith(("Start", "make db", "Run make db"))


def test_unreachable_local_port_names_the_port(monkeypatch) -> None:
    port = closed_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql+asyncpg://u:p@127.0.0.1:{port}/db")
    with pytest.raises(DatabaseConfigError, match=rf"nothing answers at 127\.0\.0\.1:{port}"):
        find_database()


# --- a role without CREATE -----------------------------------------------

@pytest.fixture
def no_create_role(password_server) -> str:
    """A login role on the password server that may connect but not create schemas."""
    password_server.psql("DROP ROLE IF EXISTS reader_nocreate; "
                         "CREATE ROLE reader_nocreate LOGIN PASSWORD 'nocreate-pw'")
    return password_server.url.replace("postgres:harness-secret", "reader_nocreate:nocreate-pw")


def test_role_without_create_gets_the_grant_to_ask_for(monkeypatch, no_create_role) -> None:
    monkeypatch.setenv("DATABASE_URL", no_create_role)
    with pytest.raises(DatabaseConfigError) as info:
        find_database()
    message = str(info.value)
    assert info.value.kind == "no-create"
    assert "GRANT CREATE ON DATABASE harness TO reader_nocreate;" in message
    assert "make db" in message and "unset DATABASE_URL" in message
    assert "nocreate-pw" not in message and len(message.splitlines()) == 1


def test_make_db_probe_reports_missing_create(monkeypatch, capsys, no_create_role) -> None:
    from tutorial_kit.__main__ import main

    monkeypatch.setenv("DATABASE_URL", no_create_role)
    assert main(["up"]) == 2
    assert "GRANT CREATE ON DATABASE harness TO reader_nocreate;" in capsys.readouterr().err


def test_the_probe_runs_once_per_kernel(monkeypatch, password_server) -> None:
    engines = []
    real = database.create_async_engine

    def counting(url: str, **kw):  # type: ignore[no-untyped-def]
        engines.append(url)
        return real(url, **kw)

    monkeypatch.setattr(database, "create_async_engine", counting)
    monkeypatch.setattr(database, "_verified", set())
    monkeypatch.setenv("DATABASE_URL", password_server.url)
    find_database()
    find_database()
    assert engines == [password_server.url], "the second call should not connect again"


def test_psycopg_url_keeps_the_server_and_renames_ssl() -> None:
    url = psycopg_url("postgresql+asyncpg://u:p%40w@h:5433/db?ssl=require")
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u", "p@w", "h", 5433, "db")
    assert dict(url.query) == {"sslmode": "require"}
    socket = psycopg_url("postgresql+asyncpg://postgres:@/postgres?host=/tmp/pg")
    assert dict(socket.query) == {"host": "/tmp/pg"}
