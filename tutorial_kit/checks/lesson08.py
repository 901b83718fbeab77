"""Lesson 08 · Concurrency: the checks of its two exercises.

Both judge what reached the server, as recorded by the scaffold's ``capture_sql``
block: the titles and reports are compared with the seeded rows, and the
statements' connections, parameters and timing show whether the tasks really
overlapped. Exercise 1's scaffold also records, with :func:`session_calls`, which
session sent each statement, so "one session per task" is judged on the sessions
themselves; exercise 2 asks the server whether the reports ran on the engine's own
pool, which keeps one of their connections.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, orm, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import plain, scalars
from tutorial_kit.exercises import Rule, check, unanswered, unavailable
from tutorial_kit.seed import Dataset
from tutorial_kit.sql_capture import QueryLog

DELAY = 0.05        # the seconds each exercise asks SLOW_QUERY to wait
SLEEP = re.compile(r"\bpg_sleep\(")
BOOK_QUERY = re.compile(r"\bFROM book\b")
#: Which of the given server processes are still connected (a closed connection's is gone).
LIVE = text("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)")


@dataclass(frozen=True)
class Call:
    """One statement a session executed: which session, the SQL, its parameters.

    The session itself is kept (not its id), so one never closed stays unclosed, with
    its connection checked out, until the check has seen it.
    """

    session: orm.Session
    sql: str
    params: Any


@contextmanager
def session_calls() -> Iterator[list[Call]]:
    """Record every statement executed through any ``Session`` inside the block.

    ``do_orm_execute`` fires for each ``execute()``/``scalar()``/``scalars()`` of a
    session (an ``AsyncSession`` runs its ``Session`` underneath), Core statements
    included, and never for a bare ``Connection``.
    """
    calls: list[Call] = []

    def record(state: orm.ORMExecuteState) -> None:
        calls.append(Call(state.session, str(state.statement), state.parameters))

    event.listen(orm.Session, "do_orm_execute", record)
    try:
        yield calls
    finally:
        event.remove(orm.Session, "do_orm_execute", record)


def awaited(number: int, answer: Any) -> Rule:
    """A first rule: a task or future not awaited (``asyncio.gather(...)`` alone) is not
    its result. (An un-awaited coroutine is named before any rule runs.)"""
    return (lambda v: not inspect.isawaitable(v),
            f"ex{number} is an awaitable ({type(answer).__name__}), not its result: await it "
            f"and set ex{number} to what it returns.")


def by_session(calls: list[Call]) -> list[list[Call]]:
    """The calls grouped per session, sessions in the order they first executed."""
    groups: dict[int, list[Call]] = {}
    for call in calls:
        groups.setdefault(id(call.session), []).append(call)
    return list(groups.values())


def slow_then_titles(calls: list[Call]) -> bool:
    """One session's work: SLOW_QUERY first, then one query on book, nothing else."""
    return (len(calls) == 2 and bool(SLEEP.search(calls[0].sql))
            and bool(BOOK_QUERY.search(calls[1].sql)))


def session_work_hint(sessions: list[list[Call]]) -> str:
    """What the sessions that did not run SLOW_QUERY-then-titles ran instead."""
    untitled = sum(not any(BOOK_QUERY.search(c.sql) for c in s) for s in sessions)
    unslowed = sum(not any(SLEEP.search(c.sql) for c in s) for s in sessions)
    if untitled:
        said = (f"{untitled} session(s) never queried the book table: each task loads its "
                "author's titles from the database, in its own session")
    elif unslowed:
        said = f"{unslowed} session(s) never ran SLOW_QUERY: each task awaits it first"
    else:
        said = "a session ran its statements in another order, or ran more than these two"
    return (f"{said}. Each session runs two statements: SLOW_QUERY, then the query that loads "
            "that author's titles.")


def seconds_asked(params: Any) -> list[float]:
    """The numbers in a statement's parameters (a dict or a driver's tuple)."""
    values = params.values() if isinstance(params, dict) else params or ()
    return [float(v) for v in values if isinstance(v, int | float)]


