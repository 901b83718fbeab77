"""Checks for 18 · From sync to async.

Exercise 1 records with this module's ``watch(engine)``, which adds to ``evidence.watch``
what the ORM executions' call stacks show: whether the legacy ``shelf_report`` itself
(its code object, not a copy under another name) sent the statements, for "US", with its
lazy loads, and whether every session the cell opened was closed (not only committed).
A right report that none of the async engine's statements produced (the sync engine, a
thread, a hard-coded list), or that a rewrite or a copy produced, is still "not yet".
Exercise 2 runs the learner's port itself, on rows of its own (a country the seed never
uses, with two prices that tie after the cut), and judges the table, the order, the
statements before and after its one commit, the session used and what a caller can read
once the session has closed.
"""

from __future__ import annotations

import contextlib
import inspect as pyinspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from types import CodeType
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from tutorial_kit.checks import evidence
from tutorial_kit.checks.evidence import Watched, bound_values, closed, plain, rows, unrecorded
from tutorial_kit.exercises import Rule, check, describe, unanswered, unavailable
from tutorial_kit.models import Book

__all__ = ["ex1", "ex2", "watch"]


@dataclass
class Execution:
    """One ORM execution in a watched cell (a query, or a lazy load a loader ran)."""

    #: Index in the log's statements of the statement it sent, if it went through the
    #: watched engine (do_orm_execute runs just before the statement is sent).
    statement: int
    on_engine: bool
    relationship_load: bool
    #: The code objects on the call stack when it ran: which function sent it. Inside
    #: ``run_sync``/``greenlet_spawn`` the stack is the greenlet's, which starts at the
    #: function that was handed over.
    callers: frozenset[CodeType]


@dataclass
class LegacyWatched(Watched):
    """``evidence.watch``'s record, plus each ORM execution's callers and every session
    that began in the block (held, so one dropped unclosed is still there to ask)."""

    executions: list[Execution] = field(default_factory=list)
    opened: list[Session] = field(default_factory=list)
    #: The file name of the cell that entered the block (a function it defines has it).
    cell_file: str = ""

    def unclosed(self) -> int:
        """Sessions that began in the block and are not closed now: ``close()`` ends the
        transaction and empties the identity map; ``commit()`` only ends the transaction,
        and the loaded objects (which the record holds) stay in the map."""
        return sum(1 for s in self.opened if s.in_transaction() or len(s.identity_map) > 0)


def _caller_file() -> str:
    """The file of the code that entered ``watch``: the first frame outside this module
    and ``contextlib``."""
    frame = pyinspect.currentframe()
    while frame is not None and frame.f_code.co_filename in (__file__, contextlib.__file__):
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else ""


@contextmanager
def watch(engine: AsyncEngine) -> Iterator[LegacyWatched]:
    """``evidence.watch(engine)``, plus who sent each ORM execution and which sessions began.

    The record shares ``evidence.watch``'s lists while the block runs, and takes its
    counts when it ends.
    """
    cell_file = _caller_file()
    with evidence.watch(engine) as seen:
        log = LegacyWatched(**{f.name: getattr(seen, f.name) for f in fields(Watched)},
                            cell_file=cell_file)

        def ran(state: ORMExecuteState) -> None:
            try:
                bind = state.session.get_bind(**state.bind_arguments)
                on_engine = bind.engine is engine.sync_engine
            except Exception:   # an unbound session: its execution fails on its own
                on_engine = False
            frame, callers = pyinspect.currentframe(), set()
            while frame is not None:
                callers.add(frame.f_code)
                frame = frame.f_back
            log.executions.append(Execution(len(seen.statements), on_engine,
                                            state.is_relationship_load, frozenset(callers)))

        def began(session: Session, *_args: Any) -> None:
            if not any(s is session for s in log.opened):
                log.opened.append(session)

        hooks: list[tuple[str, Callable[..., None]]] = [
            ("do_orm_execute", ran), ("after_begin", began)]
        for name, fn in hooks:
            event.listen(Session, name, fn)
        try:
            yield log
        finally:
            for name, fn in hooks:
                event.remove(Session, name, fn)
    for f in fields(Watched):   # what evidence.watch set at the end (counts, checked out)
        setattr(log, f.name, getattr(seen, f.name))


