"""The checks of lesson 00 · Start here: an awaited query, and a coroutine function awaited."""

from __future__ import annotations

import inspect

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import scalar
from tutorial_kit.exercises import check, unanswered, unavailable
from tutorial_kit.sql_capture import QueryLog

WORDS = ("async", "orm", "postgres")
EX1_VALUE = "ex1 should be the database's name, a str"


async def ex1(answer: object, log: QueryLog, engine: AsyncEngine) -> None:
    """Exercise 1: the server's name for the current database, asked with an awaited SELECT.

    The expected name comes from this connection's row in ``pg_stat_activity``,
    not from ``current_database()``, the call the exercise asks for.
    """
    if unanswered(1, answer, f"{EX1_VALUE}."):
        return
    try:
        expected = await scalar(engine, text(
            "SELECT datname FROM pg_stat_activity WHERE pid = pg_backend_pid()"))
    except Exception as err:  # the server is gone: say so, with the hint, rather than raise
        check(1, answer, unavailable("asking the server", err, f"{EX1_VALUE}."))
        return
    unawaited = (": it is a coroutine object, so nothing ran yet. Await the call that returns "
                 "the value." if inspect.iscoroutine(answer) else ".")
    check(1, answer,
          (lambda v: isinstance(v, str) and v == expected, EX1_VALUE + unawaited),
          (lambda v: any("current_database()" in sql for sql in log.sql()),
           "the name is right, but no SELECT current_database() went through `engine`: ask "
           "the server, with await."))


def ex2(answer: object, log: QueryLog) -> None:
    """Exercise 2: the three words in capitals, one awaited ``upper(:word)`` statement each."""
    items = answer if isinstance(answer, list | tuple) else ()
    unawaited = (": it holds coroutine objects, and calling an async def runs nothing. Await "
                 "each call." if any(inspect.iscoroutine(x) for x in items) else ".")
    params = [str(s.params) for s in log.statements]
    check(2, answer,
          (lambda v: list(v) == [w.upper() for w in WORDS],
           'ex2 should be ["ASYNC", "ORM", "POSTGRES"]' + unawaited),
          (lambda v: log.count == len(WORDS) and all("upper" in sql for sql in log.sql()),
           f"your cell sent {log.count} statement(s) through `engine`; the server should "
           "compute each word with upper(), one statement per word."),
          (lambda v: all(w in p for w, p in zip(WORDS, params, strict=True)),
           "pass each word as a bound parameter of its statement, not pasted into the SQL."))
