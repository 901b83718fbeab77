"""The checks of lesson 01 · The seed example: eager loading, and one flush for a whole graph.

The lesson maps its tables ``a`` and ``b`` in the notebook, so the checks read
them with plain SQL: what the tables hold, not how the ORM would load it.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import inserts, rows
from tutorial_kit.exercises import check, unanswered, unavailable
from tutorial_kit.sql_capture import QueryLog

EX1_VALUE = "one (data, [data of each B]) tuple per A, A in id order, each A's B's in id order."
EX2_SHAPE = "ex2 should be a list of two int ids."
# Each A's data with its B's data in id order, in one aggregate query (the exercise's
# two-statement loader is the technique under test, so the check does not use it).
A_WITH_BS = text(
    "SELECT a.data, coalesce(array_agg(b.data ORDER BY b.id) FILTER (WHERE b.id IS NOT NULL),"
    " '{}') FROM a LEFT JOIN b ON b.a_id = a.id GROUP BY a.id ORDER BY a.id")


async def ex1(answer: object, log: QueryLog, engine: AsyncEngine) -> None:
    """Exercise 1: every A's data with its B's data, loaded in two statements, the second an IN."""
    if unanswered(1, answer, EX1_VALUE):
        return
    try:
        expected = [(data, list(bs)) for data, bs in await rows(engine, A_WITH_BS)]
    except Exception as err:  # the tables are gone: say so, with the hint, rather than raise
        check(1, answer, unavailable("reading the tables", err, EX1_VALUE))
        return
    check(1, answer,
          (lambda v: v == expected, EX1_VALUE),
          (lambda v: log.count == 2,
           f"the value is right, but your cell sent {log.count} statement(s), not 2: load "
           "every A's bs up front with the loader option the lesson used."),
          (lambda v: " IN (" in log.sql()[1] and "FROM b" in log.sql()[1],
           "two statements, but the second is not a SELECT … IN (…) of b: use selectinload."))


async def ex2(answer: object, log: QueryLog, engine: AsyncEngine) -> None:
    """Exercise 2: two new A rows with two B rows each, sent as one INSERT per table."""
    if unanswered(2, answer, EX2_SHAPE):
        return
    ids = answer if isinstance(answer, list) and all(isinstance(i, int) for i in answer) else []
    try:   # what the tables hold for the ids given
        a_data = dict(await rows(engine, text("SELECT id, data FROM a WHERE id = ANY(:ids)"),
                                 {"ids": ids}))
        b_count = dict(await rows(
            engine, text("SELECT a_id, count(*) FROM b WHERE a_id = ANY(:ids) GROUP BY a_id"),
            {"ids": ids}))
    except Exception as err:  # the tables are gone: say so, with the hint, rather than raise
        check(2, answer, unavailable("reading the tables", err, EX2_SHAPE))
        return
    sent = inserts(log)
    check(2, answer,
          (lambda v: len(ids) == 2 and len(v) == 2, EX2_SHAPE),
          (lambda v: [a_data.get(i) for i in v] == ["ex2-x", "ex2-y"],
           "the ids should belong to the A rows with data 'ex2-x' and 'ex2-y', in that order."),
          (lambda v: [b_count.get(i) for i in v] == [2, 2],
           "each of the two A rows should have two B rows in the table."),
          (lambda v: sent == ["INSERT INTO a", "INSERT INTO b"],
           f"the rows are there, but the INSERTs were {sent}: add the whole graph, "
           "then commit once, so one flush batches each table."))
