"""Command line for the Makefile: ``python -m tutorial_kit {up,url,reset,stop,lab,class}``.

up     start compose if a Docker engine runs, else make sure the embedded
       server is up; print which database the notebooks will use, where it
       runs and how to stop it
url    print only the URL (for scripts)
reset  drop this learner's tutorial schemas (and ones from before per-learner
       names) in that database; other learners' schemas stay. If it had to
       start the embedded server for that, it stops it again
stop   stop what the tutorial starts: docker compose's PostgreSQL if a Docker
       engine runs and the compose project is up, and the embedded server (its
       data stays in .pgdata/); say what was stopped, or that nothing ran
lab    lab [--] COMMAND...: run COMMAND (make lab: jupyter lab ...) while the
       database starts as ``up`` does; when COMMAND exits, stop the embedded
       server if this started it and no other client uses it (one that another
       process started stays)
class  instructor tools for a shared server: list, drop, budget
       (python -m tutorial_kit class --help; tutorial_kit/classroom.py)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc

from tutorial_kit import classroom, embedded
from tutorial_kit import setup_problems as problems
from tutorial_kit.database import (
    EMBEDDED_DIR,
    PROBE_LIMIT,
    REPO_ROOT,
    Database,
    DatabaseConfigError,
    embedded_url,
    find_database,
    run_sync,
)
from tutorial_kit.errors import TutorialError
from tutorial_kit.schema import current_learner


def docker_engine_running() -> bool:
    """True only if a Docker *engine* answers; a client alone is not enough."""
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def bring_up() -> Database:
    """Start compose or the embedded server (unless DATABASE_URL is set) and say which."""
    if not os.environ.get("DATABASE_URL"):
        if docker_engine_running():
            print("Docker engine found: docker compose up -d --wait")
            up = subprocess.run(["docker", "compose", "up", "-d", "--wait"], cwd=REPO_ROOT,
                                stderr=subprocess.PIPE, text=True, check=False)
            if up.returncode != 0:  # compose's own last words name the cause; no guess here
                said = [ln for ln in up.stderr.splitlines() if ln.strip()] or ["(nothing)"]
                raise TutorialError(problems.COMPOSE_UP_FAILED.message(
                    status=up.returncode, said=said[-1].strip()))
        else:
            # No promise of which server here: a server on localhost:5432 that accepts the
            # compose settings still comes first (find_database), Docker or not.
            print("No Docker engine answers (docker info failed or docker is missing), so "
                  "docker compose starts nothing.")
    db = find_database()
    print(db.describe())
    return db


def where(db: Database, *, lab: bool = False) -> str:
    """Where the database runs and what stops it, in one line; empty for DATABASE_URL's."""
    if db.source == "compose" and not docker_engine_running():
        return ("That server is not docker compose's (no Docker engine answers): the "
                "tutorial only uses it, and make stop leaves it alone.")
    if db.source == "compose":
        return ("docker compose's PostgreSQL keeps running"
                f"{' after JupyterLab stops' if lab else ''}: make stop stops it "
                "(docker compose stop).")
    if db.server is None:
        return ""  # the reader's own server: not the tutorial's to start or stop
    info = db.server.postmaster
    here = (f"The embedded PostgreSQL runs in {EMBEDDED_DIR} (PID {info.pid}, socket in "
            f"{info.socket_dir}).")
    if not lab:
        return f"{here} It keeps running for every notebook; make stop stops it."
    if db.server.started_here:
        return (f"{here} It stops when JupyterLab stops (Ctrl-C, or File > Shut Down) unless "
                "other clients still use it; make stop stops it sooner.")
    return f"{here} {not_started_here('make lab')}"


def not_started_here(command: str) -> str:
    """What ``command`` knows of an embedded server it found running: it did not start it.

    Not that the server ran "before": another process (a kernel, another make lab)
    may have started it a moment earlier, while ``command`` waited for its lock.
    """
    return (f"{command} did not start the embedded PostgreSQL (another process did), so it "
            "stays running; make stop stops it.")


def up() -> int:
    if line := where(bring_up()):
        print(line)
    return 0


def url() -> int:
    print(find_database().url)
    return 0


