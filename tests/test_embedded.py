"""The embedded server touches only its own data directory and its own processes.

Each test here uses a server of its own in a fresh folder (never the repo's
``.pgdata`` nor the session's ``embedded_pgdata``), so stopping it disturbs no
other test.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tutorial_kit import __main__ as cli
from tutorial_kit import database, embedded
from tutorial_kit.database import one_off_connection, run_sync
from tutorial_kit.embedded import EmbeddedServerError

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def parent() -> Iterator[Path]:
    """A folder other users may enter but not list (0711), holding the data directory."""
    folder = Path(tempfile.mkdtemp(prefix="tutorial-parent-"))
    folder.chmod(0o711)
    yield folder
    embedded.stop(folder / "pgdata", mode="immediate")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pgdata(parent: Path, monkeypatch) -> Path:
    """That server's data directory, and the CLI pointed at it (as TUTORIAL_PGDATA would)."""
    data = parent / "pgdata"
    monkeypatch.setattr(database, "EMBEDDED_DIR", data)
    monkeypatch.setattr(cli, "EMBEDDED_DIR", data)
    return data


def test_only_the_data_directory_gets_0700(parent: Path, pgdata: Path) -> None:
    before = {p: mode(p) for p in (parent, *parent.parents)}
    database.start_embedded(pgdata)
    assert mode(pgdata) == 0o700
    after = {p: mode(p) for p in (parent, *parent.parents)}
    assert after == before, "a parent folder's permissions changed"


@pytest.mark.skipif(not ROOT, reason="as root only: the server then runs as another user")
def test_a_parent_the_server_user_cannot_enter_is_named_not_opened() -> None:
    closed = Path(tempfile.mkdtemp(prefix="tutorial-closed-"))  # mkdtemp: mode 0700
    try:
        with pytest.raises(EmbeddedServerError) as info:
            embedded.start(closed / "pgdata")
        assert mode(closed) == 0o700
        message = str(info.value)
        assert f"cannot enter {closed} (mode 700)" in message and "TUTORIAL_PGDATA" in message
        assert len(info.value._render_traceback_()) <= 6
    finally:
        shutil.rmtree(closed, ignore_errors=True)


@pytest.fixture
def foreign_process(pgdata: Path) -> Iterator[subprocess.Popen]:
    """A live process that is not our server, run by the server's own user when we are root
    (so ``pg_ctl stop`` could signal it if it trusted a stale ``postmaster.pid``)."""
    user = embedded.server_user()
    proc = subprocess.Popen(["sleep", "120"], user=user)
    yield proc
    proc.kill()
    proc.wait()


def forge_stale_pidfile(pgdata: Path, pid: int) -> None:
    """Stop the real server and leave a postmaster.pid that names ``pid`` instead."""
    database.start_embedded(pgdata)
    real = (pgdata / "postmaster.pid").read_text().splitlines()
    embedded.stop(pgdata)
    assert not (pgdata / "postmaster.pid").exists()
    (pgdata / "postmaster.pid").write_text("\n".join([str(pid), *real[1:]]) + "\n")


def test_db_stop_never_signals_a_foreign_pid(pgdata: Path, foreign_process, capsys) -> None:
    forge_stale_pidfile(pgdata, foreign_process.pid)
    assert cli.main(["stop"]) == 0
    out = capsys.readouterr().out
    assert foreign_process.poll() is None, "make db-stop signalled a process that is not ours"
    assert f"stale postmaster.pid: its PID {foreign_process.pid}" in out
    assert "nothing was signalled" in out


def test_db_stop_never_signals_another_postgres(pgdata: Path, password_server, capsys) -> None:
    other = embedded.Postmaster.read(password_server.data)
    assert other is not None
    forge_stale_pidfile(pgdata, other.pid)
    assert cli.main(["stop"]) == 0
    assert "stale" in capsys.readouterr().out
    assert password_server.psql("SELECT 1") == "1", "another data directory's server was stopped"


def test_make_db_with_a_stale_pid_starts_a_real_server(pgdata: Path, foreign_process,
                                                       monkeypatch, capsys) -> None:
    forge_stale_pidfile(pgdata, foreign_process.pid)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(database, "_verified", set())
    monkeypatch.setattr(database, "COMPOSE_URL", "postgresql+asyncpg://t:t@127.0.0.1:1/t")
    assert cli.main(["up"]) == 0
    assert "Database: embedded" in capsys.readouterr().out
    info, note = embedded.running(pgdata)
    assert info is not None and info.pid != foreign_process.pid, note
    assert foreign_process.poll() is None
    run_sync(answers(database.start_embedded(pgdata)))


async def answers(url: str) -> None:
    async with one_off_connection(url, timeout=5) as conn:
        assert await conn.scalar(text("SELECT 1")) == 1


def test_our_postmaster_checks_program_and_data_directory(pgdata: Path) -> None:
    database.start_embedded(pgdata)
    info = embedded.Postmaster.read(pgdata)
    assert info is not None
    assert embedded.our_postmaster(pgdata, info.pid) is not None
    assert embedded.our_postmaster(pgdata.parent, info.pid) is None  # another directory
    assert embedded.our_postmaster(pgdata, os.getpid()) is None  # not a postgres
