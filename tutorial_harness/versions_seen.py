"""pytest plugin for the version matrix: the versions the tests really ran, checked.

noxfile.py loads it into each ``notebooks`` session (``-p tutorial_harness.versions_seen``)
with the row's versions. It records the Python, ``sqlalchemy.__version__`` and the
PostgreSQL major of each server the tests used (``SELECT version()`` on the password
server, the data directory's ``PG_VERSION`` for the embedded one), prints them at the
end, and fails the run if one differs from the row: a row that says "PostgreSQL 15" but
ran on the wheel's 18 would otherwise pass unnoticed.
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import sqlalchemy

_SERVERS = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("versions_seen", "the version matrix (noxfile.py)")
    group.addoption("--expect-python", help="X.Y the tests must run on")
    group.addoption("--expect-sqlalchemy", help="exact SQLAlchemy version")
    group.addoption("--expect-postgresql", help="major every server the tests used must be")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SERVERS] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    servers = item.config.stash[_SERVERS]
    funcargs = getattr(item, "funcargs", {})
    if "password_server" in funcargs and "password" not in servers:
        servers["password"] = funcargs["password_server"].psql("SELECT version()").strip()
    if "embedded_pgdata" in funcargs and "embedded" not in servers:
        major = (Path(funcargs["embedded_pgdata"]) / "PG_VERSION").read_text().strip()
        servers["embedded"] = f"PostgreSQL {major} (data directory)"


def problems(config: pytest.Config) -> list[str]:
    """What differs from the row's expected versions, one sentence each."""
    found: list[str] = []
    python = config.getoption("expect_python")
    if python and not platform.python_version().startswith(f"{python}."):
        found.append(f"Python {platform.python_version()} is not {python}")
    wanted = config.getoption("expect_sqlalchemy")
    if wanted and sqlalchemy.__version__ != wanted:
        found.append(f"SQLAlchemy {sqlalchemy.__version__} is not {wanted}")
    major = config.getoption("expect_postgresql")
    servers = config.stash[_SERVERS]
    if major and not servers:
        found.append("no server was seen (did any notebook test run?)")
    for kind, text in servers.items() if major else ():
        if text.split()[1].split(".")[0] != major:  # "PostgreSQL 15.18 (Debian …)"
            found.append(f"the {kind} server is {text[:40]!r}, not PostgreSQL {major}")
    return found


def pytest_sessionfinish(session: pytest.Session) -> None:
    if problems(session.config) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    terminalreporter.write_line(
        f"versions: Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}")
    for kind, text in config.stash[_SERVERS].items():
        terminalreporter.write_line(f"{kind} server: {text}")
    for problem in problems(config):
        terminalreporter.write_line(f"version check failed: {problem}", red=True)
