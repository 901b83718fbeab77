"""The checks of lesson 03 · Inserting data: ids from one flush, and an ORM bulk INSERT.

The checks read the tables with plain SQL from a connection of their own, so
they judge what was committed, not what the learner's session holds. The scaffolds
record with ``checks.watch(engine)``: the statements, the objects each flush inserted,
and each statement the ORM ran.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Insert

from tutorial_kit.checks.evidence import (
    Watched,
    closed,
    inserts,
    primary_key,
    rows,
    scalar,
    scalars,
    table_name,
    unrecorded,
    watch,
)
from tutorial_kit.exercises import check, unanswered, unavailable

__all__ = ["ex1", "ex2", "watch"]

EX1_SHAPE = "a tuple: the author's id, then a list of the two book ids."
EX2_VALUE = "ex2 should be the number of rows in review after your insert: 500."
EX2_ROWS = 500


async def ex1(answer: object, log: Watched, engine: AsyncEngine) -> None:
    """Exercise 1: Barbara Liskov and her two books, one flush, committed, ids without a SELECT.

    The prompt's requirements, one rule each:

    1. ``ex1`` is ``(author_id, [book_id, book_id])``;
    2. committed: a new connection sees the author row (a flush without a commit is named);
    3. it is named ``'Barbara Liskov'``, from ``'US'``;
    4. the table holds exactly the listed books for that author (no third one);
    5. they were saved as ORM objects: a flush inserted an ``Author`` and ``Book`` objects
       with those ids (a Core or ORM-bulk ``insert()`` makes no objects);
    6. in one session, by one flush of the whole graph;
    7. one ``INSERT`` for the author and one for both books;
    8. no ``SELECT``: the ids come back with the INSERTs (``RETURNING``);
    9. PostgreSQL generated the ids: no INSERT names the ``id`` column;
    10. nothing changed after the insert (no ``UPDATE`` or ``DELETE`` sent);
    11. the session is closed afterwards (its objects are detached).
    """
    if unanswered(1, answer, EX1_SHAPE) or unrecorded(1, log):
        return
    shaped = (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], int)
              and isinstance(answer[1], list) and all(isinstance(i, int) for i in answer[1]))
    author_id = answer[0] if shaped else -1
    try:   # what the tables hold for the author id given
        author = next(iter(await rows(
            engine, text("SELECT name, country FROM author WHERE id = :id"), {"id": author_id})),
            None)
        books = await scalars(engine, text("SELECT id FROM book WHERE author_id = :id ORDER BY id"),
                              {"id": author_id})
    except Exception as err:  # the tables are gone: say so, with the hint, rather than raise
        check(1, answer, unavailable("reading the tables", err, EX1_SHAPE))
        return
    flushes, flushed = log.flushes, log.flushed
    authors = [primary_key(o) for o in flushed if table_name(o) == "author"]
    book_ids = [primary_key(o) for o in flushed if table_name(o) == "book"]
    sql = log.sql()
    sent = inserts(log)
    check(1, answer,
          (lambda v: shaped and len(v[1]) == 2, EX1_SHAPE),
          (lambda v: author is not None or v[0] not in authors,
           "your flush sent the rows, but a new connection does not see them: commit the "
           "session after the flush."),
          (lambda v: author is not None and tuple(author) == ("Barbara Liskov", "US"),
           "the author table should hold that id, for an author named 'Barbara Liskov' from "
           "'US'."),
          (lambda v: sorted(v[1]) == books,
           f"the book table holds {len(books)} book(s) of that author, with the ids {books}: "
           "give the author exactly the two books ex1 lists."),
          (lambda v: v[0] in authors and all(i in book_ids for i in v[1]),
           "the rows are there, but they were not saved as ORM objects by a flush: create the "
           "Author with its Book objects, add it to the session and flush (an insert() "
           "statement makes rows, not objects)."),
          (lambda v: len(flushes) == 1 and len({s for s, _o in flushes}) == 1,
           f"your cell ran {len(flushes)} flushes that inserted objects: give the books to the "
           "author when you build it, add the whole graph to one session, then flush once."),
          (lambda v: sent == ["INSERT INTO author", "INSERT INTO book"],
           "the rows are right, but not sent as one INSERT for the author and one for both "
           "books: add the whole graph, then flush once."),
          (lambda v: not any(s.lstrip().upper().startswith("SELECT") for s in sql),
           "the ids come back with the INSERTs (RETURNING): read them from the objects after "
           "the flush instead of querying them again."),
          (lambda v: not any("id" in _inserted_columns(s) for s in sql),
           "the rows are right, but your code chose the ids itself: leave id unset on the "
           "objects, so PostgreSQL generates them and the flush reads them back."),
          (lambda v: not any(s.lstrip().upper().startswith(("UPDATE", "DELETE")) for s in sql),
           "the rows are right, but your cell changed them after the insert (an UPDATE or "
           "DELETE went out): build the objects with their final values, flush once, commit."),
          (lambda v: all(inspect(o).detached for o in flushed),
           "the rows are right, but your session is still open and holds its objects: open it "
           "with `async with Session() as session:`, so that it closes when the block ends."))


async def ex2(answer: object, log: Watched, engine: AsyncEngine) -> None:
    """Exercise 2: 500 reviews in one ORM bulk INSERT, committed, then counted by a query.

    The prompt's requirements, one rule each:

    1. ``ex2`` is 500;
    2. committed: a new connection counts 500 reviews;
    3. the rows went through the ORM's bulk mode: one ``session.execute()`` of an
       ``insert()`` on the mapped class with the list of dicts as its parameters (not
       ``Review.__table__``, not a Core connection, not ``.values(rows)``);
    4. one ``INSERT INTO review``, without ``RETURNING`` (nothing sent back);
    5. a query counted the rows after the insert was committed (``select(func.count())``
       or any other ``count(…)`` query: the prompt asks for a query, not for that spelling);
    6. no connection is left checked out (the session is closed).

    Not judged: whether ``ex2`` is that query's result or ``len()`` of the list once the
    query ran (the capture log holds statements, not the rows they returned; the red
    team's "count sent, ex2 = len(ex2_rows)" is therefore not in the suite).
    """
    if unanswered(2, answer, EX2_VALUE) or unrecorded(2, log):
        return
    try:   # the table, seen from a new connection
        in_table = await scalar(engine, text("SELECT count(*) FROM review"))
    except Exception as err:  # the table is gone: say so, with the hint, rather than raise
        check(2, answer, unavailable("counting the table", err, EX2_VALUE))
        return
    orm_inserts = [r for r in log.orm if isinstance(r.statement, Insert)]
    bulk = [r for r in orm_inserts
            if r.is_orm_statement and isinstance(r.parameters, list)
            and len(r.parameters) == EX2_ROWS]
    sql = log.sql()
    sent = [i for i, s in enumerate(sql) if s.startswith("INSERT INTO review")]
    committed_at = [c for c in log.commits if sent and c > sent[0]]
    after_commit = sql[committed_at[0]:] if committed_at else []
    check(2, answer,
          (lambda v: v == EX2_ROWS and isinstance(v, int), EX2_VALUE),
          (lambda v: in_table == EX2_ROWS,
           f"a new connection counts {in_table} reviews: commit the session."),
          (lambda v: len(orm_inserts) == 1 and len(bulk) == 1,
           _bulk_hint(orm_inserts, log.flushes)),
          (lambda v: len(sent) == 1 and "RETURNING" not in sql[sent[0]],
           f"your cell sent {len(sent)} INSERT statement(s), or one with RETURNING: "
           "send the whole list of dicts as one ORM bulk INSERT, as in the section '2. ORM bulk: "
           "session.execute(insert(Model), list_of_dicts)' above."),
          (lambda v: any("count(" in s.lower() for s in after_commit),
           "count the rows with a query once the insert is committed (not with len(), and "
           "not inside the transaction before its commit)."),
          closed(log))


def _bulk_hint(orm_inserts: list[Any], flushed: list[tuple[int, list[Any]]]) -> str:
    """Why the session ran no single ORM bulk INSERT: name what it ran instead."""
    intro = "the rows are in the table, but "
    if not orm_inserts and any(objs for _s, objs in flushed):
        what = ("they went in as Review objects through a flush, the slow way (INSERT … "
                "RETURNING, to fill in each object)")
    elif not orm_inserts:
        what = ("no insert() went through session.execute() (a connection's execute() runs it "
                "as Core)")
    elif len(orm_inserts) > 1:
        what = f"the session ran {len(orm_inserts)} insert() statements, not one"
    elif not orm_inserts[0].is_orm_statement:
        what = ("insert(Review.__table__) names the table, so the session ran it as Core: "
                "name the mapped class, insert(Review)")
    else:
        what = ("the list of dicts was not passed beside the statement (insert(...).values(rows) "
                "renders one multi-row VALUES, not the ORM bulk mode)")
    return (intro + what + ": session.execute(insert(Review), list_of_dicts) is the ORM bulk "
            "INSERT.")


def _inserted_columns(sql: str) -> list[str]:
    """The columns an ``INSERT INTO t (a, b) …`` names (``[]`` for any other statement)."""
    if not sql.lstrip().upper().startswith("INSERT"):
        return []
    head = sql.split("(", 1)[1].split(")", 1)[0] if "(" in sql else ""
    return [c.strip().strip('"').lower() for c in head.split(",")]
