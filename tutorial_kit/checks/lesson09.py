"""Lesson 09 · nest_asyncio: the checks of its two exercises.

Exercise 1 compares the learner's count with the table, looks for their counting
``SELECT`` in the statements the notebook's engine sent, and asks the pool whether
a connection was left checked out. Exercise 2 runs the learner's script in a fresh
Python process (the notebook's ``run_as_script``) after a prelude that watches it
from inside: the event loop each statement went out on, its ``asyncio.run()``
calls, and every connection a pool opened, closed, and on which loop. The prelude
writes its report to the process's own stdout, so a script that hides its
warnings or its stderr hides nothing from the check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import bound_values, scalar
from tutorial_kit.exercises import check, unanswered, unavailable
from tutorial_kit.sql_capture import QueryLog

#: Plain SQL, so the check does not spell out the ORM query the exercise asks for.
COUNT_B = text("SELECT count(*) FROM b")
READS_B = re.compile(r"\bFROM b\b")
COUNTS_B = re.compile(r"\bcount\(.*\bFROM b\b", re.S)
EX1_HINT = ("ex1 should be the number of rows in table b, counted by the database, with "
            "await on the notebook's engine.")


def _count_hint(answer: Any, runs: list[list[tuple[Any, ...]]], table: int) -> str:
    """Why none of the learner's counting statements, run again, gives one row: ``ex1``."""
    if not runs:
        return ("the number is right, but none of your statements on b counts its rows: ex1 "
                "must be the number the server's count() returns, not one that matches it "
                "(a constant, max(id)). Send select(func.count()).select_from(B).")
    if any(len(r) > 1 for r in runs):
        return ("your counting statement returns one row per row of b (a window count): the "
                "rows travel to Python. Let the server return the count as one row, with "
                "select(func.count()).select_from(B).")
    got = sorted({r[0][0] for r in runs if r and r[0]}, key=repr)
    return (f"your counting statement, run again, returns {got}, but ex1 is {answer!r} and b "
            f"has {table} rows: set ex1 to what the statement that counts every row of b "
            "returns.")


async def ex1(answer: Any, *, log: QueryLog, engine: AsyncEngine) -> None:
    """The number of rows in table ``b``, counted with a top-level ``await`` on ``engine``.

    The prompt's requirements, one rule each:

    1. a number, equal to ``count(*)`` of table ``b`` (read here after their cell);
    2. asked of the database through the notebook's ``engine`` (no thread, no other
       engine): ``log`` holds a statement on ``b``;
    3. counted by the server, in one row: a ``count(…) … FROM b`` statement in ``log``
       which, sent again here exactly as it went out, returns one row holding ``ex1``
       (so a constant beside a discarded count, ``max(id)``, or a window count that
       ships every row, are told apart from a count);
    4. no connection left open: none checked out of ``engine``'s pool.
    """
    if unanswered(1, answer, EX1_HINT):
        return
    reads_b = [st for st in log.statements if READS_B.search(st.sql)
               and st.sql.lstrip().upper().startswith(("SELECT", "WITH"))]
    try:   # the expected answer, and each of their reads of b sent again, after their cell
        rows = await scalar(engine, COUNT_B)
        async with engine.connect() as conn:
            runs = [[tuple(r) for r in await conn.exec_driver_sql(
                st.sql, tuple(bound_values(st.params)))] for st in reads_b]
    except Exception as err:
        check(1, answer, unavailable("counting the table", err, EX1_HINT))
        return
    counts = [r for st, r in zip(reads_b, runs, strict=True) if COUNTS_B.search(st.sql)]
    shipped = not counts and any(len(r) == rows > 1 for r in runs)
    check(1, answer,
          (lambda v: isinstance(v, int) and not isinstance(v, bool),
           f"ex1 is a {type(answer).__name__}, not a number. {EX1_HINT}"),
          (lambda v: v == rows, f"the table has {rows} rows; ex1 should be that number."),
          (lambda v: reads_b,
           "the number is right, but no SELECT … FROM b went through `engine`: ask the "
           "database yourself, with await on the notebook's engine."),
          (lambda v: not shipped,
           "the number is right, but your SELECT fetched the rows of b and Python counted "
           "them: let the server count, with select(func.count()).select_from(B)."),
          (lambda v: [(v,)] in counts, _count_hint(answer, counts, rows)),
          (lambda v: engine.pool.checkedout() == 0,
           f"{engine.pool.checkedout()} connection(s) of `engine` are checked out now: one "
           "opened without `async with` stays out until it is closed. Open it with `async "
           "with engine.connect() as conn:`, so it goes back to the pool when the block "
           "ends, and close any left open by an earlier try (`await conn.close()`)."))


