"""The checks of lesson 01 · The seed example: eager loading, and one flush for a whole graph.

The lesson maps its tables ``a`` and ``b`` in the notebook, so the checks read
them with plain SQL: what the tables hold, not how the ORM would load it.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.exercises import check, describe
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
    if answer is None:   # check() prints "not yet" with the first hint, running no test
        check(1, answer, (bool, EX1_VALUE))
        return
    try:
        async with engine.connect() as conn:
            expected = [(data, list(bs)) for data, bs in await conn.execute(A_WITH_BS)]
    except Exception as err:  # the tables are gone: say so, with the hint, rather than raise
        check(1, answer, (lambda _: False, f"reading the tables raised {describe(err)}. "
                                           f"{EX1_VALUE}"))
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
    if answer is None:   # check() prints "not yet" with the first hint, running no test
        check(2, answer, (bool, EX2_SHAPE))
        return
    ids = answer if isinstance(answer, list) and all(isinstance(i, int) for i in answer) else []
    try:
        async with engine.connect() as conn:   # what the tables hold for the ids given
            a_data = dict((await conn.execute(
                text("SELECT id, data FROM a WHERE id = ANY(:ids)"), {"ids": ids})).all())
            b_count = dict((await conn.execute(
                text("SELECT a_id, count(*) FROM b WHERE a_id = ANY(:ids) GROUP BY a_id"),
                {"ids": ids})).all())
    except Exception as err:  # the tables are gone: say so, with the hint, rather than raise
        check(2, answer, (lambda _: False, f"reading the tables raised {describe(err)}. "
                                           f"{EX2_SHAPE}"))
        return
    inserts = [sql.split("(")[0].strip() for sql in log.sql() if sql.startswith("INSERT")]
    check(2, answer,
          (lambda v: len(ids) == 2 and len(v) == 2, EX2_SHAPE),
          (lambda v: [a_data.get(i) for i in v] == ["ex2-x", "ex2-y"],
           "the ids should belong to the A rows with data 'ex2-x' and 'ex2-y', in that order."),
          (lambda v: [b_count.get(i) for i in v] == [2, 2],
           "each of the two A rows should have two B rows in the table."),
          (lambda v: inserts == ["INSERT INTO a", "INSERT INTO b"],
           f"the rows are there, but the INSERTs were {inserts}: add the whole graph, "
           "then commit once, so one flush batches each table."))
