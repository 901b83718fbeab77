"""Lesson 08 · Concurrency: the checks of its two exercises.

Both judge what reached the server, as recorded by the ``capture_sql`` block of
the scaffold: the titles and reports are compared with the seeded rows, and the
statements' connections and timing show whether the tasks really overlapped.
"""

from __future__ import annotations

from typing import Any

from tutorial_kit.exercises import check
from tutorial_kit.seed import Dataset
from tutorial_kit.sql_capture import QueryLog


def ex1(answer: Any, *, log: QueryLog, data: Dataset) -> None:
    """Every author's titles, one concurrent task and one session per author.

    The titles are compared with the seeded rows (``data``); ``log`` must show
    one ``SLOW_QUERY`` per author, more than one connection, and statements in
    flight at the same time.
    """
    author_ids = [row["id"] for row in data.authors]
    expected = [[b["title"] for b in data.books if b["author_id"] == a] for a in author_ids]
    slow = sum("pg_sleep" in sql for sql in log.sql())
    check(1, answer,
          (lambda v: [list(titles) for titles in v] == expected,
           "one list of titles per author, in AUTHOR_IDS order, each ordered by Book.id."),
          (lambda v: slow == len(author_ids),
           f"the titles are right, but SLOW_QUERY ran {slow} time(s): each task awaits it "
           "once, before loading its titles."),
          (lambda v: len(log.connections()) > 1,
           "every statement ran on one connection: the tasks shared a session. Open a new "
           "session inside each task."),
          (lambda v: log.overlapped(),
           "separate sessions, but no two statements were in flight at once: the tasks ran "
           "one after another. Start them all together with asyncio.gather."))


def _peak_in_flight(log: QueryLog) -> int:
    """The most statements in flight at one moment: the spans open at each start."""
    spans = [(s.started, s.ended or s.started) for s in log.statements]
    return max((sum(a <= t < b for a, b in spans) for t, _ in spans), default=0)


def ex2(answer: Any, *, log: QueryLog, data: Dataset) -> None:
    """``report()`` for every author, concurrently but at most two at a time.

    Each ``Report`` must count the author's seeded books, ``log`` must hold two
    statements per author (``report``'s default ``Session``), and at its peak
    exactly two statements were in flight.
    """
    author_ids = [row["id"] for row in data.authors]
    books = {a: sum(b["author_id"] == a for b in data.books) for a in author_ids}
    peak = _peak_in_flight(log)
    check(2, answer,
          (lambda v: [r.author_id for r in v] == author_ids
           and all(r.books == books[r.author_id] for r in v),
           "a list of Report results, one per author, in AUTHOR_IDS order."),
          (lambda v: log.count == 2 * len(author_ids),
           f"{log.count} statements ran on `engine`, not {2 * len(author_ids)}: call report() "
           "with its default Session, once per author."),
          (lambda v: peak <= 2,
           f"{peak} statements were in flight at once; at most two reports may run at a time."),
          (lambda v: peak == 2,
           "the reports ran one after another: run them concurrently, two at a time."))
