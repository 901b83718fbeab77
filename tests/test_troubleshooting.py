"""README's Troubleshooting table lists every paragraph a bad setup prints, as printed."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import asyncpg
import pytest

from tutorial_kit import database, embedded, schema
from tutorial_kit.database import DatabaseConfigError, _explain, normalize_url

REPO = Path(__file__).resolve().parent.parent
LOCAL = "postgresql+asyncpg://learner:pw@localhost:5432/app"
REMOTE = "postgresql+asyncpg://learner:pw@db.example.com:5432/app"


def refused(url: str) -> str:
    with pytest.raises(DatabaseConfigError) as info:
        normalize_url(url)
    return str(info.value)


def messages() -> list[str]:
    """One real message per kind of problem, produced by the code that prints it."""
    found = [refused(u) for u in (
        "not a url", "sqlite:///x.db", "postgresql+psycopg2://u:p@h/db",
        "postgresql+psycopg://u:p@h/db", "postgresql://u:p@h/db?sslmode=sometimes",
        "postgresql://u:p@ss@h/db")]
    nopw = LOCAL.replace(":pw@", "@")
    for err, url in [
        (asyncpg.exceptions.InvalidPasswordError("password authentication failed"), nopw),
        (asyncpg.exceptions.InvalidPasswordError("password authentication failed"), LOCAL),
        (asyncpg.exceptions.InvalidAuthorizationSpecificationError('role "x" does not exist'),
         LOCAL),
        (asyncpg.exceptions.InvalidCatalogNameError('database "app" does not exist'), LOCAL),
        (ConnectionError('PostgreSQL server at "localhost:5432" rejected SSL upgrade'),
         LOCAL + "?ssl=require"),
        (TimeoutError(), LOCAL),
        (ConnectionRefusedError(111, "Connect call failed"), LOCAL),
        (socket.gaierror(-2, "Name or service not known"), REMOTE),
        (TypeError("connect() got an unexpected keyword argument 'foo'"), LOCAL),
    ]:
        found.append(_explain(err, "DATABASE_URL", url)[0])
    found.append(database._no_create_message("DATABASE_URL", LOCAL, "learner", "app"))
    # Raised only on a real machine state (root, a broken .pgdata, another's schema):
    # taken from the source, which is what prints them.
    for module in (embedded, schema):
        found += re.findall(r'f?"([^"\n]*(?:cannot enter|did not start|stale postmaster|'
                            r'was not created by this tutorial)[^"\n]*)"',
                            Path(module.__file__).read_text())
    return found


def readme_quotes() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    return re.findall(r'^\| "([^"]+)"', section, re.M)


def as_pattern(quote: str) -> re.Pattern[str]:
    """A quote with "…" for the parts that vary (names, hosts, braces in f-strings)."""
    parts = [re.escape(p.strip()) for p in quote.split("…")]
    return re.compile(r".*?".join(parts))


def test_every_message_is_in_the_troubleshooting_table() -> None:
    quotes = readme_quotes()
    assert len(quotes) >= 15
    for message in messages():
        assert any(as_pattern(q).search(message) for q in quotes), (
            f"README Troubleshooting has no row for: {message[:120]}")


def test_every_row_is_a_message_the_code_prints() -> None:
    printed = messages()
    for quote in readme_quotes():
        assert any(as_pattern(quote).search(m) for m in printed), (
            f"README quotes {quote!r}, which no message contains")
