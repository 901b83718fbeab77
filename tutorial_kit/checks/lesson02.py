"""The checks of lesson 02 · Building the schema: reflection, and DDL through ``run_sync``."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import scalars
from tutorial_kit.exercises import check, unanswered, unavailable
from tutorial_kit.sql_capture import QueryLog

EX2_VALUE = "a sorted list of the names of review's indexes, the new one included."
EX2_CREATE = "CREATE INDEX ix_review_rating ON review (rating)"
# pg_indexes, a plain catalog view: the exercise asks for the inspector, the check does not.
REVIEW_INDEXES = text(
    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
    "AND tablename = 'review' AND indexname <> 'review_pkey'")


def ex1(answer: object, log: QueryLog) -> None:
    """Exercise 1: ``review.edited_at``'s timezone and nullable flags, read from the database."""
    check(1, answer,
          (lambda v: v == (True, True),
           "a tuple of two booleans: the reflected type's .timezone, then the column's "
           "'nullable'."),
          (lambda v: any("pg_catalog.pg_attribute" in sql for sql in log.sql()),
           "the value is right, but your cell asked the database nothing: read the columns from "
           "the live schema with inspect() inside conn.run_sync."))


async def ex2(answer: object, log: QueryLog, engine: AsyncEngine) -> None:
    """Exercise 2: ``ix_review_rating`` created, committed, and the names read back after it."""
    if unanswered(2, answer, EX2_VALUE):
        return
    try:   # the catalog, seen from a new connection
        live = sorted(await scalars(engine, REVIEW_INDEXES))
    except Exception as err:  # the server is gone: say so, with the hint, rather than raise
        check(2, answer, unavailable("reading the catalog", err, EX2_VALUE))
        return
    sql = log.sql()
    created = next((i for i, s in enumerate(sql) if s.startswith(EX2_CREATE)), None)
    after_create = sql[created + 1:] if created is not None else []
    check(2, answer,
          (lambda v: v == ["ix_review_book_id", "ix_review_rating"], EX2_VALUE),
          (lambda v: created is not None,
           f"no {EX2_CREATE} in your cell's SQL: create it with the Index's create() on the "
           "sync connection, inside conn.run_sync."),
          (lambda v: v == live,
           f"a new connection sees {live}: the CREATE INDEX was not committed "
           "(engine.begin() commits at the end of its block)."),
          (lambda v: any("pg_catalog" in s for s in after_create),
           "the index was created, but the names were not read back from the database after it: "
           "ask the inspector's get_indexes() inside conn.run_sync."))
