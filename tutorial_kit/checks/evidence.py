"""What the checks read for themselves: the database by plain SQL, a log's INSERTs, and
what the ORM did during a cell (``watch``).

Each read opens a connection of its own and closes it at once, so a check sees what
the learner's code committed, not what their session holds, and leaves nothing open.
The checks write their queries as plain SQL (or a column select) rather than the
ORM technique the exercise asks for, so no check shows the answer.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import Executable

from tutorial_kit.sql_capture import QueryLog, capture_sql

Params = Mapping[str, Any] | None


async def scalar(engine: AsyncEngine, statement: Executable, params: Params = None) -> Any:
    """The first column of the first row ``statement`` returns (``None`` for no row)."""
    async with engine.connect() as conn:
        return await conn.scalar(statement, params)


async def scalars(engine: AsyncEngine, statement: Executable, params: Params = None) -> list[Any]:
    """The first column of every row ``statement`` returns."""
    async with engine.connect() as conn:
        return list(await conn.scalars(statement, params))


async def rows(engine: AsyncEngine, statement: Executable,
               params: Params = None) -> list[tuple[Any, ...]]:
    """Every row ``statement`` returns, each as a plain tuple."""
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(statement, params)]


def inserts(log: QueryLog) -> list[str]:
    """The head of each INSERT in ``log``, ``"INSERT INTO a"``: which tables, in which order."""
    return [sql.split("(")[0].strip() for sql in log.sql() if sql.startswith("INSERT")]


# --- What a cell did through the ORM, not only the SQL it sent ---------------------------


@dataclass
class OrmRun:
    """One ``session.execute()`` (or ``scalars()``, ``scalar()``…) the ORM saw."""

    session: int                     #: ``id()`` of the sync ``Session`` it ran in
    statement: Executable
    #: True when the statement names mapped classes (``insert(Review)``), False for a
    #: statement on a plain ``Table`` (``insert(Review.__table__)``), which runs as Core.
    is_orm_statement: bool
    #: The parameters passed beside the statement: a list of dicts for an ORM bulk INSERT.
    parameters: Any


@dataclass
class Watched(QueryLog):
    """A ``capture_sql`` log, plus what the ORM and the DDL machinery did in the same block.

    ``executed`` holds every statement object handed to a connection (a ``TextClause``, a
    ``CreateIndex``, an ORM ``Select`` …), ``orm`` every execution inside a ``Session``,
    ``loaded`` the objects a query loaded and ``flushes`` the objects each flush inserted,
    each with the ``id()`` of its ``Session``. Objects are kept, so the check can inspect
    their state after the cell (loaded attributes, detached or not).
    """

    executed: list[Any] = field(default_factory=list)
    orm: list[OrmRun] = field(default_factory=list)
    loaded: list[tuple[int, Any]] = field(default_factory=list)
    flushes: list[tuple[int, list[Any]]] = field(default_factory=list)

    def loaded_of(self, cls: type) -> list[Any]:
        """The distinct ``cls`` objects loaded, in load order."""
        seen: dict[int, Any] = {}
        for _session, obj in self.loaded:
            if isinstance(obj, cls):
                seen.setdefault(id(obj), obj)
        return list(seen.values())


@contextmanager
def watch(engine: AsyncEngine) -> Iterator[Watched]:
    """``capture_sql(engine)``, plus the ORM's and the DDL's own events, for one cell.

    The ORM listeners sit on the ``Session`` class for the block only, so they see the
    sessions the cell creates (an ``AsyncSession`` runs a ``Session`` inside).
    """
    with capture_sql(engine) as log:
        seen = Watched(statements=log.statements)   # the same list: capture_sql appends

        def executed(conn: Any, clause: Any, *args: Any) -> None:
            seen.executed.append(clause)

        def orm_execute(state: ORMExecuteState) -> None:
            seen.orm.append(OrmRun(id(state.session), state.statement,
                                   state.is_orm_statement, state.parameters))

        def loaded(session: Session, obj: Any) -> None:
            seen.loaded.append((id(session), obj))

        def flushed(session: Session, _context: Any) -> None:
            seen.flushes.append((id(session), list(session.new)))

        hooks: list[tuple[Any, str, Callable[..., None]]] = [
            (engine.sync_engine, "before_execute", executed),
            (Session, "do_orm_execute", orm_execute),
            (Session, "loaded_as_persistent", loaded),
            (Session, "after_flush", flushed),
        ]
        for target, name, fn in hooks:
            event.listen(target, name, fn)
        try:
            yield seen
        finally:
            for target, name, fn in hooks:
                event.remove(target, name, fn)


def pool_in_use(engine: AsyncEngine) -> int:
    """Connections checked out of ``engine``'s pool, once forgotten ones are collected.

    A connection an earlier try left open and nothing refers to any more sits in a
    reference cycle until the garbage collector runs; collecting first means only a
    connection the learner still holds counts.
    """
    gc.collect()
    pool = engine.pool
    return pool.checkedout() if isinstance(pool, QueuePool) else 0


_NOT_CODE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\$(\w*)\$.*?\$\1\$", re.S)


def sql_code(sql: str) -> str:
    """``sql`` without its comments and quoted literals: what the server will run as code.

    ``SELECT 'tutorial' -- current_database()`` names the function only in a comment;
    this leaves ``SELECT``, so a check can ask which functions a statement really calls.
    """
    return _NOT_CODE.sub(" ", sql)


def bound_values(params: Any) -> list[Any]:
    """The values bound to one statement's parameters, whatever the driver's shape."""
    if isinstance(params, Mapping):
        return list(params.values())
    if isinstance(params, list | tuple):
        return list(params)
    return [] if params is None else [params]
