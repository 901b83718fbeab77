"""Checks for 18 · From sync to async.

Exercise 1 records with ``checks.watch(engine)``: a right report that none of the async
engine's statements produced (the sync engine, a thread, a hard-coded list), or that a
rewrite produced (other SQL than the legacy ``Query`` and its lazy loads), is still "not
yet". Exercise 2 runs the learner's port itself, on rows of its own (a country the seed
never uses, with two prices that tie after the cut), and judges the table, the order, the
statements before and after the commit, the session used and what a caller can read once
the session has closed.
"""

from __future__ import annotations

import inspect as pyinspect
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tutorial_kit.checks.evidence import Watched, closed, plain, rows, unrecorded, watch
from tutorial_kit.exercises import Rule, check, describe, unanswered, unavailable
from tutorial_kit.models import Book

__all__ = ["ex1", "ex2", "watch"]

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
QUERY_LABELS = re.compile(r"\bauthor\.id AS author_id\b")
BOOK_QUERY_LABELS = re.compile(r"\bbook\.id AS book_id\b")
#: ``shelf_report``'s own order: another legacy function's query is not it.
SHELF_ORDER = re.compile(r"ORDER BY author\.name, author\.id\b")
#: The lazy loader's statement for one author's books (the parameter on the left).
LAZY_BOOKS = re.compile(r"= book\.author_id\b")
EX1_HINT = (f"ex1 should be what shelf_report(session, {EX1_COUNTRY!r}) returns, called "
            "unchanged through an AsyncSession on engine.")

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


async def ex1(answer: Any, log: Watched, *, engine: AsyncEngine) -> None:
    """``shelf_report``'s result for US, from the legacy function run through ``engine``.

    Requirements, from the prompt:
    1. ``ex1`` equals the report (read here with plain SQL);
    2. its statements went through the async ``engine`` (not the sync engine, a thread,
       or no database at all);
    3. the legacy function ran unchanged: its ``Query`` (table-name labels, the country
       filter) and then one lazy load of the books per author;
    4. every session opened in the cell is closed.
    """
    if unanswered(1, answer, EX1_HINT) or unrecorded(1, log):
        return
    try:
        expected = await rows(engine, SHELF, {"country": EX1_COUNTRY})
    except Exception as err:   # a verdict line, never a traceback
        check(1, answer, unavailable("reading the books to compare", err, EX1_HINT))
        return
    sql = log.sql()
    queries = [i for i, s in enumerate(sql) if QUERY_LABELS.search(s) and "author.country" in s
               and SHELF_ORDER.search(s)]
    lazy = [s for s in sql[queries[0] + 1:] if LAZY_BOOKS.search(s) and " IN " not in s] \
        if queries else []
    check(1, answer, plain(1, answer),
          (lambda v: isinstance(v, list | tuple) and [tuple(r) for r in v] == expected,
           f"ex1 is not shelf_report's result for {EX1_COUNTRY!r}: {EX1_HINT}"),
          (lambda v: log.count > 0,
           "right report, but none of its statements went through engine: the legacy "
           "function ran on another engine (sync_engine blocks the event loop, in a thread "
           "or not), or the rows did not come from the database. Run it through an "
           "AsyncSession on engine."),
          (lambda v: bool(queries) and len(lazy) == len(expected),
           f"the statements on engine are not shelf_report's own: its Query, then one lazy "
           f"load of the books per author ({len(expected)} here). Call the legacy function "
           "itself, unchanged, not a rewrite of it."),
          closed(log))


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
    7. it commits, and sends nothing after the commit;
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
            with watch(engine) as log:
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