#: The country exercise 1 asks for.
EX1_COUNTRY = "US"
#: What ``shelf_report`` returns, read with plain SQL: (author, books, total price).
SHELF = text(
    "SELECT a.name, count(b.id), coalesce(sum(b.price_cents), 0) FROM author a "
    "LEFT JOIN book b ON b.author_id = a.id WHERE a.country = :country "
    "GROUP BY a.id, a.name ORDER BY a.name, a.id")
#: A legacy ``Query`` labels each column with its table's name; a ``select()`` does not
#: (2.0's selectinload of a many-to-one does, for the related table: only the queried
#: entity's table tells).
BOOK_QUERY_LABELS = re.compile(r"\bbook\.id AS book_id\b")
EX1_HINT = (f"ex1 should be what shelf_report(session, {EX1_COUNTRY!r}) returns, called "
            "unchanged, lazy loads included, through engine.")


def _lazy_loads(log: LegacyWatched, code: CodeType | None) -> list[int]:
    """For each query the legacy function sent through the engine for EX1_COUNTRY, how
    many lazy loads it sent after it (before its next query)."""
    counts: list[int] = []
    ours = [e for e in log.executions if code in e.callers and e.on_engine]
    for e in ours:
        if not e.relationship_load:
            sent = log.statements[e.statement] if e.statement < log.count else None
            counts.append(-1 if sent is None
                          or EX1_COUNTRY not in bound_values(sent.params) else 0)
        elif counts and counts[-1] >= 0:
            counts[-1] += 1
    return counts


async def ex1(answer: Any, log: Any, *, engine: AsyncEngine, legacy: Any) -> None:
    """``shelf_report``'s result for US, from the legacy function run through ``engine``.

    ``legacy`` is the notebook's ``shelf_report``. Requirements, from the prompt:
    1. ``ex1`` equals the report (read here with plain SQL);
    2. its statements went through the async ``engine`` (not the sync engine, a thread,
       or no database at all);
    3. the legacy function itself ran, unchanged: its code (not a copy defined in the
       cell, under any name, nor a rewrite) sent a query for US, then one lazy load of
       the books per author, through ``engine``;
    4. every session opened in the cell is closed, and no connection is left checked out.
    """
    if unanswered(1, answer, EX1_HINT) or unrecorded(1, log):
        return
    if not isinstance(log, LegacyWatched):   # evidence.watch's record, not this module's
        unrecorded(1, None)
        return
    try:
        expected = await rows(engine, SHELF, {"country": EX1_COUNTRY})
    except Exception as err:   # a verdict line, never a traceback
        check(1, answer, unavailable("reading the books to compare", err, EX1_HINT))
        return
    code = getattr(legacy, "__code__", None)
    copied = code is not None and code.co_filename == log.cell_file
    runs = _lazy_loads(log, code)
    mine = [n for n in runs if n >= 0]
    check(1, answer, plain(1, answer),
          (lambda v: isinstance(v, list | tuple) and [tuple(r) for r in v] == expected,
           f"ex1 is not shelf_report's result for {EX1_COUNTRY!r}: {EX1_HINT}"),
          (lambda v: log.count > 0,
           "right report, but none of its statements went through engine: the legacy "
           "function ran on another engine (sync_engine blocks the event loop, in a thread "
           "or not), or the rows did not come from the database. Run it through an "
           "AsyncSession on engine."),
          (lambda v: not copied,
           "shelf_report is defined in your own cell: that is a copy of the legacy "
           "function. Call the one the legacy module's cell defines, unchanged."),
          (lambda v: bool(runs),
           "none of the statements on engine was sent by the legacy shelf_report itself: "
           "call that function, unchanged (not a copy under another name, not a rewrite), "
           "through engine."),
          (lambda v: bool(mine),
           f"shelf_report ran on engine, but not for {EX1_COUNTRY!r}: the report must come "
           "from that run."),
          (lambda v: len(expected) in mine,
           f"shelf_report ran on engine, but only {max(mine, default=0)} of its "
           f"{len(expected)} lazy loads of author.books did: the other authors' books were "
           "already loaded in the session when it ran. The exercise asks for the function "
           "as the application runs it, lazy loads included: call it on a session that "
           "has not loaded them."),
          closed(log),
          (lambda v: log.unclosed() == 0,
           f"{log.unclosed()} session(s) opened in your cell are still open, though no "
           "connection is left checked out: commit() ends a transaction but does not close "
           "the session. Close every session you open: async with (with, for a plain "
           "Session), or close()."))


