"""Checks for 04 · Eager loading compared.

Each check judges the value and then the statements the scaffold's ``capture_sql``
block recorded, so the right rows loaded with the wrong strategy are still "not yet".
Expected values come from the seeded rows (``data``), not from a query that uses the
technique being tested.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect

from tutorial_kit.exercises import check
from tutorial_kit.seed import Dataset
from tutorial_kit.sql_capture import QueryLog


def ex1(answer: Any, log: QueryLog, *, data: Dataset) -> None:
    """The titles of authors 1–5, loaded in two statements, the second a selectinload ``IN``."""
    expected = [b["title"] for b in data.books if b["author_id"] <= 5]
    sql = log.sql()
    check(1, answer,
          (lambda v: list(v) == expected,
           "ex1 should be the 15 titles of authors 1–5, author by author, book by book."),
          (lambda v: len(sql) == 2,
           f"the titles are right, but your cell sent {len(sql)} statement(s): load the "
           "authors, then all their books in one more statement."),
          (lambda v: "IN (" in sql[1] and "JOIN" not in sql[1],
           "two statements, but the second joins a subquery instead of listing the author "
           "ids with IN: that is subqueryload, use selectinload."))


def ex2(answer: Any, log: QueryLog, *, data: Dataset) -> None:
    """The 5 cheapest books with ``Book.author`` loaded by the same, single statement."""
    cheapest = [b["id"] for b in sorted(data.books,
                                        key=lambda b: (b["price_cents"], b["id"]))[:5]]
    sql = log.sql()
    check(2, answer,
          (lambda v: [b.id for b in v] == cheapest,
           "ex2 should be the 5 cheapest Book objects, ordered by price_cents, then id."),
          (lambda v: all("author" not in inspect(b).unloaded for b in v),
           "the books are right, but their author is not loaded: now that the session has "
           "closed, reading book.author raises DetachedInstanceError. Load the authors with "
           "the books."),
          (lambda v: len(sql) == 1,
           f"the authors are loaded, but with {len(sql)} statements: load them in the same "
           "statement as the books, with a loader that joins."))


def ex3(answer: Any, log: QueryLog, *, data: Dataset) -> None:
    """Book 5's reviews rated 4 or more, counted by PostgreSQL with no review row loaded."""
    expected = sum(1 for r in data.reviews if r["book_id"] == 5 and r["rating"] >= 4)
    sql = log.sql()
    check(3, answer,
          (lambda v: v == expected,
           "ex3 should be the number of book 5's reviews rated 4 or more."),
          (lambda v: not any(s.startswith("SELECT review.id") for s in sql),
           "the number is right, but your cell loaded review rows to count them in Python: "
           "count in SQL."),
          (lambda v: any("count(" in s and "rating >=" in s for s in sql),
           "let PostgreSQL do both: one statement with the rating filter and count(*)."))
