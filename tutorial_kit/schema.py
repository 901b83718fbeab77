"""Each notebook works in a PostgreSQL schema of its own, and only there.

A notebook's engine sets ``search_path`` to its schema, so ``create_all`` and
``drop_all`` can only see the tutorial's tables: a reader's ``public.a`` is
out of reach. A schema is dropped only if it carries the tutorial's marker
comment, so a reader's own schema that happens to share the name survives.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MARKER = "Created by the async SQLAlchemy tutorial; safe to drop."
_NAME = re.compile(r"^tutorial_[a-z0-9_]{1,40}$")


class ForeignSchemaError(RuntimeError):
    """A schema with the tutorial's name exists but the tutorial did not create it."""


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"schema names must match {_NAME.pattern}, got {name!r}")
    return name


async def reset_schema(conn: AsyncConnection, name: str) -> None:
    """Drop the tutorial schema ``name`` with everything in it, then create it empty."""
    name = _checked(name)
    await drop_schema(conn, name)
    await conn.execute(text(f"CREATE SCHEMA {name}"))
    await conn.execute(text(f"COMMENT ON SCHEMA {name} IS '{MARKER}'"))


async def drop_schema(conn: AsyncConnection, name: str) -> bool:
    """Drop ``name`` if the tutorial created it; True if something was dropped."""
    name = _checked(name)  # before any SQL: the name is interpolated into DDL below
    comment = await conn.scalar(
        text(
            "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') "
            "FROM pg_namespace WHERE nspname = :name"
        ),
        {"name": name},
    )
    if comment is None:
        return False
    if comment != MARKER:
        raise ForeignSchemaError(
            f"Schema {name!r} exists but was not created by this tutorial, so it is left "
            "alone. Rename it, or point DATABASE_URL at another database."
        )
    await conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
    return True


async def tutorial_schemas(conn: AsyncConnection) -> list[str]:
    """The schemas the tutorial created in this database, by name."""
    rows = await conn.scalars(
        text(
            "SELECT nspname FROM pg_namespace "
            "WHERE obj_description(oid, 'pg_namespace') = :marker ORDER BY nspname"
        ),
        {"marker": MARKER},
    )
    return list(rows)
