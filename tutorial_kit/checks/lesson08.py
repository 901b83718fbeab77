"""Lesson 08 · Concurrency: the checks of its two exercises.

Both judge what reached the server, as recorded by the scaffold's ``capture_sql``
block: the titles and reports are compared with the seeded rows, and the
statements' connections, parameters and timing show whether the tasks really
overlapped. Both scaffolds also record, with :func:`session_calls`, which session
sent each statement and when each session closed, so "one session per task" and
"reports in progress" are judged on the sessions themselves. Exercise 1 runs each
titles query again, to see that it reads only one author's books; exercise 2 asks
the server whether the reports ran on the engine's own pool, which keeps one of
their connections.
"""

from __future__ import annotations

import gc
import inspect
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, orm, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import plain, scalars
from tutorial_kit.exercises import Rule, check, unanswered, unavailable
from tutorial_kit.seed import Dataset
from tutorial_kit.sql_capture import QueryLog, Statement

DELAY = 0.05        # the seconds each exercise asks SLOW_QUERY to wait
SLEEP = re.compile(r"\bpg_sleep\(")
BOOK_QUERY = re.compile(r"\b(?:FROM|JOIN)\s+book\b")
#: Which of the given server processes are still connected (a closed connection's is gone).
LIVE = text("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)")
#: Another author with one book, added inside a transaction the check rolls back: a
#: query that reads one author's books returns the same rows with it as without it.
ANOTHER_AUTHOR = (
    "WITH other AS (INSERT INTO author (id, name, country)"
    " SELECT coalesce(max(id), 0) + 1, 'another author', 'ZZ' FROM author RETURNING id)"
    " INSERT INTO book (id, author_id, title, year, price_cents)"
    " SELECT (SELECT coalesce(max(id), 0) + 1 FROM book), id, 'another title', 2000, 100"
    " FROM other")


@dataclass(frozen=True)
class Call:
    """One statement a session executed: which session, the SQL, its parameters, when.

    ``session`` is the session's ``hash_key`` (unique for the kernel's life, unlike an
    ``id()``). ``at`` is the moment the session was asked to run it
    (``time.perf_counter()``), before it had a connection.
    """

    session: int
    sql: str
    params: Any
    at: float


@dataclass
class SessionCalls:
    """What :func:`session_calls` records: the calls, when each session closed, and how
    many were left open."""

    calls: list[Call] = field(default_factory=list)
    #: Session ``hash_key`` → when its last transaction ended (closing a session ends it).
    ended: dict[int, float] = field(default_factory=dict)
    #: Sessions still in a transaction, so still holding their connection, at the end.
    left_open: int = 0

    def spans(self) -> list[tuple[float, float]]:
        """Per session: from its first call to its last transaction's end (none: never)."""
        return [(s[0].at, self.ended.get(s[0].session, float("inf")))
                for s in by_session(self.calls)]


@contextmanager
def session_calls() -> Iterator[SessionCalls]:
    """Record every statement executed through any ``Session`` inside the block.

    ``do_orm_execute`` fires for each ``execute()``/``scalar()``/``scalars()`` of a
    session (an ``AsyncSession`` runs its ``Session`` underneath), Core statements
    included, and never for a bare ``Connection``; it fires before the session asks the
    pool for a connection, so a wait for one counts as the session's work.
    ``after_transaction_end`` of a session's outermost transaction marks when it ended.

    The sessions are held until the block ends, and counted then if still in a
    transaction. Then the garbage collector runs: a session the code dropped unclosed
    gives back its connection at that moment, not in the middle of a later statement
    (the pool's clean-up of a collected connection is no place to be interrupted).
    """
    seen = SessionCalls()
    sessions: dict[int, orm.Session] = {}

    def record(state: orm.ORMExecuteState) -> None:
        sessions[state.session.hash_key] = state.session
        seen.calls.append(Call(state.session.hash_key, str(state.statement),
                               state.parameters, time.perf_counter()))

    def ended(session: orm.Session, transaction: orm.SessionTransaction) -> None:
        if transaction.parent is None:
            seen.ended[session.hash_key] = time.perf_counter()

    event.listen(orm.Session, "do_orm_execute", record)
    event.listen(orm.Session, "after_transaction_end", ended)
    try:
        yield seen
    finally:
        event.remove(orm.Session, "do_orm_execute", record)
        event.remove(orm.Session, "after_transaction_end", ended)
        seen.left_open = sum(s.in_transaction() for s in sessions.values())
        sessions.clear()
        gc.collect()


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
        groups.setdefault(call.session, []).append(call)
    return list(groups.values())


def slow_then_titles(calls: list[Call]) -> bool:
    """One session's work: SLOW_QUERY first and only once, then its titles (a query on
    book; ``session.get`` with ``selectinload`` loads them with a second query)."""
    return (bool(SLEEP.search(calls[0].sql))
            and not any(SLEEP.search(c.sql) for c in calls[1:])
            and any(BOOK_QUERY.search(c.sql) for c in calls[1:]))


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
        first = next((s[0].sql for s in sessions if not SLEEP.search(s[0].sql)), None)
        # Every session ran SLOW_QUERY and queried book: one began with another statement,
        # or ran SLOW_QUERY again.
        said = (f"a session ran {' '.join(first.split())[:60]!r} before its SLOW_QUERY"
                if first is not None else "a session ran SLOW_QUERY more than once")
    return (f"{said}. Each session runs SLOW_QUERY first, then loads that author's titles.")


