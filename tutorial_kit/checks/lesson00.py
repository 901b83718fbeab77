"""The checks of lesson 00 · Start here: an awaited query, and a coroutine function awaited."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import bound_values, pool_in_use, scalar, sql_code
from tutorial_kit.exercises import check, describe, unanswered, unavailable
from tutorial_kit.sql_capture import QueryLog, capture_sql

WORDS = ("async", "orm", "postgres")
#: A word the learner never saw: the check runs their function on it.
FRESH_WORD = "tutorial"
EX1_VALUE = "ex1 should be the database's name, a str"
EX2_VALUE = 'ex2 should be ["ASYNC", "ORM", "POSTGRES"]'
# The name as the server knows it, read from this connection's row in pg_stat_activity
# rather than with current_database(), the call the exercise asks for.
DATABASE_NAME = text("SELECT datname FROM pg_stat_activity WHERE pid = pg_backend_pid()")
CALLS_CURRENT_DATABASE = re.compile(r"\bcurrent_(database\s*\(|catalog\b)", re.I)
CALLS_UPPER = re.compile(r"\bupper\s*\(", re.I)


def _coroutine_note(answer: object) -> str:
    if inspect.iscoroutine(answer):
        return (": it is a coroutine object, so nothing ran yet. Await the call that returns "
                "the value.")
    return "."


def _open_connections(engine: AsyncEngine) -> str:
    count = pool_in_use(engine)
    return (f"the value is right, but {count} connection(s) of `engine` are still checked out "
            "after your cell: open it with `async with engine.connect() as conn:`, so it goes "
            "back to the pool when the block ends.")


async def ex1(answer: object, log: QueryLog, engine: AsyncEngine) -> None:
    """Exercise 1: the server's name for the current database, asked with an awaited SELECT.

    The prompt's requirements, one rule each:

    1. ``ex1`` is the database's name, a str (an un-awaited coroutine is named as such);
    2. a statement sent through ``engine`` calls ``current_database()`` (or its alias
       ``current_catalog``) as code, not inside a comment or a quoted string;
    3. the cell leaves no connection of ``engine`` checked out (the tutorial's rule).

    Not judged: whether ``ex1`` is that statement's result or the same name taken from the
    URL after it (the capture log holds statements, not the rows they returned).
    """
    if unanswered(1, answer, f"{EX1_VALUE}."):
        return
    try:
        expected = await scalar(engine, DATABASE_NAME)
    except Exception as err:  # the server is gone: say so, with the hint, rather than raise
        check(1, answer, unavailable("asking the server", err, f"{EX1_VALUE}."))
        return
    check(1, answer,
          (lambda v: isinstance(v, str) and v == expected, EX1_VALUE + _coroutine_note(answer)),
          (lambda v: any(CALLS_CURRENT_DATABASE.search(sql_code(sql)) for sql in log.sql()),
           "the name is right, but no statement your cell sent through `engine` calls "
           "current_database() (a comment or a quoted name does not count): ask the server, "
           "with await."),
          (lambda v: pool_in_use(engine) == 0, _open_connections(engine)))


async def ex2(answer: object, log: QueryLog, server_upper: object,
              engine: AsyncEngine) -> None:
    """Exercise 2: the three words in capitals, one awaited ``upper(:word)`` statement each.

    The prompt's requirements, one rule each:

    1. ``ex2`` is the list of the three words in capitals (coroutines inside are named);
    2. ``server_upper`` is a coroutine function (``async def``);
    3. the cell sent one statement per word through ``engine``, each calling ``upper()``
       as code, with its word (not the capitals) as a bound parameter, in any order (so
       ``asyncio.gather`` is as good as a loop);
    4. run by the check on a word it never saw, ``server_upper(word)`` returns the server's
       capitals, sending one such statement;
    5. no connection of ``engine`` is left checked out.
    """
    if unanswered(2, answer, f"{EX2_VALUE}."):
        return
    items = answer if isinstance(answer, list | tuple) else ()
    unawaited = (": it holds coroutine objects, and calling an async def runs nothing. Await "
                 "each call." if any(inspect.iscoroutine(x) for x in items) else ".")
    rerun = await _run_on_fresh_word(server_upper, engine)
    check(2, answer,
          (lambda v: list(v) == [w.upper() for w in WORDS], EX2_VALUE + unawaited),
          (lambda v: inspect.iscoroutinefunction(server_upper),
           "the list is right, but server_upper is not a coroutine function: define it with "
           "`async def server_upper(word):`, so that calling it gives a coroutine to await."),
          (lambda v: log.count == len(WORDS) and all(
              CALLS_UPPER.search(sql_code(sql)) for sql in log.sql()),
           f"your cell sent {log.count} statement(s) through `engine`; the server should "
           "compute each word with upper(), one statement per word."),
          (lambda v: sorted(_word_bound(s.params) for s in log.statements) == sorted(WORDS),
           "pass each word itself (not its capitals) as the bound parameter of its statement, "
           "not pasted into the SQL."),
          (lambda v: rerun is None, rerun or ""),
          (lambda v: pool_in_use(engine) == 0, _open_connections(engine)))


def _word_bound(params: Any) -> str:
    """The one word of ``WORDS`` bound to a statement, or ``""``."""
    words = [v for v in bound_values(params) if v in WORDS]
    return words[0] if len(words) == 1 else ""


async def _run_on_fresh_word(server_upper: object, engine: AsyncEngine) -> str | None:
    """Call the learner's function on a word it never saw: None if it behaves, else a hint."""
    if not inspect.iscoroutinefunction(server_upper):
        return None   # the coroutine-function rule says so first
    call: Callable[[str], Any] = server_upper
    try:
        with capture_sql(engine) as log:
            result = await call(FRESH_WORD)
    except Exception as err:
        return (f"the check called server_upper({FRESH_WORD!r}) and it raised {describe(err)}: "
                "it should take only the word, and open its own connection from `engine`.")
    if result != FRESH_WORD.upper():
        return (f"the check called server_upper({FRESH_WORD!r}) and got {result!r}, not "
                f"{FRESH_WORD.upper()!r}: return the value the server sends back.")
    sent = log.sql()
    if len(sent) != 1 or not CALLS_UPPER.search(sql_code(sent[0])) or \
            FRESH_WORD not in bound_values(log.statements[0].params):
        return (f"the check called server_upper({FRESH_WORD!r}): it should send one statement "
                "that calls upper() on the word, bound as a parameter.")
    return None