def reset() -> int:
    started: embedded.Started | None = None
    try:
        db = find_database()
        started = db.server
        print(db.describe())
        learner = current_learner()
        dropped, kept = run_sync(classroom.reset_mine(db.url, learner))
        print(f"Dropped {len(dropped)} tutorial schema(s) of {learner.name!r}: "
              f"{', '.join(dropped) or 'none'}")
        if kept:
            print(f"Kept {kept} other learners' tutorial schema(s); an instructor drops them "
                  "with: python -m tutorial_kit class drop --all --yes")
    except DatabaseConfigError as err:
        started = err.started  # it started the server, then could not use it
        raise
    finally:
        stop_if_started_here(started, "make reset-db had to start the embedded PostgreSQL")
    return 0


#: How long the check for other clients waits for backends whose clients have just closed
#: (JupyterLab's kernels, shut down with it) to leave pg_stat_activity: they linger a moment.
OTHERS_GRACE = 3.0


def other_clients(server: embedded.Started) -> int:
    """How many clients other than this check use ``server`` (0 if it does not answer).

    Counted again every 0.2 s until none is left or ``OTHERS_GRACE`` has passed.
    """
    url = embedded_url(server.postmaster)
    deadline = time.monotonic() + OTHERS_GRACE
    while True:
        try:
            others = run_sync(asyncio.wait_for(classroom.server_limits(url), PROBE_LIMIT)).in_use
        except (OSError, TimeoutError, sa_exc.SQLAlchemyError):
            return 0  # nobody can use a server that does not answer; the stop will say more
        if not others or time.monotonic() > deadline:
            return others
        time.sleep(0.2)


def stop_if_started_here(server: embedded.Started | None, why: str) -> None:
    """Stop the embedded server if this process started it and no other client uses it.

    Says which in one line; nothing for DATABASE_URL's or compose's server, or an
    embedded one this process did not start. ``why`` says which command started it.
    Other clients (another make lab, an editor, make db's users) may have found it
    running since: a fast stop would disconnect them, so it stays for make stop.
    """
    if server is None or not server.started_here:
        return
    if others := other_clients(server):
        print(f"{why}, but {others} other client(s) still use it, so it stays running: "
              "make stop stops it when they are done.")
        return
    # only_pid: if someone restarted it since, that server is theirs and stays.
    print(f"{why}. {embedded.stop(EMBEDDED_DIR, only_pid=server.postmaster.pid)}")


def stop() -> int:
    """Stop what the tutorial starts: compose's PostgreSQL if it is up, and the embedded one."""
    status = stop_compose() if docker_engine_running() else 0
    # Signals nothing unless postmaster.pid names a postgres on EMBEDDED_DIR itself.
    print(embedded.stop(EMBEDDED_DIR))
    return status


