"""The catalogue of setup problems: each entry's message, the order connection failures are
tried in, and README's Troubleshooting table, which lists exactly the catalogue's entries."""

from __future__ import annotations

import re
import socket
import string

import asyncpg
import pytest

from tutorial_harness import REPO
from tutorial_kit.setup_problems import (
    CATALOGUE,
    CONNECTION_PROBLEMS,
    ConnectFailure,
    SetupProblem,
    explain,
)

LOCAL = "postgresql+asyncpg://learner:pw@localhost:5432/app"
REMOTE = "postgresql+asyncpg://learner:pw@db.example.com:5432/app"
NO_PASSWORD = LOCAL.replace(":pw@", "@")

#: One real failure per connection problem: (error, URL). explain() must pick that entry.
FAILURES: dict[str, tuple[BaseException, str]] = {
    "no-password": (asyncpg.InvalidPasswordError("password authentication failed"), NO_PASSWORD),
    "password": (asyncpg.InvalidPasswordError("password authentication failed"), LOCAL),
    "no-database": (asyncpg.InvalidCatalogNameError('database "app" does not exist'), LOCAL),
    "user-rejected": (asyncpg.InvalidAuthorizationSpecificationError('role "x" does not exist'),
                      LOCAL),
    "url-option": (TypeError("connect() got an unexpected keyword argument 'foo'"), LOCAL),
    "ssl-rejected": (ConnectionError('PostgreSQL server at "localhost:5432" rejected SSL '
                                     "upgrade"), LOCAL + "?ssl=require"),
    "no-answer": (TimeoutError(), LOCAL),
    "nothing-answers": (ConnectionRefusedError(111, "Connect call failed"), LOCAL),
    "cannot-reach": (socket.gaierror(-2, "Name or service not known"), REMOTE),
    "connection-limit": (asyncpg.TooManyConnectionsError(
        'too many connections for role "learner"'), LOCAL),
    "server-full": (asyncpg.TooManyConnectionsError("sorry, too many clients already"), LOCAL),
    "cannot-connect": (RuntimeError("something new"), LOCAL),
}


def failure(key: str, what: str = "DATABASE_URL") -> ConnectFailure:
    if key not in FAILURES:
        pytest.fail(f"{key} is a connection problem: add a sample failure to FAILURES")
    error, url = FAILURES[key]
    return ConnectFailure.of(error, what, url, timeout=5.0)


def message(problem: SetupProblem) -> str:
    """The entry's message: for a connection problem its sample failure, else every field 'x'."""
    if problem.matches:
        return problem.message(f=failure(problem.key))
    template = f"{problem.problem} {problem.fix}"
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return problem.message(**dict.fromkeys(names, "x"))


def as_pattern(title: str) -> re.Pattern[str]:
    """A title with "…" for the parts that vary (names, hosts, modes)."""
    return re.compile(r".*?".join(re.escape(p.strip()) for p in title.split("…")), re.S)


def test_keys_and_titles_are_unique() -> None:
    assert len({p.key for p in CATALOGUE}) == len(CATALOGUE)
    assert len({p.title for p in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("problem", CATALOGUE, ids=lambda p: p.key)
def test_each_message_is_one_paragraph_with_its_title(problem: SetupProblem) -> None:
    text = message(problem)
    assert as_pattern(problem.title).search(text), f"{problem.key}: {text}"
    if problem.key != "did-not-start":  # that one ends with the server log's last lines
        assert "\n" not in text
    assert "Traceback" not in text and "pw@" not in text, "never a traceback, never the password"


@pytest.mark.parametrize("problem", CONNECTION_PROBLEMS, ids=lambda p: p.key)
def test_each_connection_failure_is_explained_by_its_own_entry(problem: SetupProblem) -> None:
    """explain() tries the entries in order: each sample reaches its entry, not an earlier one."""
    assert problem.key in FAILURES, f"add a sample failure for {problem.key}"
    assert explain(failure(problem.key)) is problem


def test_a_wrong_password_is_not_called_wrong() -> None:
    """PostgreSQL answers a wrong password and an unknown user alike: the message names both."""
    text = explain(failure("password")).message(f=failure("password"))
    assert "password is wrong" in text and "no user of that name" in text


def test_the_own_server_is_offered_only_for_database_url() -> None:
    ours = failure("nothing-answers", what="the embedded server")
    assert "unset DATABASE_URL" not in explain(ours).message(f=ours)
    assert "unset DATABASE_URL" in explain(failure("nothing-answers")).message(
        f=failure("nothing-answers"))


def readme_rows() -> list[tuple[str, str]]:
    """``(title, key)`` of each row of README's Troubleshooting table, in order."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    return re.findall(r'^\| "([^"]+)" \(`([a-z0-9-]+)`\)', section, re.M)


def test_readme_lists_exactly_the_catalogue() -> None:
    rows, entries = readme_rows(), [(p.title, p.key) for p in CATALOGUE]
    missing = [f'| "{title}" (`{key}`) | … |' for title, key in entries if (title, key) not in rows]
    assert not missing, "README's Troubleshooting table needs these rows:\n" + "\n".join(missing)
    extra = [key for title, key in rows if (title, key) not in entries]
    assert not extra, f"README's Troubleshooting rows for entries the catalogue lacks: {extra}"
    assert rows == entries, "README's Troubleshooting rows are not in the catalogue's order"