def ex1(answer: Any, *, log: QueryLog, calls: list[Call], data: Dataset) -> None:
    """Every author's titles, one concurrent task and one session per author.

    The prompt's requirements, one rule each:

    1. one list of titles per author, in ``AUTHOR_IDS`` order (compared with ``data``),
       each ordered by ``Book.id``: the setup cell stores each author's first book last,
       so only an order the code asks for (in the query or in Python) gives the id order;
    2. every statement ran through a session on the notebook's ``engine`` (not a bare
       ``engine.connect()``, not a session bound to another engine);
    3. one session per author: as many sessions as authors;
    4. each session awaits ``SLOW_QUERY`` first, then loads the titles;
    5. with ``{"seconds": 0.05}``;
    6. the tasks ran concurrently: more than one connection, statements in flight
       at the same time;
    7. no session still holding its connection (none left in its transaction).
    """
    hint = "one list of titles per author, in AUTHOR_IDS order, each ordered by Book.id."
    if unanswered(1, answer, hint):
        return
    author_ids = [row["id"] for row in data.authors]
    expected = [[b["title"] for b in sorted(data.books, key=lambda b: b["id"])
                 if b["author_id"] == a] for a in author_ids]
    sessions = by_session(calls)
    in_sessions = sum(len(s) for s in sessions)
    delays = [s for c in calls if SLEEP.search(c.sql) for s in seconds_asked(c.params)]
    open_sessions = [s for s in sessions if s[0].session.in_transaction()]
    check(1, answer,
          plain(1, answer),
          awaited(1, answer),
          (lambda v: [sorted(titles) for titles in v] == [sorted(t) for t in expected], hint),
          (lambda v: [list(titles) for titles in v] == expected,
           "each author's titles are all there, but not in Book.id order: the table does not "
           "store its rows in id order, and a query without ORDER BY returns them as stored. "
           "Order by Book.id, in the query or in your code."),
          (lambda v: log.count >= in_sessions,
           f"{in_sessions - log.count} of your sessions' statements did not run on the "
           "notebook's engine (the scaffold records only `engine`): open each task's session "
           "with the notebook's Session(), which is bound to it."),
          (lambda v: in_sessions > 0 and in_sessions == log.count,
           f"{log.count - in_sessions} of the {log.count} statements ran outside any "
           "session (a bare connection, or none at all): do each task's work inside its own "
           "`async with Session() as session:` block."),
          (lambda v: len(sessions) == len(author_ids),
           f"{len(sessions)} session(s) ran statements for {len(author_ids)} authors: one "
           "session per task, one task per author, and each task does all its work in it."),
          (lambda v: all(slow_then_titles(s) for s in sessions), session_work_hint(sessions)),
          (lambda v: delays and all(d == DELAY for d in delays),
           f"SLOW_QUERY was asked for {sorted(set(delays))} second(s): pass "
           '{"seconds": 0.05}, as the prompt asks.'),
          (lambda v: len(log.connections()) > 1,
           "every statement ran on one connection: the sessions ran one after another. "
           "Start the tasks together with asyncio.gather."),
          (lambda v: log.overlapped(),
           "separate sessions, but no two statements were in flight at once: the tasks ran "
           "one after another. Start them all together with asyncio.gather."),
          (lambda v: not open_sessions,
           f"{len(open_sessions)} session(s) still hold their connection, in a transaction "
           "never ended: "
           "open each session with `async with`, so it closes when the task is done."))


def _peak_in_flight(log: QueryLog) -> int:
    """The most statements in flight at one moment: the spans open at each start."""
    spans = [(s.started, s.ended or s.started) for s in log.statements]
    return max((sum(a <= t < b for a, b in spans) for t, _ in spans), default=0)


async def ex2(answer: Any, *, log: QueryLog, data: Dataset, engine: AsyncEngine) -> None:
    """``report()`` for every author, concurrently but at most two at a time.

    The prompt's requirements, one rule each:

    1. a list of ``Report``, one per author in ``AUTHOR_IDS`` order, each counting
       the author's seeded books;
    2. ``report``'s default ``Session``: two statements per author on ``engine``;
    3. ``delay=0.05``: every ``SLOW_QUERY`` asked for 0.05 seconds;
    4. the engine left as it is: the reports ran on the engine's own pool, which keeps
       ``pool_size`` (one) of their connections after the cell (a pool swapped in and
       disposed leaves none of them connected);
    5. at most two in flight at once, and 6. two, not one after another;
    7. each report in a session of its own (the default ``Session``): the reports
       ran on more than one server connection.
    """
    hint = "ex2 should be a list of Report results, one per author, in AUTHOR_IDS order."
    if unanswered(2, answer, hint):
        return
    author_ids = [row["id"] for row in data.authors]
    books = {a: sum(b["author_id"] == a for b in data.books) for a in author_ids}
    peak = _peak_in_flight(log)
    delays = [s for st in log.statements if SLEEP.search(st.sql)
              for s in seconds_asked(st.params)]
    pids: list[int] = []
    try:
        if isinstance(answer, list | tuple):
            pids = sorted({r.server_pid for r in answer if hasattr(r, "server_pid")})
            live = set(await scalars(engine, LIVE, {"pids": pids}))
        else:
            live = set()
    except Exception as err:
        check(2, answer, unavailable("asking the server about the reports' connections",
                                     err, hint))
        return
    check(2, answer,
          plain(2, answer),
          awaited(2, answer),
          (lambda v: [r.author_id for r in v] == author_ids
           and all(r.books == books[r.author_id] for r in v), hint),
          (lambda v: log.count == 2 * len(author_ids),
           f"{log.count} statements ran on `engine`, not {2 * len(author_ids)}: call report() "
           "with its default Session, once per author."),
          (lambda v: delays and all(d == DELAY for d in delays),
           f"the reports' SLOW_QUERY waited {sorted(set(delays))} second(s): call "
           "report(a, delay=0.05), as the prompt asks."),
          (lambda v: bool(live),
           "the reports ran on connections that are all closed now, so not on the engine's "
           "own pool (which keeps one of them): leave the engine and its pool as they are, "
           "and limit the tasks yourself."),
          (lambda v: peak <= 2,
           f"{peak} statements were in flight at once; at most two reports may run at a time."),
          (lambda v: peak == 2,
           "the reports ran one after another: run them concurrently, two at a time."),
          (lambda v: len(pids) > 1,
           "every report ran on one server connection, so they shared one session: call "
           "report() without a session argument, so that each uses its default Session."))