def stop_compose() -> int:
    """``docker compose stop`` in the repo, if the tutorial's compose project has a container up."""
    found = _compose("ps", "--quiet")
    if found.returncode == 0 and not found.stdout.strip():
        print("docker compose's PostgreSQL is not running: nothing to stop there.")
        return 0
    done = _compose("stop") if found.returncode == 0 else found
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        print(f"error: docker compose {' '.join(done.args[2:])} failed: {said}", file=sys.stderr)
        return 1
    print("Stopped docker compose's PostgreSQL (docker compose stop); its data stays in its "
          "volume.")
    return 0


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    """``docker compose ARGS`` in the repo root, where docker-compose.yml names the project."""
    return subprocess.run(["docker", "compose", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=False)


#: Signals ``lab`` passes on to its command: an interrupt, a termination, a closed terminal.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: How often ``lab`` looks at its command and its threads between two signals (seconds).
_TICK = 0.2


class _Signals:
    """``lab``'s signals, each with its sender, and the threads that start and stop the server.

    The main thread blocks FORWARDED and takes them with ``sigtimedwait``, which tells
    who sent each: 0 is the kernel (the terminal's Ctrl-C, which reaches the command
    too, as it is in the same process group). So this process does not die of them
    before it has stopped the server it started.

    The worker threads unblock them first: a program inherits the signal mask of the
    thread that starts it, and docker compose, initdb, pg_ctl or useradd must stay
    interruptible. The kernel may then hand a signal to a worker thread (when the main
    thread is between two waits); its handler only records it, sender unknown (None).
    """

    def __init__(self) -> None:
        self.caught: list[int] = []
        self.previous: dict[int, Any] = {}
        self.told = False

    def __enter__(self) -> _Signals:
        for sig in FORWARDED:
            self.previous[sig] = signal.signal(sig, lambda signo, _frame: self.caught.append(signo))
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        return self

    def __exit__(self, *_exc: object) -> None:
        # Signals that came while stopping were answered: dropped, not left for the default
        # action once unblocked (and handlers restored after, for one that comes meanwhile).
        while signal.sigtimedwait(FORWARDED, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def wait(self, timeout: float) -> list[tuple[int, int | None]]:
        """The signals that came, waiting up to ``timeout`` seconds for one: (number, sender)."""
        got: list[tuple[int, int | None]] = [(sig, None) for sig in self.caught]
        self.caught.clear()
        if not got and (info := signal.sigtimedwait(FORWARDED, timeout)) is not None:
            got.append((info.si_signo, info.si_pid))
        return got

    def worker(self, target: Callable[..., None], *args: object) -> threading.Thread:
        """Run ``target(*args)`` in a daemon thread that does not block FORWARDED."""
        def run() -> None:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
            target(*args)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def finish(self, thread: threading.Thread, doing: str) -> bool:
        """Wait for ``thread`` after the command has exited; False if told not to wait.

        Every signal is for this process now. The first says what it still does (``doing``);
        the second leaves it undone (make stop does the rest).
        """
        while thread.is_alive():
            if not self.wait(_TICK):
                continue
            if self.told:
                print("make lab left without waiting: make stop stops the embedded PostgreSQL "
                      "if it still runs.", flush=True)
                return False
            self.told = True
            print(f"{doing}; press Ctrl-C again to leave without waiting.", flush=True)
        return True


def lab(command: list[str]) -> int:
    """Run ``command`` (``make lab``: ``jupyter lab …``) with the tutorial's database alongside.

    The database starts in a thread while the command starts: a first embedded
    start is an initdb of seconds, and JupyterLab need not wait for it. When the
    command exits (Ctrl-C, or JupyterLab's File > Shut Down), the embedded server
    is stopped if this started it and no other client uses it.

    Signals sent to this process by another process are passed on to the command.
    A terminal's Ctrl-C is not: it reaches the command directly (same process
    group), and JupyterLab asks before shutting down. This process does not die of
    those signals itself, so the server it started does not outlive it; once the
    command has exited, a second signal makes it leave without waiting (_Signals).
    """
    command = command[1:] if command[:1] == ["--"] else command
    if not command:
        print("usage: python -m tutorial_kit lab [--] COMMAND [ARG ...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(command)  # before blocking: the command keeps a normal mask
    with _Signals() as signals:
        found: list[embedded.Started] = []
        starter = signals.worker(_start_for_lab, found)
        while child.poll() is None:
            for signo, sender in signals.wait(_TICK):
                if sender not in (0, child.pid):  # 0: the terminal's, which the command got
                    child.send_signal(signo)
        if signals.finish(starter, "JupyterLab has exited; make lab waits for the database "
                          "to finish starting, to stop it if it started it") and found:
            if found[0].started_here:
                stopper = signals.worker(stop_if_started_here, found[0], "JupyterLab has "
                                         "exited, and make lab had started the embedded "
                                         "PostgreSQL")
                signals.finish(stopper, "make lab is stopping the embedded PostgreSQL")
            else:
                print(f"JupyterLab has exited. {not_started_here('make lab')}")
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def _start_for_lab(found: list[embedded.Started]) -> None:
    """``lab``'s thread: start the database, say where it runs and what stops it.

    ``found`` gets the embedded server, also one it started whose probe then failed.
    """
    try:
        db = bring_up()
    except TutorialError as err:  # the notebooks' first connecting cell says it again
        if isinstance(err, DatabaseConfigError) and err.started is not None:
            found.append(err.started)
        print(f"error: {err}", file=sys.stderr)
        return
    if db.server is not None:
        found.append(db.server)
    if line := where(db, lab=True):
        print(line, flush=True)


def class_(rest: list[str]) -> int:
    # Its own sub-commands and options: tutorial_kit/classroom.py
    return classroom.main(rest)


#: ``python -m tutorial_kit NAME``: one function per subcommand, each returning the exit status.
COMMANDS: dict[str, Callable[[], int]] = {
    "up": up,
    "url": url,
    "reset": reset,
    "stop": stop,
}
#: Subcommands with options of their own: they get the rest of the command line.
WITH_ARGS: dict[str, Callable[[list[str]], int]] = {
    "class": class_,
    "lab": lab,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_kit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=[*COMMANDS, *WITH_ARGS])
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] and argv[0] in WITH_ARGS:
            return WITH_ARGS[argv[0]](argv[1:])
        args = parser.parse_args(argv)
        return COMMANDS[args.command]()
    except TutorialError as err:  # a setup problem: one paragraph, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
