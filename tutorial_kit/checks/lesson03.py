"""The checks of lesson 03 · Inserting data: ids from one flush, and an ORM bulk INSERT.

The checks read the tables with plain SQL from a connection of their own, so
they judge what was committed, not what the learner's session holds.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import inserts, scalar, scalars
from tutorial_kit.exercises import check, unanswered, unavailable
from tutorial_kit.sql_capture import QueryLog

EX1_SHAPE = "a tuple: the author's id, then a list of the two book ids."
EX2_VALUE = "ex2 should be the number of rows in review after your insert: 500."
EX2_ROWS = 500


async def ex1(answer: object, log: QueryLog, engine: AsyncEngine) -> None:
    """Exercise 1: Barbara Liskov and her two books, committed, ids read without a SELECT."""
    if unanswered(1, answer, EX1_SHAPE):
        return
    shaped = (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], int)
              and isinstance(answer[1], list))
    author_id = answer[0] if shaped else -1
    try:   # what the tables hold for the author id given
        name = await scalar(engine, text("SELECT name FROM author WHERE id = :id"),
                            {"id": author_id})
        books = await scalars(engine, text("SELECT id FROM book WHERE author_id = :id ORDER BY id"),
                              {"id": author_id})
    except Exception as err:  # the tables are gone: say so, with the hint, rather than raise
        check(1, answer, unavailable("reading the tables", err, EX1_SHAPE))
        return
    sql = log.sql()
    sent = inserts(log)
    check(1, answer,
          (lambda v: shaped and len(v[1]) == 2, EX1_SHAPE),
          (lambda v: name == "Barbara Liskov" and sorted(v[1]) == books,
           "the tables should hold that author, named 'Barbara Liskov', with exactly those two "
           "books: was it committed?"),
          (lambda v: sent == ["INSERT INTO author", "INSERT INTO book"],
           "the rows are right, but not sent as one INSERT for the author and one for both "
           "books: add the whole graph, then flush once."),
          (lambda v: not any(s.lstrip().startswith("SELECT") for s in sql),
           "the ids come back with the INSERTs (RETURNING): read them from the objects after "
           "the flush instead of querying them again."))


async def ex2(answer: object, log: QueryLog, engine: AsyncEngine) -> None:
    """Exercise 2: 500 reviews in one ORM bulk INSERT, committed, then counted by a query."""
    if unanswered(2, answer, EX2_VALUE):
        return
    try:   # the table, seen from a new connection
        in_table = await scalar(engine, text("SELECT count(*) FROM review"))
    except Exception as err:  # the table is gone: say so, with the hint, rather than raise
        check(2, answer, unavailable("counting the table", err, EX2_VALUE))
        return
    sql = log.sql()
    inserts = [i for i, s in enumerate(sql) if s.startswith("INSERT INTO review")]
    after_insert = sql[inserts[0] + 1:] if inserts else []
    check(2, answer,
          (lambda v: v == EX2_ROWS, EX2_VALUE),
          (lambda v: in_table == EX2_ROWS,
           f"a new connection counts {in_table} reviews: commit the session."),
          (lambda v: len(inserts) == 1 and "RETURNING" not in sql[inserts[0]],
           f"your cell sent {len(inserts)} INSERT statement(s), or one with RETURNING: "
           "send the whole list of dicts as one ORM bulk INSERT, as in the section '2. ORM bulk: "
           "session.execute(insert(Model), list_of_dicts)' above."),
          (lambda v: any("count(" in s for s in after_insert),
           "count the rows with a query after the insert, not with len()."))
