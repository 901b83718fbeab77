"""Checks for 05 · Streaming results.

The scaffolds record with ``checks.watch(engine)``: the statements (and whether they
ran on a server-side cursor), every ``Review`` object the ORM built, in which fetch, and
the most objects the session held at once, holding none itself so the memory it measures
is the learner's. Expected values come from the seeded rows (``data``), so no check shows
a query to copy.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks import evidence
from tutorial_kit.checks.evidence import Watched, closed, plain, unrecorded
from tutorial_kit.exercises import check, unanswered
from tutorial_kit.models import Review
from tutorial_kit.seed import Dataset

#: Both exercises: objects built by one call (run_sync, execute()), not fetch by fetch.
BUILT_IN_THE_CALL = (
    "the reviews came from a server-side cursor, but the ORM built them inside the call that "
    "ran the query (a sync Session inside run_sync, or execute()), not at each fetch of an "
    "async stream: read them with await session.stream_scalars() (or session.stream()), as "
    "the prompt asks, and take the batches from it.")


def watch(engine: AsyncEngine) -> AbstractContextManager[Watched]:
    """The one recorder, holding no object: what the session holds is being measured."""
    return evidence.watch(engine, keep=False)


def ex1(answer: Any, log: Watched, *, data: Dataset) -> None:
    """The average rating of reviews of books from 2000 on, from Review objects, 100 at a time.

    Requirements, from the prompt:
    1. ``ex1`` is the average rating of the reviews of books published in 2000 or later;
    2. computed from ``Review`` objects, one per matching review;
    3. filtered by the book's year in the query (a join to ``Book`` or an ``IN`` subquery),
       so only the matching reviews are built;
    4. read from a server-side cursor,
    5. through ``session.stream()`` or ``stream_scalars()`` (each batch built at a fetch
       of the async stream, not inside a sync ``Session`` in ``run_sync``);
    6. built in batches of 100;
    7. never more than two batches of reviews held at once;
    8. the session is closed (no connection left checked out).
    """
    value_hint = ("ex1 should be the average rating of reviews of books from 2000 on, as a "
                  "float.")
    if unanswered(1, answer, value_hint) or unrecorded(1, log):
        return
    recent = {b["id"] for b in data.books if b["year"] >= 2000}
    ratings = [r["rating"] for r in data.reviews if r["book_id"] in recent]
    expected = sum(ratings) / len(ratings)
    built = len(log.of(Review))
    sizes = log.batches(Review)
    check(1, answer,
          plain(1, answer),
          (lambda v: isinstance(v, int | float) and abs(v - expected) < 1e-9, value_hint),
          (lambda v: built >= len(ratings),
           f"the average is right, but your code built {built} Review objects, not one per "
           f"review it averages ({len(ratings)}): read Review objects, not columns or an "
           "average computed by PostgreSQL."),
          (lambda v: built == len(ratings),
           f"the average is right, but your code built {built} Review objects for "
           f"{len(ratings)} matching reviews: filter by the book's year in the query (join "
           "Book, or an IN subquery), so only the matching reviews leave the server."),
          (lambda v: log.streamed,
           "the average is right, but the reviews were buffered: read them through "
           "session.stream() or stream_scalars(), not execute() or scalars()."),
          (lambda v: not any(b.in_execute for b in log.of(Review)),
           BUILT_IN_THE_CALL),
          (lambda v: len(sizes) > 1,
           f"streamed, but the ORM built all {built} reviews in one go before the first one "
           "reached you: ask for batches of 100."),
          (lambda v: all(n == 100 for n in sizes[:-1]) and sizes[-1] <= 100,
           f"streamed in batches, but of {sizes[0]} reviews, not 100: "
           "ask for batches of 100." if len(sizes) > 1 else "ask for batches of 100."),
          (lambda v: log.held(Review) <= 2 * 100,
           f"streamed in batches of 100, but the session held {log.held(Review):,} reviews at "
           "once: your code kept them. Add each batch up, then let it go."),
          closed(log))


def ex2(answer: Any, log: Watched, *, data: Dataset) -> None:
    """The sizes of the batches of 200 reviews the stream built, as it built them.

    Requirements, from the prompt:
    1. ``ex2`` is the list of batch sizes, eight of 200 for the 1,600 reviews;
    2. they are the batches the ORM built: every review built as a ``Review`` object,
       200 at a time (not counted, hard-coded, or re-cut in Python);
    3. read from a server-side cursor,
    4. through ``session.stream()`` or ``stream_scalars()`` (each batch built at a fetch);
    5. never more than two batches of reviews held at once;
    6. the session is closed (no connection left checked out).
    """
    batches = len(data.reviews) // 200
    value_hint = f"ex2 should be the sizes of the batches: {batches} batches of 200."
    if unanswered(2, answer, value_hint) or unrecorded(2, log):
        return
    built = len(log.of(Review))
    sizes = log.batches(Review)
    check(2, answer,
          plain(2, answer),
          (lambda v: isinstance(v, list | tuple) and list(v) == [200] * batches, value_hint),
          (lambda v: built == len(data.reviews),
           f"the sizes are right, but your code built {built} Review objects, not one per "
           f"review ({len(data.reviews)}): stream Review objects, and let the result hand "
           "them out in batches."),
          (lambda v: log.streamed,
           "the sizes are right, but the reviews were buffered first: read them through a "
           "stream, so that the batches come from the server-side cursor."),
          (lambda v: not any(b.in_execute for b in log.of(Review)),
           BUILT_IN_THE_CALL),
          (lambda v: list(v) == sizes,
           f"the sizes are right, but the ORM built the reviews in batches of {_listed(sizes)}: "
           "ex2 must be the sizes it built, so ask the stream for batches of 200 (yield_per "
           "or partitions) instead of cutting or counting in Python." if sizes else
           "the sizes are right, but they are not the batches the ORM built."),
          (lambda v: log.held(Review) <= 2 * 200,
           f"streamed in batches of 200, but the session held {log.held(Review):,} reviews at "
           "once: your code kept every batch. Take each batch's size, then let it go."),
          closed(log))


def _listed(sizes: list[int]) -> str:
    """The first few batch sizes, for a hint: "100, 100, 100 …"."""
    return ", ".join(map(str, sizes[:3])) + (" …" if len(sizes) > 3 else "")
