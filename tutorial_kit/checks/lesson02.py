"""The checks of lesson 02 · Building the schema: reflection, and DDL through ``run_sync``.

The checks read the catalog with plain SQL from a connection of their own; the
exercises ask for the inspector and reflection, so the checks do not use them.
"""

from __future__ import annotations

import re

from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateIndex

from tutorial_kit.checks.evidence import Watched, closed, plain, rows, scalars, unrecorded, watch
from tutorial_kit.exercises import check, unanswered, unavailable

__all__ = ["ex1", "ex2", "watch"]

EX1_VALUE = ("ex1 should be a tuple of two booleans, the column's timezone flag and its "
             "nullable flag, as the database has them now (the scaffold changed the column).")
#: What the model says of review.edited_at: the answer of a cell that read the model. The
#: scaffold makes the live column (False, True), a pair no other column of review has, and
#: gives it a default, so "has no default" read by mistake gives (False, False).
MODEL_SAYS = (True, True)
EDITED_AT = text(
    "SELECT data_type = 'timestamp with time zone', is_nullable = 'YES' "
    "FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'review' AND column_name = 'edited_at'")
CATALOG = re.compile(
    r"\b(pg_catalog|information_schema|pg_attribute|pg_class|pg_index(es)?)\b", re.I)

EX2_NAME = "ix_review_rating"
EX2_VALUE = f"ex2 should be the sorted list of the names of review's indexes, {EX2_NAME} included."
#: review's indexes, and which one is the primary key's: the inspector's get_indexes() leaves
#: that one out, pg_indexes lists it, and the prompt's "index names" is either.
REVIEW_INDEXES = text(
    "SELECT c.relname, i.indisprimary FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
    "JOIN pg_namespace n ON n.oid = t.relnamespace "
    "WHERE t.relname = 'review' AND n.nspname = current_schema()")
# The new index as the catalog has it: unique?, partial or on an expression?, its columns.
INDEX_SHAPE = text(
    "SELECT i.indisunique, i.indpred IS NOT NULL OR i.indexprs IS NOT NULL, "
    "array(SELECT a.attname FROM unnest(i.indkey) AS k(attnum) JOIN pg_attribute a "
    "ON a.attrelid = i.indrelid AND a.attnum = k.attnum) "
    "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = :name AND n.nspname = current_schema()")
# Its access method (a plain index is a B-tree) and whether it INCLUDEs other columns.
INDEX_KIND = text(
    "SELECT am.amname, i.indnatts <> i.indnkeyatts FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = :name AND n.nspname = current_schema()")
REVIEW_COLUMNS = text(
    "SELECT column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = 'review'")
CREATES_IT = re.compile(rf"^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+{EX2_NAME}\b", re.I)


async def ex1(answer: object, log: Watched, engine: AsyncEngine) -> None:
    """Exercise 1: ``review.edited_at``'s timezone and nullable flags, read from the database.

    The prompt's requirements, one rule each:

    1. ``ex1`` is ``(timezone, nullable)`` as the live column has them: the scaffold changes
       the column behind the model's back, so the model's answer, a guess, or another
       flag ("has no default") read by mistake is not it, nor another column's pair;
    2. both are booleans (not 0 and 1);
    3. the cell asked the database: some statement it sent reads the catalog (through the
       inspector, a reflected ``Table``, or a query on ``information_schema`` of its own);
    4. no connection is left checked out.

    Not judged: a cell that types in the right pair beside a catalog query made only for
    show (the log holds no results); the pair is one no other column has, so only a cell
    that read the scaffold's ALTER TABLE can type it in.
    """
    if unanswered(1, answer, EX1_VALUE) or unrecorded(1, log):
        return
    try:
        live = next(iter(await rows(engine, EDITED_AT)), None)
    except Exception as err:  # the server is gone: say so, with the hint, rather than raise
        check(1, answer, unavailable("reading the catalog", err, EX1_VALUE))
        return
    from_model = (f"{answer!r} is what the model says (Review.__table__), not what the database "
                  "has now: read the column from the live schema." if answer == MODEL_SAYS
                  else EX1_VALUE)
    check(1, answer, plain(1, answer),
          (lambda v: isinstance(v, tuple) and live is not None and v == tuple(live), from_model),
          (lambda v: all(isinstance(x, bool) for x in v),
           "the values are right, but ex1 should hold two booleans (True/False), not numbers: "
           "use the reflected type's timezone and the column's nullable flag as they are."),
          (lambda v: any(CATALOG.search(sql) for sql in log.sql()),
           "the value is right, but your cell asked the database nothing: read the columns from "
           "the live schema, with inspect() inside conn.run_sync."),
          closed(log, "connection"))


