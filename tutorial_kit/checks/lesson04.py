"""Checks for 04 · Eager loading compared.

The scaffolds record with ``checks.watch(engine)`` instead of a bare ``capture_sql``:
besides the statements, it notes every object the ORM builds inside the block (by which
statement, in which fetch, with which attributes already set, and, at the end of the
block, which ones are loaded), and how many pool connections the block left checked out.
So titles copied from the seed data, a relationship filled from the identity map after
the query, a session left open, all show.

Expected values come from the seeded rows (``data``) or a plain-SQL re-run of the
learner's own statement, never from a query that uses the technique being tested.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import (
    Loaded,
    Watched,
    closed,
    plain,
    primary_key,
    unrecorded,
    watch,
)
from tutorial_kit.exercises import Rule, check, unanswered, unavailable
from tutorial_kit.models import Author, Book, Review
from tutorial_kit.seed import Dataset

__all__ = ["ex1", "ex2", "ex3", "watch"]


# --- Exercise 1 ---------------------------------------------------------------------------

def ex1(answer: Any, log: Watched, *, data: Dataset) -> None:
    """Authors 1–5 and their books through ``selectinload``: the titles, in two statements.

    Requirements, from the prompt:
    1. ``ex1`` is the 15 titles of authors 1–5, author by author, book by book;
    2. read from the ``Book`` objects the query loaded (not copied);
    3. the query loads authors 1 to 5 and no others,
    4. ordered by id in SQL;
    5. two statements;
    6. the books fill each author's ``books`` collection (a loader option),
    7. from the second statement (not a join in the first),
    8. a ``SELECT … WHERE book.author_id IN (…)``, not subqueryload's re-run subquery;
    9. the session is closed (no connection left checked out).
    """
    value_hint = "ex1 should be the 15 titles of authors 1–5, author by author, book by book."
    if unanswered(1, answer, value_hint) or unrecorded(1, log):
        return
    expected = [b["title"] for b in data.books if b["author_id"] <= 5]
    sql = log.sql()
    authors, books = log.of(Author), log.of(Book)
    titles = [b.values.get("title") for b in books]
    check(1, answer,
          plain(1, answer),
          (lambda v: isinstance(v, list | tuple) and list(v) == expected, value_hint),
          (lambda v: all(any(t is s for s in titles) for t in v),
           "the titles are right, but they are not the ones your query loaded: read them "
           "from author.books, not from the seed data."),
          (lambda v: sorted((a.identity or (None,))[0] for a in authors) == [1, 2, 3, 4, 5],
           f"the titles are right, but your query loaded {len(authors)} author(s): let it "
           "load authors 1 to 5 only, instead of cutting the list in Python."),
          (lambda v: "ORDER BY" in _statement_of(log, authors[0]),
           "the titles are right, but the authors' query has no ORDER BY: PostgreSQL returns "
           "rows in whatever order it finds them. Order the query by Author.id."),
          (lambda v: len(sql) == 2,
           f"the titles are right, but your cell sent {len(sql)} statement(s): load the "
           "authors, then all their books in one more statement."),
          (lambda v: all(a.at_end is not None and "books" in a.at_end for a in authors),
           "two statements, but the authors' books collections were never loaded: your own "
           "second query built Book objects without filling author.books. A loader option "
           "on the authors' query does both."),
          (lambda v: all(b.statement == 2 for b in books),
           "two statements, but the books came with the first one (a JOIN: joinedload), and "
           "the second loaded nothing you used. Use selectinload: the authors first, then "
           "their books in a second SELECT."),
          (lambda v: "IN (" in sql[1] and "JOIN" not in sql[1],
           "two statements, but the second joins a subquery instead of listing the author "
           "ids with IN: that is subqueryload, use selectinload."),
          closed(log))


def _statement_of(log: Watched, built: Loaded) -> str:
    """The SQL of the statement whose rows built ``built``."""
    return log.sql()[built.statement - 1] if 0 < built.statement <= log.count else ""


# --- Exercise 2 ---------------------------------------------------------------------------

def ex2(answer: Any, log: Watched, *, data: Dataset) -> None:
    """The 5 cheapest books with ``Book.author`` set by the same, single statement.

    Requirements, from the prompt:
    1. ``ex2`` is a list of the 5 cheapest ``Book`` objects, by ``price_cents`` then id;
    2. each book's ``author`` is loaded,
    3. by the statement that loaded the book (a loader option), not afterwards;
    4. one statement;
    5. that statement picks the five (ORDER BY … LIMIT), not Python;
    6. the session is closed (no connection left checked out).
    """
    value_hint = "ex2 should be the 5 cheapest Book objects, ordered by price_cents, then id."
    if unanswered(2, answer, value_hint) or unrecorded(2, log):
        return
    cheapest = [b["id"] for b in sorted(data.books,
                                        key=lambda b: (b["price_cents"], b["id"]))[:5]]
    sql = log.sql()
    built = {b.identity: b for b in log.of(Book)}
    check(2, answer,
          plain(2, answer),
          (lambda v: isinstance(v, list | tuple) and all(isinstance(b, Book) for b in v),
           "ex2 should be a list of Book objects: use session.scalars(), which gives the "
           "objects, not execute(), which gives rows."),
          (lambda v: [primary_key(b) for b in v] == cheapest, value_hint),
          (lambda v: all("author" not in inspect(b).unloaded for b in v),
           "the books are right, but book.author is not loaded on them, so reading it later "
           "is IO: MissingGreenlet inside the session, DetachedInstanceError after it. Load "
           "the authors with the books."),
          (lambda v: all(b is not None and "author" in b.at_load
                         for b in (built.get(inspect(o).identity) for o in v)),
           "book.author is set, but not by the statement that loaded the books: it was "
           "filled afterwards (from the identity map, or by a load of its own). Give the "
           "query a loader option that joins (joinedload, or contains_eager after a join)."),
          (lambda v: len(sql) == 1,
           f"the authors are loaded, but with {len(sql)} statements: load them in the same "
           "statement as the books, with a loader that joins."),
          (lambda v: len(built) == 5,
           f"one statement, but it loaded {len(built)} books, and Python picked the five: let "
           "PostgreSQL pick them, ordered by price_cents and id, with .limit(5)."),
          (lambda v: re.search(r"\b(LIMIT|FETCH FIRST)\b", sql[0]),
           "one statement, but it names the five books itself instead of letting PostgreSQL "
           "pick the cheapest: order by price_cents and id, and .limit(5)."),
          closed(log))


# --- Exercise 3 ---------------------------------------------------------------------------

#: The criterion ``book.reviews.select()`` writes: the book's id bound on the left (group 1
#: is the parameter's number, so the statement can be re-run for another book).
_FROM_COLLECTION = re.compile(r"\$(\d+)(::\w+)?\s*=\s*review\.book_id")


def _telling_book(data: Dataset) -> tuple[int, int]:
    """A book, not 5, whose ratings tell the filters apart, and its count rated 4 or more.

    It has a review rated 4 and one rated 3 or less, so ``rating > 3``, ``>= 4`` and
    ``IN (4, 5)`` agree on it while ``> 4``, ``== 5`` and no filter at all do not (on book
    5 alone they may all give the same number).
    """
    ratings: dict[int, list[int]] = {}
    for r in data.reviews:
        ratings.setdefault(r["book_id"], []).append(r["rating"])
    book = min(b for b, rs in ratings.items() if b != 5 and 4 in rs and min(rs) <= 3)
    return book, sum(1 for r in ratings[book] if r >= 4)


def _for_book(sql: str, params: Any, book_id: int) -> tuple[Any, ...]:
    """``params`` with the collection's book id replaced by ``book_id``."""
    match = _FROM_COLLECTION.search(sql)
    values = list(params)
    if match is not None:
        values[int(match.group(1)) - 1] = book_id
    return tuple(values)