#: Prepended to the learner's script: before it starts, it notes the event loop each
#: statement goes out on, counts the ``asyncio.run()`` calls, and follows every
#: connection a pool opens to its close (on which loop, and whether it really closed).
#: Loops and connections are kept alive, so no ``id()`` is reused.
PRELUDE = """
import asyncio, atexit, json, sys, warnings
warnings.simplefilter("default", ResourceWarning)  # report connections never closed
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool
_report_to, _run = sys.stdout, asyncio.run
_calls, _loops, _opened, _closed = [0], [], [], {}
def _loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
def _counted(*args, **kwargs):
    _calls[0] += 1
    return _run(*args, **kwargs)
asyncio.run = _counted
def _sent(*args):
    _loops.append(_loop())
def _connected(dbapi_connection, record):
    _opened.append((dbapi_connection, _loop()))
def _closing(dbapi_connection, *record):
    _closed[id(dbapi_connection)] = _loop()
event.listen(Engine, "before_cursor_execute", _sent)
event.listen(Pool, "connect", _connected)
event.listen(Pool, "close", _closing)
event.listen(Pool, "close_detached", _closing)
def _report():
    loops = []
    for loop in _loops:
        if not any(loop is seen for seen, _ in loops):
            loops.append((loop, sum(loop is other for other in _loops)))
    def closed(conn, loop):
        driver = getattr(conn, "driver_connection", None)
        really = driver is None or not hasattr(driver, "is_closed") or driver.is_closed()
        return really and id(conn) in _closed and _closed[id(conn)] is loop
    never = sum(id(c) not in _closed for c, _ in _opened)
    print("CHECK-REPORT " + json.dumps({
        "runs": _calls[0], "sent": [n for _, n in loops],
        "opened": len(_opened), "never_closed": never,
        "not_closed_on_own_loop": sum(not closed(c, l) for c, l in _opened) - never,
    }), file=_report_to, flush=True)
atexit.register(_report)
"""
REPORT = re.compile(r"^CHECK-REPORT (\{.*\})$", re.M)
#: A warning as Python prints it (``file:line: SomeWarning: message``) or logs it.
WARNING = re.compile(r"\b([A-Z]\w*Warning)\b")
EX2_HINT = "the script should print 'run 1: …' and 'run 2: …'."


def _loops_hint(sent: list[int]) -> str:
    if not sent:
        return ("no statement reached the database through a SQLAlchemy engine: each run "
                "must ask for the current user through an engine, as SHARED_ENGINE_SCRIPT does.")
    if len(sent) == 1:
        return ("every statement went out on one event loop: each run must be its own "
                "asyncio.run() call, which makes a new loop. A patched asyncio.run() "
                "(nest_asyncio), an asyncio.Runner or one asyncio.run() for both runs reuse "
                "a single loop.")
    return (f"statements went out on {len(sent)} event loops ({sent} each), not two: one "
            "asyncio.run() per run, each asking the database once.")


async def ex2(answer: Any, *, run_as_script: Callable[[str], Awaitable[str]]) -> None:
    """A script whose two ``asyncio.run()`` calls both reach the database and succeed.

    The prompt's requirements, one rule each, judged on a run in a fresh process
    (no Jupyter, no patch), watched by ``PRELUDE``:

    1. it prints ``run 1: …`` and ``run 2: …``;
    2. no run fails (no error in its output);
    3. each run reaches the database on a loop of its own: statements on exactly two
       event loops;
    4. one ``asyncio.run()`` per run: two calls;
    5. every connection it opened is closed, by the loop that opened it (create and
       dispose, ``NullPool``, or dispose before the loop ends), whatever the script
       does with its warnings;
    6. and no warning of any kind in its output (``ResourceWarning``, ``SAWarning``, …).
    """
    if answer is None or not isinstance(answer, str):
        check(2, answer, (lambda v: isinstance(v, str),
                          "ex2 should be the source of a script, as a string."))
        return
    try:
        output = await run_as_script(PRELUDE + answer)
    except Exception as err:
        check(2, answer, unavailable("running it", err, EX2_HINT))
        return
    found = REPORT.findall(output)
    output = REPORT.sub("", output).strip()
    if output:
        print(output)
    report = json.loads(found[-1]) if found else {}
    sent, runs = report.get("sent", []), report.get("runs", 0)
    never, elsewhere = report.get("never_closed", 0), report.get("not_closed_on_own_loop", 0)
    missing = " and ".join(f"'{line} …'" for line in ("run 1:", "run 2:") if line not in output)
    warned = sorted(set(WARNING.findall(output)))
    check(2, answer,
          (lambda v: not missing,
           (f"the script stopped with an error (above) before it printed {missing}."
            if "Traceback" in output else
            f"the script did not print {missing}: it should print 'run 1: …' and 'run 2: …'.")),
          (lambda v: found,
           "the script ended before Python's normal exit (nothing after it could run): let "
           "it end normally."),
          (lambda v: "Error" not in output and "Traceback" not in output,
           "an error was printed (above). A connection belongs to the loop that opened it: "
           "close everything a run opened before its loop ends, or keep no connection "
           "between runs."),
          (lambda v: len(sent) == 2 and min(sent) > 0, _loops_hint(sent)),
          (lambda v: runs == 2,
           f"asyncio.run() was called {runs} time(s): each of the two runs is one "
           "asyncio.run() call, as in SHARED_ENGINE_SCRIPT."),
          (lambda v: not never,
           f"{never} of the {report.get('opened')} connection(s) the script opened were never "
           "closed: an engine that kept a connection must be disposed, inside the loop that "
           "opened it (warnings hidden or not)."),
          (lambda v: not elsewhere,
           f"{elsewhere} connection(s) were closed outside the loop that opened them, so "
           "not really closed: dispose the engine inside the coroutine that asyncio.run() "
           "runs, before its loop ends."),
          (lambda v: not warned,
           f"the output holds a warning ({', '.join(warned)}, above): the script must run "
           "free of warnings. A ResourceWarning means something it opened was never closed."))
