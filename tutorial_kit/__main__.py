"""Command line for the Makefile: ``python -m tutorial_kit {up,url,reset,stop}``.

up     start compose if a Docker engine runs, else make sure the embedded
       server is up; print which database the notebooks will use
url    print only the URL (for scripts)
reset  drop this learner's tutorial schemas (and ones from before per-learner
       names) in that database; other learners' schemas stay
stop   stop the embedded server (its data stays in .pgdata/)
class  instructor tools for a shared server: list, drop, budget
       (python -m tutorial_kit class --help; tutorial_kit/classroom.py)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable

from tutorial_kit import classroom, embedded
from tutorial_kit.database import EMBEDDED_DIR, REPO_ROOT, find_database, run_sync
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


def up() -> int:
    if not os.environ.get("DATABASE_URL"):
        if docker_engine_running():
            print("Docker engine found: docker compose up -d --wait")
            subprocess.run(["docker", "compose", "up", "-d", "--wait"], cwd=REPO_ROOT, check=True)
        else:
            print("No Docker engine answers (docker info failed or docker is missing): "
                  "using the embedded PostgreSQL.")
    print(find_database().describe())
    return 0


def url() -> int:
    print(find_database().url)
    return 0


def reset() -> int:
    db = find_database()
    print(db.describe())
    learner = current_learner()
    dropped, kept = run_sync(classroom.reset_mine(db.url, learner))
    print(f"Dropped {len(dropped)} tutorial schema(s) of {learner.name!r}: "
          f"{', '.join(dropped) or 'none'}")
    if kept:
        print(f"Kept {kept} other learners' tutorial schema(s); an instructor drops them "
              "with: python -m tutorial_kit class drop --all --yes")
    return 0


def stop() -> int:
    # Signals nothing unless postmaster.pid names a postgres on EMBEDDED_DIR itself.
    print(embedded.stop(EMBEDDED_DIR))
    return 0


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
