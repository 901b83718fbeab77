"""Lesson 09 · nest_asyncio: the checks of its two exercises.

Exercise 1 compares the learner's count with the table and looks for their
``SELECT`` in the statements the notebook's engine sent. Exercise 2 runs the
learner's script in a fresh Python process (the notebook's ``run_as_script``),
after a prelude that counts its ``asyncio.run()`` calls and the statements each
one sends, and judges the output.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import scalar
from tutorial_kit.exercises import check, unanswered, unavailable
from tutorial_kit.sql_capture import QueryLog

#: Plain SQL, so the check does not spell out the ORM query the exercise asks for.
COUNT_B = text("SELECT count(*) FROM b")
EX1_HINT = ("ex1 should be the number of rows in table b, asked of the database with await "
            "on the notebook's engine.")


async def ex1(answer: Any, *, log: QueryLog, engine: AsyncEngine) -> None:
    """The number of rows in table ``b``, read with a top-level ``await`` on ``engine``.

    The expected number is counted with plain SQL after the learner's cell;
    ``log`` must hold a ``SELECT … FROM b`` sent through ``engine``.
    """
    if unanswered(1, answer, EX1_HINT):
        return
    try:   # the expected answer, read after their cell
        rows = await scalar(engine, COUNT_B)
    except Exception as err:
        check(1, answer, unavailable("counting the table", err, EX1_HINT))
        return
    check(1, answer,
          (lambda v: v == rows, f"the table has {rows} rows; ex1 should be that number."),
          (lambda v: any(re.search(r"\bFROM b\b", sql) for sql in log.sql()),
           "the number is right, but no SELECT … FROM b went through `engine`: ask the "
           "database yourself, with await on the notebook's engine."))


#: Prepended to the learner's script: counts its ``asyncio.run()`` calls, and the
#: statements each one sends through any SQLAlchemy engine, before the script starts.
COUNTER = """
import asyncio, atexit, warnings
warnings.simplefilter("default", ResourceWarning)  # report connections never closed
from sqlalchemy import event
from sqlalchemy.engine import Engine
_runs, _run = [], asyncio.run
def _counted(*args, **kwargs):
    _runs.append(0)                                # statements sent during this call
    return _run(*args, **kwargs)
asyncio.run = _counted
def _sent(*args):
    if _runs:
        _runs[-1] += 1
event.listen(Engine, "before_cursor_execute", _sent)
atexit.register(lambda: print(f"asyncio.run() calls: {len(_runs)}\\n"
                              f"statements sent in each: {_runs}"))
"""
EX2_HINT = "the script should print 'run 1: …' and 'run 2: …'."


async def ex2(answer: Any, *, run_as_script: Callable[[str], Awaitable[str]]) -> None:
    """A script whose two ``asyncio.run()`` calls both reach the database and succeed.

    ``run_as_script`` runs it in a fresh process (no Jupyter, no patch) with
    ``ResourceWarning`` shown; its output is printed above the verdict and must
    hold both runs' lines, no error, no warning, two ``asyncio.run()`` calls and
    at least one statement sent through an engine in each.
    """
    if answer is None or not isinstance(answer, str):
        check(2, answer, (lambda v: isinstance(v, str),
                          "ex2 should be the source of a script, as a string."))
        return
    try:
        output = await run_as_script(COUNTER + answer)
    except Exception as err:
        check(2, answer, unavailable("running it", err, EX2_HINT))
        return
    if output:
        print(output)
    counts = re.findall(r"^statements sent in each: \[([\d, ]*)\]$", output, re.M)
    sent = [int(n) for n in counts[-1].split(",") if n.strip()] if counts else []
    check(2, answer,
          (lambda v: "run 1:" in output and "run 2:" in output, EX2_HINT),
          (lambda v: "Exception closing connection" not in output,
           "both runs printed, but the pool logged 'Exception closing connection' (above): "
           "dispose() ran where it could not close that connection, outside the loop that "
           "opened it. A connection is closed by the loop that opened it, before that loop "
           "ends."),
          (lambda v: "Error" not in output,
           "a run failed (above): an engine's pooled connection crossed from one loop to the "
           "next. Close what a loop opened before that loop ends, or keep no connection "
           "between runs."),
          (lambda v: "ResourceWarning" not in output,
           "both runs printed, but a connection was never closed (ResourceWarning, above): an "
           "engine that kept a connection must be disposed in the loop that opened it."),
          (lambda v: "asyncio.run() calls: 2\n" in output,
           "both runs should come from their own asyncio.run() call, as in "
           "SHARED_ENGINE_SCRIPT."),
          (lambda v: len(sent) == 2 and min(sent) > 0,
           f"both runs printed, but the statements sent through an engine in each run were "
           f"{sent} (above): each run must ask the database for the current user through "
           "a SQLAlchemy engine, as SHARED_ENGINE_SCRIPT does."))