#: Exercise 2's own rows: a country the seed never uses, two authors, four books. Books
#: 1 and 2 cost 1000 and 1001 cents: both are 850 after a 15 % cut, so ordering by the
#: price after the cut (then id) puts them the other way round.
EX2_COUNTRY, EX2_PERCENT = "ZZ", 15
EX2_BASE = 1_900_000_000
EX2_AUTHORS = [(EX2_BASE + 1, "Zora Zeta"), (EX2_BASE + 2, "Zeno Zylstra")]
EX2_BOOKS = [  # (id, author id, title, price in cents)
    (EX2_BASE + 1, EX2_BASE + 2, "Zeta Patterns", 1001),
    (EX2_BASE + 2, EX2_BASE + 1, "Zylstra Primer", 1000),
    (EX2_BASE + 3, EX2_BASE + 1, "Zero Handbook", 2599),
    (EX2_BASE + 4, EX2_BASE + 2, "Zest Notes", 499),
]
ADD_AUTHORS = text("INSERT INTO author (id, name, country) VALUES (:id, :name, :country)")
ADD_BOOKS = text("INSERT INTO book (id, author_id, title, year, price_cents) "
                 "VALUES (:id, :author_id, :title, 2026, :price)")
DROP_AUTHORS = text("DELETE FROM author WHERE country = :country")   # books cascade
#: The filter on the country, in the SQL: ``author.country = $1`` (or ``IN``, an alias).
BY_COUNTRY = re.compile(r"\bauthor(_\d+)?\.country (=|IN)")
EX2_PRICES = text("SELECT b.id, b.price_cents FROM book b JOIN author a ON a.id = b.author_id "
                  "WHERE a.country = :country ORDER BY b.id")
EX2_HINT = ("ex2 should be an async def function (session, country, percent) that cuts the "
            "prices with select() on the session it is given, commits, and returns the Book "
            "objects.")


def _port_problem(answer: Any) -> str:
    """Why ``answer`` cannot be called as the port (empty if it can)."""
    if not callable(answer):
        return f"ex2 is a {type(answer).__name__}, not a function. "
    if not pyinspect.iscoroutinefunction(answer):
        return ("ex2 is a plain function: the port is an async def, awaited by its callers. ")
    try:
        pyinspect.signature(answer).bind(None, EX2_COUNTRY, EX2_PERCENT)
    except TypeError:
        return "ex2 should take three arguments: (session, country, percent). "
    return ""


def _read(books: Any) -> tuple[list[tuple[Any, ...]], str]:
    """What the callers read on each returned book, and the error that stopped them."""
    read: list[tuple[Any, ...]] = []
    try:
        for book in books:
            read.append((book.id, book.title, book.price_cents, book.author.name))
    except Exception as err:   # a lazy load on a detached object, an expired attribute…
        return read, describe(err)
    return read, ""


