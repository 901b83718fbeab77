"""What the checks read for themselves: the database by plain SQL, and a log's INSERTs.

Each read opens a connection of its own and closes it at once, so a check sees what
the learner's code committed, not what their session holds, and leaves nothing open.
The checks write their queries as plain SQL (or a column select) rather than the
ORM technique the exercise asks for, so no check shows the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from tutorial_kit.sql_capture import QueryLog

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
