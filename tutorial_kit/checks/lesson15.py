"""Checks for 15 · Events and TLS.

Exercise 1 also probes the learner's engine itself, on two connections of its pool
held at once, because two checkouts in a row (what the scaffold shows) reuse one
connection and cannot tell a listener on ``connect`` from one that ran only once; and it
changes the setting on a pooled connection, to see whether a listener puts it back at
the next checkout (one that runs per checkout, not per new connection).
"""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.connection_slots import connection_slots
from tutorial_kit.exercises import check, describe, unanswered

#: ``statement_timeout`` as ``pg_settings`` shows it once ``SET`` to 1500ms in the session.
TIMEOUT_SET = ("1500", "session")
STATEMENT_TIMEOUT = text(
    "SELECT setting, source FROM pg_settings WHERE name = 'statement_timeout'")

#: The check's own value, committed on a pooled connection: a per-checkout listener undoes it.
CHANGED = text("SET statement_timeout = '1234ms'")
#: The setting that proves the checkout ran nothing of the listener's again.
KEPT = ("1234", "session")
#: TLS versions below 1.3, each refused by this option when set.
OLDER = ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1 | ssl.OP_NO_TLSv1_2

#: Per connection: (setting, source) before and after a rollback, its autocommit flag, and
#: whether the driver was already in a transaction when the connection was checked out.
Probe = list[tuple[tuple[Any, ...], tuple[Any, ...], bool, bool]]


async def checkout_again(engine: AsyncEngine) -> tuple[Any, ...]:
    """The setting at a checkout after the check committed its own value on that connection.

    A listener on ``connect`` has run already and does not run again, so the check's
    value stays; one on ``checkout`` or ``engine_connect`` sets 1500 again.
    """
    try:
        async with engine.connect() as conn:
            await conn.execute(CHANGED)
            await conn.commit()
        async with engine.connect() as conn:
            return tuple((await conn.execute(STATEMENT_TIMEOUT)).one())
    finally:
        await engine.dispose()


async def two_connections(engine: AsyncEngine) -> Probe:
    """Hold two connections of ``engine``'s pool at once and read each one's setting.

    The pool is disposed afterwards, so nothing the probe opened stays behind. With the
    PgBouncer's server connection, that is three at once: on a class server the probe
    first waits for room (``connection_slots``).
    """
    seen = []
    async with connection_slots(engine.url.render_as_string(hide_password=False), 2):
        try:
            async with engine.connect() as first, engine.connect() as second:
                for conn in (first, second):
                    raw = await conn.get_raw_connection()
                    # Nothing has run on this checkout yet: a transaction here is the listener's.
                    open_at_checkout = bool(raw.driver_connection.is_in_transaction())
                    before = tuple((await conn.execute(STATEMENT_TIMEOUT)).one())
                    await conn.rollback()
                    after = tuple((await conn.execute(STATEMENT_TIMEOUT)).one())
                    seen.append((before, after, bool(raw.dbapi_connection.autocommit),
                                 open_at_checkout))
            return seen
        finally:
            await engine.dispose()