async def ex2(answer: Any, *, sessions: Callable[[], AsyncSession],
              engine: AsyncEngine) -> None:
    """A ``select()`` port of ``discount_books`` for the ``AsyncSession`` it is given.

    The check adds its own rows (country ZZ), calls ``answer(session, "ZZ", 15)`` with a
    session from ``sessions`` inside ``watch(engine)``, closes the session, reads what the
    callers read, and deletes its rows. Requirements, from the prompt:
    1. an ``async def`` taking ``(session, country, percent)``;
    2. it runs without raising;
    3. the prices in the table are cut, in whole cents rounded down, for that country only;
    4. it returns the ``Book`` objects, cheapest first by the price before the cut, then id;
    5. after the session closed, title, price and author name read without IO;
    6. at most two SELECTs; written with ``select()`` (no ``Query`` labels);
    7. it commits once, and sends nothing after the commit;
    8. everything ran in the session it was given.
    """
    if unanswered(2, answer, EX2_HINT):
        return
    problem = _port_problem(answer)
    if problem:
        check(2, answer, (lambda v: False, problem + EX2_HINT))
        return
    error, result, read, unreadable = "", None, [], ""
    given: int | None = None
    try:
        async with engine.begin() as conn:
            await conn.execute(DROP_AUTHORS, {"country": EX2_COUNTRY})   # an earlier try's
            await conn.execute(ADD_AUTHORS, [{"id": i, "name": n, "country": EX2_COUNTRY}
                                             for i, n in EX2_AUTHORS])
            await conn.execute(ADD_BOOKS, [{"id": i, "author_id": a, "title": t, "price": p}
                                           for i, a, t, p in EX2_BOOKS])
        try:
            with evidence.watch(engine) as log:
                async with sessions() as session:
                    given = session.sync_session.hash_key
                    try:
                        result = await answer(session, EX2_COUNTRY, EX2_PERCENT)
                    except Exception as err:   # the learner's code: its error is the hint
                        error = describe(err)
            if not error:
                read, unreadable = _read(result if isinstance(result, list | tuple) else [])
            prices = await rows(engine, EX2_PRICES, {"country": EX2_COUNTRY})
        finally:
            async with engine.begin() as conn:
                await conn.execute(DROP_AUTHORS, {"country": EX2_COUNTRY})
    except Exception as err:
        check(2, answer, unavailable("running your function", err, EX2_HINT))
        return
    names = dict(EX2_AUTHORS)
    cut = {i: p * (100 - EX2_PERCENT) // 100 for i, _a, _t, p in EX2_BOOKS}
    before = sorted(EX2_BOOKS, key=lambda b: (b[3], b[0]))
    expected = [(i, t, cut[i], names[a]) for i, a, t, _p in before]
    sql = log.sql()
    before_commit = sql[:log.commits[-1]] if log.commits else sql
    selects = [s for s in before_commit if s.lstrip().upper().startswith("SELECT")]
    sent_after_commit = log.count - log.commits[-1] if log.commits else 0
    rules: list[Rule] = [
        (lambda v: not error,
         f"your function raised {error}. An AsyncSession runs a statement only when it is "
         "awaited, and nothing may load behind a plain attribute read."),
        (lambda v: sorted(prices) == sorted(cut.items()),
         "the prices in the table are not cut as discount_books cuts them: "
         + ("unchanged: commit the session. " if prices == sorted(
             (i, p) for i, _a, _t, p in EX2_BOOKS) else
            "price_cents * (100 - percent) // 100, in whole cents, for that country's books "
            "only. ")),
        (lambda v: isinstance(result, list | tuple) and all(isinstance(b, Book) for b in result),
         "return the Book objects themselves (a list), as the legacy function does."),
        (lambda v: not unreadable,
         f"reading book.title, book.price_cents and book.author.name after the session "
         f"closed raised {unreadable}: "
         + ("the callers read the author too, so load it with the query." if "'author'" in
            unreadable else "everything the callers read must still be loaded when the "
            "session closes; an attribute expired by the session (a bulk UPDATE expires what "
            "it set, as expire() does) can no longer be read.")),
        (lambda v: sorted(read) == sorted(expected),
         "the books returned are not that country's books with their new prices."),
        (lambda v: read == expected,
         "right books, wrong order: cheapest first by the price before the cut, then by id, "
         "as the legacy query orders them."),
        (lambda v: not any(BOOK_QUERY_LABELS.search(s) for s in sql),
         "a legacy Query ran (its SQL labels columns book.id AS book_id): port it to select() "
         "and run that on the AsyncSession."),
        (lambda v: any(BY_COUNTRY.search(s) for s in selects),
         "no SELECT filters on the author's country: filter in the query (a WHERE on "
         "Author.country), as the legacy one does, not in Python."),
        (lambda v: bool(log.commits),
         "no COMMIT went through engine: the function must commit, as the legacy one does."),
        (lambda v: len(log.commits) == 1,
         f"{len(log.commits)} COMMITs went through engine: commit once, after every price is "
         "cut, as the legacy function does, so the cuts are one transaction (all or none)."),
        (lambda v: sent_after_commit == 0,
         f"{sent_after_commit} statement(s) after the commit: the callers' objects must not "
         "need a refresh (async_session keeps them loaded: expire_on_commit=False)."),
        (lambda v: len(selects) <= 2,
         f"{len(selects)} SELECTs: the books and their authors come in one or two, whatever "
         "the number of books; load the author with the query."),
        (lambda v: log.sessions <= {given},
         "your function used another session than the one it was given: run everything on "
         "the session argument."),
    ]
    check(2, answer, *rules)
