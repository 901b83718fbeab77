"""The checks of lesson 01 · The seed example: eager loading, and one flush for a whole graph.

The lesson maps its tables ``a`` and ``b`` in the notebook, so the checks read
them with plain SQL (what the tables hold, not how the ORM would load it), and tell
its objects by their table's name. The scaffolds record with ``checks.watch(engine)``:
the statements, and the objects the ORM loaded and flushed.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import (
    Watched,
    inserts,
    primary_key,
    rows,
    table_name,
    unrecorded,
    watch,
)
from tutorial_kit.exercises import check, unanswered, unavailable

__all__ = ["ex1", "ex2", "watch"]

EX1_VALUE = "one (data, [data of each B]) tuple per A, A in id order, each A's B's in id order."
EX2_SHAPE = "ex2 should be a list of two int ids."
# Each A's data with its B's data in id order, in one aggregate query (the exercise's
# two-statement loader is the technique under test, so the check does not use it).
A_WITH_BS = text(
    "SELECT a.data, coalesce(array_agg(b.data ORDER BY b.id) FILTER (WHERE b.id IS NOT NULL),"
    " '{}') FROM a LEFT JOIN b ON b.a_id = a.id GROUP BY a.id ORDER BY a.id")
CLOSE_SESSION = ("open it with `async with async_session() as session:`, so that it closes, and "
                 "gives its connection back, when the block ends.")


async def ex1(answer: object, log: Watched, engine: AsyncEngine) -> None:
    """Exercise 1: every A's data with its B's data, from ORM objects, in two statements.

    The prompt's requirements, one rule each:

    1. the value: one ``(data, [b data…])`` per A, both in id order (read by plain SQL);
    2. built from ORM objects: the cell loaded one ``A`` object per row of ``a``…
    3. …in one session…
    4. …with each object's ``bs`` loaded up front (so ``a.bs`` is a plain attribute read)…
    5. …and ``ex1`` holds those objects' own strings, not typed or copied values;
    6. exactly two statements (``selectinload``; ``subqueryload`` too sends two for any
       number of rows, so the prompt's "two statements" accepts it)…
    7. …the second sent by a relationship loader, filling ``a.bs`` (not a ``SELECT 1``
       padding a ``joinedload``, nor a plain query whose B's are put into ``a.bs`` by hand);
    8. the session is closed afterwards (its objects are detached): no connection left open.
    """
    if unanswered(1, answer, EX1_VALUE) or unrecorded(1, log):
        return
    try:
        expected = [(data, list(bs)) for data, bs in await rows(engine, A_WITH_BS)]
    except Exception as err:  # the tables are gone: say so, with the hint, rather than raise
        check(1, answer, unavailable("reading the tables", err, EX1_VALUE))
        return
    of_a = sorted((b for b in log.loaded if table_name(b.cls) == "a"),
                  key=lambda b: (b.identity or (0,))[0])
    loaded = [b.obj for b in of_a]
    sessions = {b.session for b in of_a}
    check(1, answer,
          (lambda v: v == expected, EX1_VALUE),
          (lambda v: len(loaded) == len(expected),
           f"the value is right, but your cell loaded {len(loaded)} A object(s) for "
           f"{len(expected)} rows of a: build ex1 from ORM objects, select(A) run in a "
           "session (rows of columns are not objects, and have no .bs)."),
          (lambda v: len(sessions) == 1,
           f"the A objects came from {len(sessions)} sessions: use one new session."),
          (lambda v: all("bs" not in inspect(a).unloaded for a in loaded),
           "the A objects were loaded, but not their bs: load every A's bs with the query, "
           "with the loader option of *Eager loading with selectinload*, then read a.bs."),
          (lambda v: all(t[0] is a.data and len(t[1]) == len(a.bs)
                         and all(x is b.data for x, b in zip(t[1], a.bs, strict=True))
                         for t, a in zip(v, loaded, strict=True)),
           "the values match, but they are not the strings your A objects hold: build ex1 from "
           "the a.data and a.bs of the objects your query returned, not from typed or copied "
           "values."),
          (lambda v: log.count == 2,
           f"the value is right, but your cell sent {log.count} statement(s), not 2: load "
           "every A's bs up front with the loader option the lesson used."),
          (lambda v: any(run.relationship_load for run in log.orm),
           "the value is right, but no loader option of your query loaded the bs: put the "
           "loader option the lesson used on select(A), so the ORM sends the second statement "
           "and fills a.bs itself."),
          (lambda v: all(inspect(a).detached for a in loaded),
           "the value is right, but the A objects are still in an open session, which holds "
           f"a connection: {CLOSE_SESSION}"))


async def ex2(answer: object, log: Watched, engine: AsyncEngine) -> None:
    """Exercise 2: two new A objects with two B objects each, saved by one flush, committed.

    The prompt's requirements, one rule each:

    1. ``ex2`` is a list of two int ids…
    2. …of committed ``a`` rows with data ``'ex2-x'`` and ``'ex2-y'``, in that order (rows
       flushed but not committed get a hint about the commit)…
    3. …each with two ``b`` rows;
    4. they were saved as ORM objects: the ids are those of ``A`` objects a flush inserted
       (a Core or ORM-bulk ``insert()`` makes no objects);
    5. one flush inserted all six objects (no other), in one session;
    6. that flush sent one ``INSERT INTO a`` and one ``INSERT INTO b``;
    7. nothing changed after it ("commit once": no ``UPDATE`` or ``DELETE`` sent);
    8. the session is closed afterwards (its objects are detached).

    Not a requirement: how many ``add()``/``add_all()`` calls put the graph in the session
    (the flush is the same; the prompt names ``add_all()`` only as an example).
    """
    if unanswered(2, answer, EX2_SHAPE) or unrecorded(2, log):
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
    flushes, flushed = log.flushes, log.flushed
    flushed_ids = [primary_key(a) for a in flushed if table_name(a) == "a"]
    sent = inserts(log)
    committed = all(i in a_data for i in ids)
    tables = [table_name(o) for o in flushed]
    extra = [i for i in flushed_ids if i not in ids]
    flush_hint = (
        f"the rows are there, but your cell ran {len(flushes)} flushes that inserted objects: "
        "build the whole graph first, add it, then commit once, so one flush saves all six "
        "objects." if len(flushes) != 1 else
        f"the rows are there, but your flush inserted {tables.count('a')} A and "
        f"{tables.count('b')} B objects, not 2 and 4"
        + (f" (ids of the A rows ex2 does not list: {extra})" if extra else "")
        + ": save only the two A's and their four B's.")
    check(2, answer,
          (lambda v: len(ids) == 2 and len(v) == 2, EX2_SHAPE),
          (lambda v: committed or not all(i in flushed_ids for i in v),
           "your flush sent the rows, but a new connection does not see them: commit the "
           "session after adding the graph."),
          (lambda v: [a_data.get(i) for i in v] == ["ex2-x", "ex2-y"],
           "the ids should belong to the A rows with data 'ex2-x' and 'ex2-y', in that order."),
          (lambda v: [b_count.get(i) for i in v] == [2, 2],
           "each of the two A rows should have two B rows in the table."),
          (lambda v: all(i in flushed_ids for i in v),
           "the rows are there, but no A objects of yours were flushed with those ids: create "
           "A(...) objects with their bs, add them to one session and commit (an insert() "
           "statement makes rows, not objects)."),
          (lambda v: len(flushes) == 1 and len(flushed) == 6, flush_hint),
          (lambda v: sent == ["INSERT INTO a", "INSERT INTO b"],
           f"the rows are there, but the INSERTs were {sent}: add the whole graph, "
           "then commit once, so one flush batches each table."),
          (lambda v: not any(s.lstrip().upper().startswith(("UPDATE", "DELETE"))
                             for s in log.sql()),
           "the rows are there, but your cell changed them after the insert (an UPDATE or "
           "DELETE went out): set every value before the one commit."),
          (lambda v: all(inspect(o).detached for o in flushed),
           f"the rows are there, but your session is still open and holds its objects: "
           f"{CLOSE_SESSION}"))
