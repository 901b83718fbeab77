"""The checks of lesson 00 · Start here: an awaited query, and a coroutine function awaited."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import (
    Watched,
    bound_values,
    closed,
    plain,
    scalar,
    sql_code,
    unrecorded,
    watch,
)
from tutorial_kit.exercises import check, describe, unanswered, unavailable

__all__ = ["ex1", "ex2", "watch"]

WORDS = ("async", "orm", "postgres")
#: A word the learner never saw: the check runs their function on it. Whether the server's
#: upper() spells "ß" like Python's depends on the provider (libc keeps it; ICU and
#: PostgreSQL 18's PG_UNICODE_FAST make it "SS", as Python does), so no word tells them
#: apart everywhere: the check passes a ``_Probe`` instead (below).
FRESH_WORD = "straße"
#: How long the check waits for the learner's ``server_upper(FRESH_WORD)``.
CALL_TIMEOUT = 10.0
EX1_VALUE = "ex1 should be the database's name, a str"
EX2_VALUE = 'ex2 should be ["ASYNC", "ORM", "POSTGRES"]'
# The name as the server knows it, read from this connection's row in pg_stat_activity
# rather than with current_database(), the call the exercise asks for.
DATABASE_NAME = text("SELECT datname FROM pg_stat_activity WHERE pid = pg_backend_pid()")
CALLS_CURRENT_DATABASE = re.compile(r"\bcurrent_(database\s*\(|catalog\b)", re.I)
CALLS_UPPER = re.compile(r"\bupper\s*\(", re.I)


async def ex1(answer: object, log: Watched, engine: AsyncEngine) -> None:
    """Exercise 1: the server's name for the current database, asked with an awaited SELECT.

    The prompt's requirements, one rule each:

    1. ``ex1`` is the database's name, a str;
    2. a statement sent through ``engine`` calls ``current_database()`` (or its alias
       ``current_catalog``) as code, not inside a comment or a quoted string;
    3. the cell leaves no connection of ``engine`` checked out (the tutorial's rule).

    Not judged: whether ``ex1`` is that statement's result or the same name taken from the
    URL after it (the capture log holds statements, not the rows they returned; the red
    team's "sends SELECT current_database(), ignores it, reads DATABASE_URL" is therefore
    not in the suite).
    """
    if unanswered(1, answer, f"{EX1_VALUE}.") or unrecorded(1, log):
        return
    try:
        expected = await scalar(engine, DATABASE_NAME)
    except Exception as err:  # the server is gone: say so, with the hint, rather than raise
        check(1, answer, unavailable("asking the server", err, f"{EX1_VALUE}."))
        return
    check(1, answer, plain(1, answer),
          (lambda v: isinstance(v, str) and v == expected, f"{EX1_VALUE}."),
          (lambda v: any(CALLS_CURRENT_DATABASE.search(sql_code(sql)) for sql in log.sql()),
           "the name is right, but no statement your cell sent through `engine` calls "
           "current_database() (a comment or a quoted name does not count): ask the server, "
           "with await."),
          closed(log, "connection"))


async def ex2(answer: object, log: Watched, server_upper: object,
              engine: AsyncEngine) -> None:
    """Exercise 2: the three words in capitals, one awaited ``upper(:word)`` statement each.

    The prompt's requirements, one rule each:

    1. ``ex2`` is the list of the three words in capitals;
    2. ``server_upper`` is a coroutine function (``async def``) that takes only the word;
    3. the cell sent one statement per word through ``engine``, each calling ``upper()``
       as code, with its word (not the capitals) as a bound parameter, in any order (so
       ``asyncio.gather`` is as good as a loop);
    4. run by the check on a word it never saw ("straße", passed as a ``str`` whose own
       ``upper()`` is marked, so Python's capitals never pass for the server's, whatever
       its collation provider), ``server_upper(word)`` returns within 10 seconds, sends one
       such statement and returns what that statement returns (the check runs the
       statement again itself);
    5. no connection of ``engine`` is left checked out, also by ``server_upper``.

    Not judged: a cell whose ``server_upper`` is right but whose ``ex2`` is built with
    ``str.upper()`` after the three calls' results were thrown away (the log holds no
    results, and the three words' capitals are the same in Python; not in the suite).
    """
    if unanswered(2, answer, f"{EX2_VALUE}.") or unrecorded(2, log):
        return
    rerun = await _run_on_fresh_word(server_upper, engine)
    check(2, answer, plain(2, answer),
          (lambda v: list(v) == [w.upper() for w in WORDS], f"{EX2_VALUE}."),
          (lambda v: inspect.iscoroutinefunction(server_upper),
           "the list is right, but server_upper is not a coroutine function: define it with "
           "`async def server_upper(word):`, so that calling it gives a coroutine to await."),
          (lambda v: len(inspect.signature(server_upper).parameters) == 1,  # type: ignore[arg-type]
           "the list is right, but server_upper should take only the word: remove its other "
           "parameters and use `engine` inside it."),
          (lambda v: log.count == len(WORDS) and all(
              CALLS_UPPER.search(sql_code(sql)) for sql in log.sql()),
           f"your cell sent {log.count} statement(s) through `engine`; the server should "
           "compute each word with upper(), one statement per word."),
          (lambda v: sorted(_word_bound(s.params) for s in log.statements) == sorted(WORDS),
           "pass each word itself (not its capitals) as the bound parameter of its statement, "
           "not pasted into the SQL."),
          closed(log, "connection"),
          (lambda v: rerun is None, rerun or ""))


class _Probe(str):
    """The fresh word, whose Python ``upper()`` gives what no server's ``upper()`` does.

    The server sees a plain string (the driver sends its text), so the statement's answer
    is the provider's own; a ``server_upper`` that returns ``word.upper()`` returns this
    class's marked copy instead, and differs from it on every provider.
    """

    __slots__ = ()

    def upper(self) -> str:
        return f"{str.upper(self)} (Python's str.upper())"


def _word_bound(params: Any) -> str:
    """The one word of ``WORDS`` bound to a statement, or ``""``."""
    words = [v for v in bound_values(params) if v in WORDS]
    return words[0] if len(words) == 1 else ""


async def _run_on_fresh_word(server_upper: object, engine: AsyncEngine) -> str | None:
    """Call the learner's function on a word it never saw: None if it behaves, else a hint."""
    if not inspect.iscoroutinefunction(server_upper):
        return None   # the coroutine-function rule says so first
    call: Callable[[str], Any] = server_upper
    checkouts: list[object] = []
    listener = (engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args[0]))
    event.listen(*listener)
    try:
        with watch(engine, keep=False) as log:
            async with asyncio.timeout(CALL_TIMEOUT):
                result = await call(_Probe(FRESH_WORD))
    except TimeoutError:
        return (f"the check called server_upper({FRESH_WORD!r}) and it had not returned after "
                f"{CALL_TIMEOUT:.0f} seconds: it should send one statement and return its "
                "result, not wait for anything else.")
    except Exception as err:
        return (f"the check called server_upper({FRESH_WORD!r}) and it raised {describe(err)}: "
                "it should take only the word, and open its own connection from `engine`.")
    finally:
        event.remove(*listener)
    sent = log.sql()
    if len(sent) != 1 or not CALLS_UPPER.search(sql_code(sent[0])) or \
            FRESH_WORD not in bound_values(log.statements[0].params):
        return (f"the check called server_upper({FRESH_WORD!r}): it should send one statement "
                "that calls upper() on the word, bound as a parameter.")
    if not checkouts:
        return (f"the check called server_upper({FRESH_WORD!r}) and it sent its statement on "
                "a connection opened before the call and still open: open one inside it with "
                "`async with engine.connect() as conn:`, and close the other one.")
    if log.left_open():
        return (f"the check called server_upper({FRESH_WORD!r}) and it left a connection "
                "checked out: open it with `async with engine.connect() as conn:`.")
    try:   # the learner's own statement, run again: what it returns is the right answer
        async with engine.connect() as conn:
            server_says = (await conn.exec_driver_sql(
                sent[0], tuple(bound_values(log.statements[0].params)))).scalar()
    except Exception:
        server_says = result
    if isinstance(result, str) and result == _Probe(FRESH_WORD).upper():
        return (f"the check called server_upper({FRESH_WORD!r}) and it returned Python's "
                "word.upper(), not what its statement returns: return the value the server "
                "sends back.")
    if result != server_says:
        return (f"the check called server_upper({FRESH_WORD!r}) and got {result!r}, but its "
                f"statement returns {server_says!r}: return the value the server sends back.")
    return None
