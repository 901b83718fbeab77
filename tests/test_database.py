"""tutorial_kit.database: resolution order and one clear sentence per bad input."""

from __future__ import annotations

import socket

import pytest

from tutorial_kit import database
from tutorial_kit.database import DatabaseConfigError, check_async_url, find_database


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url", [
    "postgresql://u:p@localhost/db",
    "postgresql+psycopg2://u:p@localhost/db",
    "postgresql+psycopg://u:p@localhost/db",
])
def test_sync_driver_is_refused_with_the_fix(url: str, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(DatabaseConfigError, match=r"synchronous driver.*postgresql\+asyncpg://"):
        find_database()


def test_not_postgres_or_not_a_url() -> None:
    with pytest.raises(DatabaseConfigError, match="needs PostgreSQL"):
        check_async_url("sqlite+aiosqlite:///x.db")
    with pytest.raises(DatabaseConfigError, match="not a database URL"):
        check_async_url("not a url")


def test_unreachable_host(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql+asyncpg://u:p@127.0.0.1:{closed_port()}/db")
    with pytest.raises(DatabaseConfigError, match=r"cannot reach the server.*unset DATABASE_URL"):
        find_database()


def test_wrong_password(monkeypatch, password_server) -> None:
    monkeypatch.setenv("DATABASE_URL", password_server.url.replace("harness-secret", "nope"))
    with pytest.raises(DatabaseConfigError, match=r"wrong password.*Fix the password"):
        find_database()


def test_missing_database(monkeypatch, password_server) -> None:
    monkeypatch.setenv("DATABASE_URL", password_server.admin_url("no_such_db"))
    with pytest.raises(DatabaseConfigError, match=r"database does not exist.*createdb"):
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