async def ex2(answer: object, log: Watched, engine: AsyncEngine, shared: MetaData) -> None:
    """Exercise 2: ``ix_review_rating`` built with SQLAlchemy, committed, names read back.

    The prompt's requirements, one rule each:

    1. ``ex2`` is a sorted list of names with ``ix_review_rating`` in it;
    2. the index is committed: a new connection sees it;
    3. ``ex2`` is what the catalog holds for review (no name missing or made up), with or
       without the primary key's index (``get_indexes()`` leaves it out, ``pg_indexes``
       lists it: the prompt's "index names" is either);
    4. the index is a plain one on ``review.rating`` alone: a B-tree, not unique, not
       partial, no other or included column (ascending or descending: both serve "best
       first");
    5. it was made with SQLAlchemy, not SQL text: a ``CreateIndex`` element reached the
       connection. The prompt's point is "SQL text does not count"; ``index.create(sync_conn)``
       inside ``run_sync`` and ``await conn.execute(CreateIndex(index))`` hand the connection
       the same element, so both are accepted (the lesson's reflection needs ``run_sync``
       either way);
    6. that ``Index`` belongs to a table reflected from the live one, not to the shared
       ``Base.metadata`` (``shared``) nor to a ``Table`` written by hand or copied from the
       model (``to_metadata()``): the table has every live column, and the cell read the
       catalog before its ``CREATE INDEX`` (reflection does; a table copied or written by
       hand sends nothing). A cell that queries the catalog for show and then writes all
       six columns by hand is not told apart;
    7. the names were read back from the database after the ``CREATE INDEX``.
    """
    if unanswered(2, answer, EX2_VALUE) or unrecorded(2, log):
        return
    try:   # the catalog, seen from a new connection
        indexes = await rows(engine, REVIEW_INDEXES)
        shape = next(iter(await rows(engine, INDEX_SHAPE, {"name": EX2_NAME})), None)
        kind = next(iter(await rows(engine, INDEX_KIND, {"name": EX2_NAME})), None)
        columns = set(await scalars(engine, REVIEW_COLUMNS))
    except Exception as err:  # the server is gone: say so, with the hint, rather than raise
        check(2, answer, unavailable("reading the catalog", err, EX2_VALUE))
        return
    live = sorted(name for name, primary in indexes if not primary)
    with_pkey = sorted(name for name, _primary in indexes)
    created = [c.element for c in log.executed
               if isinstance(c, CreateIndex) and c.element.name == EX2_NAME]
    sql = log.sql()
    at = next((i for i, s in enumerate(sql) if CREATES_IT.match(s)), None)
    after_create = sql[at + 1:] if at is not None else []
    before_create = sql[:at] if at is not None else []
    check(2, answer,
          (lambda v: isinstance(v, list) and v == sorted(v) and EX2_NAME in v, EX2_VALUE),
          (lambda v: EX2_NAME in live,
           f"a new connection sees {live}: the CREATE INDEX was not committed "
           "(engine.begin() commits at the end of its block)." if at is not None else
           f"your cell sent no CREATE INDEX {EX2_NAME}: create the index with SQLAlchemy, "
           "then read the names back."),
          (lambda v: v in (live, with_pkey),
           f"a new connection sees {live} (and the primary key's index): ex2 should be those "
           "names, read from the database."),
          (lambda v: shape is not None and not shape[0] and not shape[1]
           and list(shape[2]) == ["rating"],
           f"{EX2_NAME} is not a plain index on review.rating alone (it is unique, partial, or "
           "covers other columns): build Index(name, <the reflected table>.c.rating)."),
          (lambda v: kind is not None and kind[0] == "btree" and not kind[1],
           f"{EX2_NAME} is on review.rating, but it is not a plain index (another access "
           "method, such as hash, or INCLUDEd columns): build Index(name, <the reflected "
           "table>.c.rating) with no other options."),
          (lambda v: bool(created),
           f"{EX2_NAME} exists, but your cell did not create it with SQLAlchemy: build an Index "
           "on the reflected table's rating column and call its create() with the sync "
           "connection, inside conn.run_sync (SQL text does not count)."),
          (lambda v: all(index.table.metadata is not shared for index in created),
           "your Index was built on the model's table, so it is now part of the shared "
           "Base.metadata for the rest of the kernel's life: build it on a Table reflected into "
           "a fresh MetaData() instead."),
          (lambda v: all({c.name for c in index.table.columns} == columns
                         for index in created)
           and any(CATALOG.search(s) for s in before_create),
           "your Index was built on a Table your cell did not reflect (written by hand or "
           "copied from the model), not on the live table: reflect it with "
           "Table(\"review\", MetaData(), autoload_with=sync_conn), so it has the columns the "
           "database has."),
          (lambda v: any(CATALOG.search(s) for s in after_create),
           "the index was created, but the names were not read back from the database after it: "
           "ask the inspector's get_indexes() inside conn.run_sync."))
