"""See the SQL an engine sends, and count the statements.

``capture_sql(engine)`` listens to the engine's ``before_cursor_execute`` and
``after_cursor_execute`` events, the last hooks around a statement going to
the driver, so every lazy load, refresh and batch shows up, not only the ones
a cell asked for.

What it counts is **statements**: one per ``cursor.execute()`` or
``executemany()`` call. That is not the number of network round trips: the
driver also sends BEGIN and COMMIT, and asyncpg prepares a statement before
its first use; none of those pass through these events.

``show()`` tags a statement sent with the driver's ``executemany()`` (one
statement, many parameter sets) ``[executemany]``, and each batch of an
*insertmanyvalues* INSERT (many rows in one multi-row ``VALUES``, sent with
``execute()``) ``[insertmanyvalues]``. SQLAlchemy fires the event with
``executemany=True`` for both (``Connection._exec_insertmany_context``), so
the two are told apart by the context's ``execute_style``.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import ExecuteStyle
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class Statement:
    """One statement as SQLAlchemy handed it to the driver."""

    sql: str
    params: Any
    #: True if sent with the driver's ``executemany()``: one statement, many
    #: parameter sets. False for an insertmanyvalues batch (see below).
    executemany: bool
    #: True if it ran with ``stream_results`` (a server-side cursor), as
    #: ``session.stream()``, ``conn.stream()`` and ``yield_per`` ask for.
    streamed: bool
    #: ``id()`` of the driver connection it ran on: equal ids, same connection.
    connection: int
    #: ``time.perf_counter()`` before the statement went out and after it came back.
    started: float
    ended: float | None = None
    #: True for one batch of an *insertmanyvalues* INSERT: many rows in one
    #: multi-row ``VALUES``, sent with the driver's ``execute()``.
    insertmanyvalues: bool = False


@dataclass
class QueryLog:
    """What one ``capture_sql`` block sent to the server."""

    statements: list[Statement] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Statements sent (an executemany batch counts once; BEGIN/COMMIT are not seen)."""
        return len(self.statements)

    def __len__(self) -> int:
        return self.count

    def sql(self) -> list[str]:
        return [s.sql for s in self.statements]

    @property
    def streamed(self) -> bool:
        """True if any statement ran on a server-side cursor."""
        return any(s.streamed for s in self.statements)

    def connections(self) -> set[int]:
        """The distinct driver connections the statements ran on."""
        return {s.connection for s in self.statements}

    def overlapped(self) -> bool:
        """True if some statement started before another one had finished."""
        spans = sorted((s.started, s.ended or s.started) for s in self.statements)
        return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))

    def show(self, *, params: bool = False, width: int = 400) -> None:
        """Print each statement, numbered, in a compact one-statement-per-block form."""
        for i, stmt in enumerate(self.statements, 1):
            sql = _compact(stmt.sql)
            if len(sql) > width:
                sql = sql[:width] + " …"
            flags = ("  [executemany]" if stmt.executemany else "") + (
                "  [insertmanyvalues]" if stmt.insertmanyvalues else "") + (
                "  [server-side cursor]" if stmt.streamed else "")
            print(f"-- [{i}]{flags}\n{sql}")
            if params:
                print(f"-- params: {_short(stmt.params)}")
        print(f"-- {self.count} statement{'s' if self.count != 1 else ''}")


@contextmanager
def capture_sql(
    engine: AsyncEngine, *, echo: bool = False, params: bool = False
) -> Iterator[QueryLog]:
    """Record every statement ``engine`` executes inside the block.

    ``echo=True`` prints them when the block ends.
    """
    log = QueryLog()
    running: dict[int, Statement] = {}

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        options = context.execution_options if context is not None else {}
        # An insertmanyvalues batch arrives with executemany=True but goes to
        # the driver's execute(): tell it apart by the context's execute_style.
        batch = (context is not None
                 and context.execute_style is ExecuteStyle.INSERTMANYVALUES)
        stmt = Statement(
            statement, parameters, executemany and not batch,
            streamed=bool(options.get("stream_results", False)),
            connection=id(conn.connection.driver_connection),
            started=time.perf_counter(),
            insertmanyvalues=batch,
        )
        running[id(cursor)] = stmt
        log.statements.append(stmt)

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        stmt = running.pop(id(cursor), None)
        if stmt is not None:
            stmt.ended = time.perf_counter()

    target = engine.sync_engine
    event.listen(target, "before_cursor_execute", before)
    event.listen(target, "after_cursor_execute", after)
    try:
        yield log
    finally:
        event.remove(target, "before_cursor_execute", before)
        event.remove(target, "after_cursor_execute", after)
        if echo:
            log.show(params=params)


def _compact(sql: str) -> str:
    """Collapse SQLAlchemy's multi-line SQL into lines that read well in a notebook."""
    lines = [re.sub(r"\s+", " ", line).strip() for line in sql.strip().splitlines()]
    return "\n".join(line for line in lines if line)


def _short(params: Any, limit: int = 160) -> str:
    text = repr(params)
    return text if len(text) <= limit else text[:limit] + " …"
