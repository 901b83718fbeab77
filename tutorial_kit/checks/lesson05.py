"""Checks for 05 · Streaming results.

Each check judges the value, then what the scaffold recorded while the learner's code
ran: whether a statement used a server-side cursor (``capture_sql``) and the most
``Review`` objects the session held at once (the notebook's ``most_held``). Expected
values come from the seeded rows (``data``), so no check shows a query to copy.
"""

from __future__ import annotations

from typing import Any, Protocol

from tutorial_kit.exercises import check
from tutorial_kit.seed import Dataset
from tutorial_kit.sql_capture import QueryLog


class Held(Protocol):
    """What the notebook's ``most_held(Review)`` records: the most objects held at once."""

    peak: int


def ex1(answer: Any, log: QueryLog, held: Held, *, data: Dataset) -> None:
    """The average rating of reviews of books from 2000 on, streamed in batches of 100."""
    recent = {b["id"] for b in data.books if b["year"] >= 2000}
    ratings = [r["rating"] for r in data.reviews if r["book_id"] in recent]
    expected = sum(ratings) / len(ratings)
    check(1, answer,
          (lambda v: abs(v - expected) < 1e-9,
           "ex1 should be the average rating of reviews of books from 2000 on, as a float."),
          (lambda v: log.streamed,
           "the average is right, but the reviews were buffered: read them through "
           "session.stream() or stream_scalars(), not execute() or scalars()."),
          (lambda v: held.peak <= 2 * 100,
           f"streamed, but the session held {held.peak:,} reviews at once: the ORM built "
           "them all before the first one reached you. Ask for batches of 100."))


def ex2(answer: Any, log: QueryLog, held: Held, *, data: Dataset) -> None:
    """The sizes of the batches of 200 reviews, handed out by a stream as it reads them."""
    batches = len(data.reviews) // 200
    check(2, answer,
          (lambda v: list(v) == [200] * batches,
           f"ex2 should be the sizes of the batches: {batches} batches of 200."),
          (lambda v: log.streamed,
           "the sizes are right, but the reviews were buffered first: read them through a "
           "stream, so that the batches come from the server-side cursor."),
          (lambda v: held.peak <= 2 * 200,
           f"streamed, but the session held {held.peak:,} reviews at once: the ORM built "
           "them all, then you cut the list. Let the result hand out the batches."))
