"""See the SQL an engine sends, and count the round trips.

``capture_sql(engine)`` listens to the engine's ``before_cursor_execute``
event, the last hook before a statement goes to the driver, so every
lazy load, refresh and batch shows up, not only the ones a cell asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class Statement:
    sql: str
    params: Any
    executemany: bool


@dataclass
class QueryLog:
    """What one ``capture_sql`` block sent to the server."""

    statements: list[Statement] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Round trips: one per statement sent (an executemany batch counts once)."""
        return len(self.statements)

    def __len__(self) -> int:
        return self.count

    def sql(self) -> list[str]:
        return [s.sql for s in self.statements]

    def show(self, *, params: bool = False, width: int = 400) -> None:
        """Print each statement, numbered, in a compact one-statement-per-block form."""
        for i, stmt in enumerate(self.statements, 1):
            sql = _compact(stmt.sql)
            if len(sql) > width:
                sql = sql[:width] + " …"
            many = "  [executemany]" if stmt.executemany else ""
            print(f"-- [{i}]{many}\n{sql}")
            if params:
                print(f"-- params: {_short(stmt.params)}")
        print(f"-- {self.count} round trip{'s' if self.count != 1 else ''}")


@contextmanager
def capture_sql(
    engine: AsyncEngine, *, echo: bool = False, params: bool = False
) -> Iterator[QueryLog]:
    """Record every statement ``engine`` executes inside the block.

    ``echo=True`` prints them when the block ends.
    """
    log = QueryLog()

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        log.statements.append(Statement(statement, parameters, executemany))

    target = engine.sync_engine
    event.listen(target, "before_cursor_execute", before)
    try:
        yield log
    finally:
        event.remove(target, "before_cursor_execute", before)
        if echo:
            log.show(params=params)


def _compact(sql: str) -> str:
    """Collapse SQLAlchemy's multi-line SQL into lines that read well in a notebook."""
    lines = [re.sub(r"\s+", " ", line).strip() for line in sql.strip().splitlines()]
    return "\n".join(line for line in lines if line)


def _short(params: Any, limit: int = 160) -> str:
    text = repr(params)
    return text if len(text) <= limit else text[:limit] + " …"