async def _rerun(engine: AsyncEngine, sql: str, params: Any) -> list[tuple[Any, ...]]:
    """Run one of the learner's SELECTs again, as sent, and return its rows."""
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.exec_driver_sql(sql, params)]


async def ex3(answer: Any, log: Watched, *, engine: AsyncEngine, data: Dataset) -> None:
    """Book 5's reviews rated 4 or more, counted by PostgreSQL from ``book.reviews.select()``.

    Requirements, from the prompt:
    1. ``ex3`` is the number of book 5's reviews rated 4 or more;
    2. no review row leaves the server (no Review object, no statement returning rows of
       reviews);
    3. PostgreSQL counts: a statement of the cell returns that number;
    4. that statement starts from ``book.reviews.select()`` (the collection's criterion);
    5. its rating filter means "4 or more": judged by what it returns, re-run with the
       book's id bound to another book whose ratings tell the filters apart (so ``rating
       > 3``, ``>= 4`` and ``IN (4, 5)`` are alike, ``> 4`` and ``== 5`` are not);
    6. the session is closed (no connection left checked out).
    """
    value_hint = "ex3 should be the number of book 5's reviews rated 4 or more, an int."
    if unanswered(3, answer, value_hint) or unrecorded(3, log):
        return
    expected = sum(1 for r in data.reviews if r["book_id"] == 5 and r["rating"] >= 4)
    reads = [s for s in log.statements
             if s.sql.lstrip().upper().startswith("SELECT") and "review" in s.sql]
    evidence: Rule
    try:
        results = [(s, await _rerun(engine, s.sql, s.params)) for s in reads]
        counts = [s for s, rows in results if rows == [(expected,)] and "count(" in s.sql]
        wrong_counts = [rows[0][0] for s, rows in results
                        if "count(" in s.sql and len(rows) == 1 and rows != [(expected,)]]
        other, other_expected = _telling_book(data)
        elsewhere = [(await _rerun(engine, s.sql, _for_book(s.sql, s.params, other)))
                     for s in counts if _FROM_COLLECTION.search(s.sql)]
        evidence = (lambda v: True, "")
    except Exception as err:   # a verdict line, never a traceback
        results, counts, wrong_counts, elsewhere = [], [], [], []
        other, other_expected = 0, 0
        evidence = unavailable("running your statements again", err,
                               "If your cell ran without error, run this check again.")
    check(3, answer,
          plain(3, answer),
          (lambda v: isinstance(v, int) and v == expected, value_hint),
          evidence,
          (lambda v: not log.of(Review) and all(len(rows) <= 1 for _, rows in results),
           "the number is right, but review rows left the server to be counted in Python: "
           "let PostgreSQL count them (select(func.count()) from your statement)."),
          (lambda v: counts,
           f"no statement of yours returns the count: one returns {wrong_counts[0]}, not book "
           "5's reviews rated 4 or more. Start from book.reviews.select() and add the rating "
           "filter before counting." if wrong_counts else
           "the number is right, but no statement of yours counts: let PostgreSQL do it, "
           "with select(func.count()) from your filtered statement."),
          (lambda v: any(_FROM_COLLECTION.search(s.sql) for s in counts),
           "PostgreSQL counts, but your statement does not start from book.reviews.select(), "
           "as the prompt asks: load book 5 and let its write-only collection write the "
           "book's criterion."),
          (lambda v: any(rows == [(other_expected,)] for rows in elsewhere),
           f"PostgreSQL counts from book.reviews.select(), but your rating filter gives the "
           f"right number for book 5 only by chance: run for book {other}, your statement "
           f"counts {elsewhere[0][0][0] if elsewhere and elsewhere[0] else 'nothing'}, not its "
           f"{other_expected} review(s) rated 4 or more. Keep the reviews whose rating is 4 "
           "or more."),
          closed(log))
