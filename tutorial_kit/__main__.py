"""Command line for the Makefile: ``python -m tutorial_kit {up,url,reset,stop,lab,class}``.

up     start compose if a Docker engine runs, else make sure the embedded
       server is up; print which database the notebooks will use, where it
       runs and how to stop it
url    print only the URL (for scripts)
reset  drop this learner's tutorial schemas (and ones from before per-learner
       names) in that database; other learners' schemas stay. If it had to
       start the embedded server for that, it stops it again
stop   stop the embedded server (its data stays in .pgdata/)
lab    lab [--] COMMAND...: run COMMAND (make lab: jupyter lab ...) while the
       database starts as ``up`` does; when COMMAND exits, stop the embedded
       server if this started it (one that was running before stays)
class  instructor tools for a shared server: list, drop, budget
       (python -m tutorial_kit class --help; tutorial_kit/classroom.py)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from tutorial_kit import classroom, embedded
from tutorial_kit.database import EMBEDDED_DIR, REPO_ROOT, Database, find_database, run_sync
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
            subprocess.run(["docker", "compose", "up", "-d", "--wait"], cwd=REPO_ROOT, check=True)
        else:
            print("No Docker engine answers (docker info failed or docker is missing): "
                  "using the embedded PostgreSQL.")
    db = find_database()
    print(db.describe())
    return db


def where(db: Database, *, lab: bool = False) -> str:
    """Where the database runs and what stops it, in one line; empty for DATABASE_URL's."""
    if db.source == "compose":
        return ("docker compose's PostgreSQL keeps running"
                f"{' after JupyterLab stops' if lab else ''}: docker compose stop stops it.")
    if db.server is None:
        return ""  # the reader's own server: not the tutorial's to start or stop
    info = db.server.postmaster
    here = (f"The embedded PostgreSQL runs in {EMBEDDED_DIR} (PID {info.pid}, socket in "
            f"{info.socket_dir}).")
    if not lab:
        return f"{here} It keeps running for every notebook; make stop stops it."
    if db.server.started_here:
        return (f"{here} It stops when JupyterLab stops (Ctrl-C, or File > Shut Down); "
                "make stop stops it sooner.")
    return f"{here} It was running before, so it stays running; make stop stops it."


def up() -> int:
    if line := where(bring_up()):
        print(line)
    return 0


def url() -> int:
    print(find_database().url)
    return 0


def reset() -> int:
    db = find_database()
    print(db.describe())
    try:
        learner = current_learner()
        dropped, kept = run_sync(classroom.reset_mine(db.url, learner))
        print(f"Dropped {len(dropped)} tutorial schema(s) of {learner.name!r}: "
              f"{', '.join(dropped) or 'none'}")
        if kept:
            print(f"Kept {kept} other learners' tutorial schema(s); an instructor drops them "
                  "with: python -m tutorial_kit class drop --all --yes")
    finally:
        stop_if_started_here(db, "make reset-db had to start the embedded PostgreSQL")
    return 0


def stop_if_started_here(db: Database | None, why: str) -> bool:
    """Stop the embedded server if ``db`` says this process started it, saying so in one line.

    False if there was nothing of ours to stop: DATABASE_URL or compose (not the
    tutorial's to stop), or an embedded server that was already running.
    """
    if db is None or db.server is None or not db.server.started_here:
        return False
    # only_pid: if someone restarted it since, that server is theirs and stays.
    print(f"{why}. {embedded.stop(EMBEDDED_DIR, only_pid=db.server.postmaster.pid)}")
    return True


def stop() -> int:
    # Signals nothing unless postmaster.pid names a postgres on EMBEDDED_DIR itself.
    print(embedded.stop(EMBEDDED_DIR))
    return 0


#: Signals ``lab`` passes on to its command: an interrupt, a termination, a closed terminal.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def lab(command: list[str]) -> int:
    """Run ``command`` (``make lab``: ``jupyter lab …``) with the tutorial's database alongside.

    The database starts in a thread while the command starts: a first embedded
    start is an initdb of seconds, and JupyterLab need not wait for it. When the
    command exits (Ctrl-C, or JupyterLab's File > Shut Down), the embedded server
    is stopped if this started it; one that was already running stays.

    Signals sent to this process by another process are passed on to the command.
    A terminal's Ctrl-C is not: it reaches the command directly (same process
    group), and JupyterLab asks before shutting down. While the command runs and
    while the server stops, this process does not die of those signals itself, so
    the server it started never outlives it.
    """
    command = command[1:] if command[:1] == ["--"] else command
    if not command:
        print("usage: python -m tutorial_kit lab [--] COMMAND [ARG ...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(command)  # before blocking: the command keeps normal signals
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)  # the thread below inherits this
    try:
        started: list[Database] = []
        starter = threading.Thread(target=_start_for_lab, args=(started,), daemon=True)
        starter.start()
        while child.poll() is None:
            sig = signal.sigtimedwait(FORWARDED, 0.5)
            if sig is not None and sig.si_pid not in (0, child.pid):  # 0: the terminal's
                child.send_signal(sig.si_signo)
        starter.join()
        db = started[0] if started else None
        if not stop_if_started_here(db, "JupyterLab has exited, and make lab had started the "
                                    "embedded PostgreSQL") and db and db.server:
            print("JupyterLab has exited; the embedded PostgreSQL stays running, as it was "
                  "before make lab: make stop stops it.")
    finally:
        while signal.sigtimedwait(FORWARDED, 0) is not None:
            pass  # drop the signals that came while stopping: they were answered
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def _start_for_lab(started: list[Database]) -> None:
    """``lab``'s thread: start the database, say where it runs and what stops it."""
    try:
        db = bring_up()
    except TutorialError as err:  # the notebooks' first connecting cell says it again
        print(f"error: {err}", file=sys.stderr)
        return
    started.append(db)
    if line := where(db, lab=True):
        print(line)


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
