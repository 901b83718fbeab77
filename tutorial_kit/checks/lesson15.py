"""Checks for 15 · Events and TLS.

Exercise 1 also probes the learner's engine itself, on two connections of its pool
held at once, because two checkouts in a row (what the scaffold shows) reuse one
connection and cannot tell a listener on ``connect`` from one that ran only once.
"""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.exercises import check, describe, unanswered

#: ``statement_timeout`` as ``pg_settings`` shows it once ``SET`` to 1500ms in the session.
TIMEOUT_SET = ("1500", "session")
STATEMENT_TIMEOUT = text(
    "SELECT setting, source FROM pg_settings WHERE name = 'statement_timeout'")

#: Per connection: (setting, source) before and after a rollback, and its autocommit flag.
Probe = list[tuple[tuple[Any, ...], tuple[Any, ...], bool]]


async def two_connections(engine: AsyncEngine) -> Probe:
    """Hold two connections of ``engine``'s pool at once and read each one's setting.

    The pool is disposed afterwards, so nothing the probe opened stays behind.
    """
    seen = []
    try:
        async with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                before = tuple((await conn.execute(STATEMENT_TIMEOUT)).one())
                await conn.rollback()
                after = tuple((await conn.execute(STATEMENT_TIMEOUT)).one())
                raw = await conn.get_raw_connection()
                seen.append((before, after, bool(raw.dbapi_connection.autocommit)))
        return seen
    finally:
        await engine.dispose()


async def ex1(answer: Any, *, engine: AsyncEngine, seen: list[tuple[Any, ...]] | None) -> None:
    """``engine`` (the scaffold's ``ex1_engine``) with a ``connect`` listener that SETs 1500ms.

    ``seen`` is the setting on two checkouts in a row, from the scaffold. The
    setting must also be on a second connection opened while the first is in use,
    survive a rollback, and leave the connection out of autocommit.
    """
    same = (lambda e: e is engine,
            "Set ex1 to ex1_engine, after registering the listener on it.")
    if unanswered(1, answer, same[1]):
        return
    probe: Probe | None = None
    failure = ""
    if answer is engine and seen:
        try:
            probe = await two_connections(engine)
        except Exception as err:  # a listener that breaks connecting: a hint, not a traceback
            failure = f"opening two connections of its pool raised {describe(err)}. "
    check(1, answer, same,
          (lambda e: bool(seen) and seen[0] == TIMEOUT_SET,
           "The first checkout does not show 1500 set in the session: register a 'connect' "
           "listener on ex1_engine.sync_engine that runs SET (not server_settings)."),
          (lambda e: seen is not None and len(seen) > 1 and seen[1] == TIMEOUT_SET,
           "The second checkout lost the setting: the first checkout's rollback undid it."),
          (lambda e: probe is not None and all(before == TIMEOUT_SET for before, _, _ in probe),
           f"{failure}A second connection of the pool, opened while the first is in use, "
           "lacks the setting: the listener must run for every new connection, not only the "
           "first."),
          (lambda e: all(after == TIMEOUT_SET for _, after, _ in probe or []),
           "A rollback on the same checkout undid the setting: it was SET inside that "
           "checkout's transaction. Set it once per connection, in a 'connect' listener, "
           "outside a transaction."),
          (lambda e: not any(autocommit for _, _, autocommit in probe or []),
           "After your listener the connection stays in autocommit, so a rollback no longer "
           "undoes an INSERT: put autocommit back to what it was before the SET."))


def ex2(answer: Any, *, outcome: str | None) -> None:
    """An ``ssl.SSLContext`` that verifies PgBouncer's certificate and insists on TLS 1.3.

    ``outcome`` is what the scaffold's connection through the TLS PgBouncer
    logged (the login line with its protocol), or the error it met.
    """
    check(2, answer,
          (lambda c: isinstance(c, ssl.SSLContext), "ex2 should be an ssl.SSLContext."),
          (lambda c: c.verify_mode == ssl.CERT_REQUIRED and c.check_hostname,
           "This context does not verify the certificate and host name."),
          (lambda c: "tls=TLSv1.3" in str(outcome),
           "The connection failed or was not TLS 1.3: trust the notebook's CA (certs.ca)."),
          (lambda c: c.minimum_version == ssl.TLSVersion.TLSv1_3,
           "It would still accept older protocol versions: raise its minimum version."))