async def ex1(answer: Any, *, engine: AsyncEngine, seen: list[tuple[Any, ...]] | None) -> None:
    """``engine`` (the scaffold's ``ex1_engine``) with a ``connect`` listener that SETs 1500ms.

    ``seen`` is the setting on two checkouts in a row, from the scaffold. The
    prompt's requirements, one rule each:

    1. ``ex1`` is ``ex1_engine``;
    2. the first checkout shows 1500ms, set in the session (a listener's ``SET``, not
       ``server_settings``);
    3. the second checkout still has it, after the first ended without committing;
    4. a second connection, opened while the first is in use, has it too (every new
       connection, not only the first);
    5. a rollback on the same checkout does not undo it;
    6. the connection is left out of autocommit;
    6b. and with no transaction open: a checked-out connection on which nothing ran yet
       is not inside a driver transaction (a statement after the listener's commit
       opens one, which the first checkout inherits);
    7. it is set once per new connection: a value the check commits on a pooled
       connection is still there at the next checkout (no per-checkout listener).
    """
    same = (lambda e: e is engine,
            "Set ex1 to ex1_engine, after registering the listener on it.")
    if unanswered(1, answer, same[1]):
        return
    probe: Probe | None = None
    again: tuple[Any, ...] | None = None
    failure = ""
    if answer is engine and seen:
        try:
            probe = await two_connections(engine)
            again = await checkout_again(engine)
        except Exception as err:  # a listener that breaks connecting: a hint, not a traceback
            failure = f"opening connections of its pool raised {describe(err)}. "
    first = tuple(seen[0]) if seen else ()
    if len(first) == 2 and first[1] == "session":
        value = (f"The first checkout shows statement_timeout = {first[0]} ms, set in the "
                 "session: the listener runs, but the value should be 1500ms.")
    elif len(first) == 2 and first[1] == "client":
        value = ("The setting comes from the connection's startup (server_settings), not "
                 "from a listener: register a 'connect' listener on ex1_engine.sync_engine "
                 "that runs SET.")
    else:
        value = ("The first checkout does not show 1500 set in the session: register a "
                 "'connect' listener on ex1_engine.sync_engine whose SET runs (a plain SET: "
                 "SET LOCAL ends with its transaction).")
    check(1, answer, same,
          (lambda e: first == TIMEOUT_SET, value),
          (lambda e: seen is not None and len(seen) > 1 and seen[1] == TIMEOUT_SET,
           "The second checkout lost the setting: the first checkout's rollback undid it."),
          (lambda e: probe is not None and all(p[0] == TIMEOUT_SET for p in probe),
           f"{failure}A second connection of the pool, opened while the first is in use, "
           "lacks the setting: the listener must run for every new connection, not only the "
           "first."),
          (lambda e: all(p[1] == TIMEOUT_SET for p in probe or []),
           "A rollback on the same checkout undid the setting: it was SET inside that "
           "checkout's transaction. Set it once per connection, in a 'connect' listener, "
           "outside a transaction."),
          (lambda e: not any(p[2] for p in probe or []),
           "After your listener the connection stays in autocommit, so a rollback no longer "
           "undoes an INSERT: put autocommit back to what it was before the SET."),
          (lambda e: not any(p[3] for p in probe or []),
           "A new connection comes out of your listener inside an open transaction (a "
           "statement ran after the commit): leave its transactions as they were, with "
           "nothing run after the SET is committed."),
          (lambda e: again == KEPT,
           f"{failure}The check committed statement_timeout = 1234ms on a pooled connection, "
           f"and the next checkout showed {again}: a listener sets it again at every checkout, "
           "a round trip each time. Set it once per new connection, on 'connect'."))


def ex2(answer: Any, *, outcome: str | None) -> None:
    """An ``ssl.SSLContext`` that verifies PgBouncer's certificate and insists on TLS 1.3.

    ``outcome`` is what the scaffold's connection through the TLS PgBouncer
    logged (the login line with its protocol), or the error it met. The prompt's
    requirements, one rule each:

    1. ``ex2`` is an ``ssl.SSLContext``;
    2. it verifies the certificate chain and the host name;
    3. the scaffold's connection with it succeeded, over TLS 1.3;
    4. it trusts the notebook's CA only (no system CAs loaded next to it);
    5. it refuses every version below TLS 1.3, by its minimum version or by the
       ``OP_NO_TLSv1*`` options.

    Not told apart: CAs added from a directory (``load_verify_locations(capath=…)``, or
    ``set_default_verify_paths()`` where the system keeps its CAs as one directory).
    OpenSSL reads such a directory only when a handshake looks for an issuer, so
    ``get_ca_certs()`` does not list them, and telling them apart would take a server
    whose certificate a system CA signed, which the notebook cannot have.
    """
    trusted = len(answer.get_ca_certs()) if isinstance(answer, ssl.SSLContext) else 0
    check(2, answer,
          (lambda c: isinstance(c, ssl.SSLContext), "ex2 should be an ssl.SSLContext."),
          (lambda c: c.verify_mode == ssl.CERT_REQUIRED and c.check_hostname,
           "This context does not verify the certificate and host name."),
          (lambda c: "tls=TLSv1.3" in str(outcome),
           "The connection failed or was not TLS 1.3: trust the notebook's CA (certs.ca)."),
          (lambda c: len(c.get_ca_certs()) == 1,
           f"This context trusts {trusted} CA certificates: it should trust the notebook's "
           "CA (certs.ca) only, with no other CA loaded next to it."),
          (lambda c: c.options & OLDER == OLDER or c.minimum_version in (
              ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.MAXIMUM_SUPPORTED),
           "It would still accept older protocol versions: raise its minimum version."))