async def reads_other_authors(engine: AsyncEngine, statements: list[Statement]) -> int:
    """How many of ``statements`` return other rows once another author has a book.

    Each runs again as it was sent (its SQL and parameters), before and after
    :data:`ANOTHER_AUTHOR`, in one transaction that is rolled back: a query restricted
    to one author (in its WHERE, a join's ON, an IN) returns the same rows; one that
    reads every book, to filter in Python, gets the new book too.
    """
    changed = 0
    async with engine.connect() as conn:
        try:
            before = [sorted(map(repr, await conn.exec_driver_sql(s.sql, s.params)))
                      for s in statements]
            await conn.exec_driver_sql(ANOTHER_AUTHOR)
            for stmt, rows in zip(statements, before, strict=True):
                after = sorted(map(repr, await conn.exec_driver_sql(stmt.sql, stmt.params)))
                changed += after != rows
        finally:
            await conn.rollback()
    return changed


def seconds_asked(params: Any) -> list[float]:
    """The numbers in a statement's parameters (a dict or a driver's tuple)."""
    values = params.values() if isinstance(params, dict) else params or ()
    return [float(v) for v in values if isinstance(v, int | float)]


async def ex1(answer: Any, *, log: QueryLog, calls: SessionCalls, data: Dataset,
              engine: AsyncEngine) -> None:
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
    6. the titles queries read that author's books only: each, run again, returns the
       same rows after another author got a book (:func:`reads_other_authors`);
    7. the tasks ran concurrently: more than one connection, statements in flight
       at the same time;
    8. no session still holding its connection when the block ended (none left in
       its transaction).

    ``session.get(Author, id, options=[selectinload(Author.books)])`` loads the titles
    too (a query on author, then one on book restricted to that author): accepted.
    """
    hint = "one list of titles per author, in AUTHOR_IDS order, each ordered by Book.id."
    if unanswered(1, answer, hint):
        return
    author_ids = [row["id"] for row in data.authors]
    expected = [[b["title"] for b in sorted(data.books, key=lambda b: b["id"])
                 if b["author_id"] == a] for a in author_ids]
    sessions = by_session(calls.calls)
    book_queries = [s for s in log.statements if BOOK_QUERY.search(s.sql)]
    try:
        unrestricted = await reads_other_authors(engine, book_queries)
    except Exception as err:
        check(1, answer, unavailable("running your titles queries again", err, hint))
        return
    in_sessions = sum(len(s) for s in sessions)
    delays = [s for c in calls.calls if SLEEP.search(c.sql) for s in seconds_asked(c.params)]
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
          (lambda v: not unrestricted,
           f"{unrestricted} of the queries on book read other authors' books too (run again "
           "after another author got a book, they returned it): load only that author's "
           "titles, with a WHERE on Book.author_id in the query, not a filter in Python."),
          (lambda v: len(log.connections()) > 1,
           "every statement ran on one connection: the sessions ran one after another. "
           "Start the tasks together with asyncio.gather."),
          (lambda v: log.overlapped(),
           "separate sessions, but no two statements were in flight at once: the tasks ran "
           "one after another. Start them all together with asyncio.gather."),
          (lambda v: not calls.left_open,
           f"{calls.left_open} session(s) still held their connection when your code ended, "
           "in a transaction never ended: "
           "open each session with `async with`, so it closes when the task is done."))


def peak_in_progress(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment: those open at each span's start."""
    return max((sum(a <= t < b for a, b in spans) for t, _ in spans), default=0)


def alone(spans: list[tuple[float, float]]) -> int:
    """How many spans overlap no other one."""
    return sum(not any(a < e and s < b for j, (s, e) in enumerate(spans) if j != i)
               for i, (a, b) in enumerate(spans))


async def ex2(answer: Any, *, log: QueryLog, calls: SessionCalls, data: Dataset,
              engine: AsyncEngine) -> None:
    """``report()`` for every author, concurrently but at most two at a time.

    A report is in progress from its session's first call (before it asks the pool for
    a connection, so a report waiting for one counts) until its session closes. The
    prompt's requirements, one rule each:

    1. a list of ``Report``, one per author in ``AUTHOR_IDS`` order, each counting
       the author's seeded books;
    2. ``report``'s default ``Session``: two statements per author on ``engine``;
    3. ``delay=0.05``: every ``SLOW_QUERY`` asked for 0.05 seconds;
    4. the engine left as it is: the reports ran on the engine's own pool, which keeps
       ``pool_size`` (one) of their connections after the cell (a pool swapped in and
       disposed leaves none of them connected);
    5. at most two reports in progress at once, so the limit is the learner's code, not
       a pool made smaller (all five would be in progress, three waiting on the pool);
    6. two at once, not one after another;
    7. concurrently throughout: every report but one overlaps another (two by two
       passes; two together and then the rest one after another does not). A report
       started as another ends overlaps the one still running, even on a busy machine:
       a freed place is taken within a turn of the event loop, a report lasts 0.05 s;
    8. each report in a session of its own (the default ``Session``): the reports
       ran on more than one server connection.
    """
    hint = "ex2 should be a list of Report results, one per author, in AUTHOR_IDS order."
    if unanswered(2, answer, hint):
        return
    author_ids = [row["id"] for row in data.authors]
    books = {a: sum(b["author_id"] == a for b in data.books) for a in author_ids}
    spans = calls.spans()
    peak = peak_in_progress(spans)
    lone = alone(spans)
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
           f"{peak} reports were in progress at once (from a report's first statement, a "
           "wait for a pooled connection included, until its session closed): at most two "
           "at a time, limited by your own code."),
          (lambda v: peak == 2,
           "the reports ran one after another: run them concurrently, two at a time."),
          (lambda v: lone <= 1,
           f"{lone} reports ran on their own, with no other report in progress: keep two "
           "running at a time until fewer than two are left."),
          (lambda v: len(pids) > 1,
           "every report ran on one server connection, so they shared one session: call "
           "report() without a session argument, so that each uses its default Session."))
