"""Each notebook works in a PostgreSQL schema of its own, and only there.

The name says which lesson and which learner: ``tutorial_04_alice``. The
learner is ``JUPYTERHUB_USER`` when set (JupyterHub sets it in every
single-user server), else the operating-system user, so two learners on one
shared server never share a schema.

A notebook's engine sets ``search_path`` to its schema, so ``create_all`` and
``drop_all`` can only see the tutorial's tables: a reader's ``public.a`` is
out of reach. A schema is dropped only if it carries the tutorial's marker
comment, so a reader's own schema that happens to share the name survives.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import unicodedata

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MARKER = "Created by the async SQLAlchemy tutorial; safe to drop."
_NAME = re.compile(r"^tutorial_[a-z0-9_]{1,54}$")  # PostgreSQL truncates names at 63 bytes
_LEARNER_MAX = 40
_HASHED = re.compile(r"_[0-9a-f]{6}$")


def learner_name() -> str:
    """Who is running this kernel: ``JUPYTERHUB_USER``, else the OS user."""
    hub_user = os.environ.get("JUPYTERHUB_USER", "").strip()
    if hub_user:
        return hub_user
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return "learner"


def learner_slug(name: str) -> str:
    """``name`` as a short, valid identifier part, the same every time.

    Lower-case ASCII letters, digits and ``_`` are kept; anything else (dots,
    ``@``, accents, other scripts) becomes ``_``. A name that had to change, or
    was longer than 40 characters, gets a 6-hex-digit hash of the original, so
    ``Jane.Doe`` and ``jane_doe`` never meet in one schema.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    if slug == name and len(slug) <= _LEARNER_MAX and not _HASHED.search(slug):
        return slug
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{slug[:_LEARNER_MAX - 7].rstrip('_') or 'user'}_{digest}"


def learner_schema(lesson: str, learner: str | None = None) -> str:
    """The schema lesson ``lesson`` ("04") uses for this learner: ``tutorial_04_alice``."""
    return _checked(f"tutorial_{lesson}_{learner_slug(learner or learner_name())}")


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
