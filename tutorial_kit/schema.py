"""Each notebook works in a PostgreSQL schema of its own, and only there.

The name says which lesson and which learner: ``tutorial_04_alice``. The
learner is ``JUPYTERHUB_USER`` when set (JupyterHub sets it in every
single-user server), else the operating-system user, so two learners on one
shared server never share a schema.

A notebook's engine sets ``search_path`` to its schema, so ``create_all`` and
``drop_all`` can only see the tutorial's tables: a reader's ``public.a`` is
out of reach. A schema is dropped only if it carries the tutorial's marker
comment, so a reader's own schema that happens to share the name survives.
The comment also records the learner (``… safe to drop. Learner: alice``), so
an instructor's tools can group a class's schemas by person.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import unicodedata

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tutorial_kit.errors import TutorialError

MARKER = "Created by the async SQLAlchemy tutorial; safe to drop."
#: What follows the marker when the comment records who the schema belongs to.
LEARNER_TAG = " Learner: "
_NAME = re.compile(r"^tutorial_[a-z0-9_]{1,54}$")  # PostgreSQL truncates names at 63 bytes
_LEARNER_MAX = 40
_HASH_LEN = 6
_HASHED = re.compile(rf"_[0-9a-f]{{{_HASH_LEN}}}$")
#: Characters never written into the comment: quotes and backslashes would need
#: escaping rules that depend on server settings, control characters are noise.
_UNSAFE_IN_COMMENT = re.compile(r"['\\\x00-\x1f\x7f]")
#: ``tutorial_<lesson>_<learner slug>``; the lesson is the notebook's number.
_OWNED = re.compile(r"^tutorial_(?P<lesson>[0-9]+)_(?P<slug>[a-z0-9_]+)$")


class ForeignSchemaError(TutorialError):
    """A schema with the tutorial's name exists but the tutorial did not create it."""


#: BinderHub sets these in every container it launches (with a JUPYTERHUB_USER made of the
#: repository's name and a random suffix, new each session).
BINDER_VARIABLES = ("BINDER_LAUNCH_HOST", "BINDER_REPO_URL")


def learner_name() -> str:
    """Who is running this kernel: ``JUPYTERHUB_USER``, else the OS user.

    On Binder the OS user (``jovyan``) is used instead: a Binder session is one
    learner with a server of their own, and its hub user name is random.
    """
    hub_user = os.environ.get("JUPYTERHUB_USER", "").strip()
    on_binder = any(os.environ.get(v) for v in BINDER_VARIABLES)
    if hub_user and not on_binder:
        return hub_user
    try:
        return getpass.getuser().strip() or "learner"
    except (KeyError, OSError):  # a container user with no passwd entry
        return "learner"


def learner_slug(name: str) -> str:
    """``name`` as a short, valid identifier part, the same every time.

    Lower-case ASCII letters and digits are kept, single ``_`` between them
    too; anything else (dots, ``@``, ``-``, capitals, accents, other scripts)
    makes the name "changed". A changed name, a name longer than 40
    characters, or one that already ends like a hash (``bob_1a2b3c``) gets
    ``_`` + the first 6 hex digits of the original's SHA-256, so
    ``Jane.Doe`` and ``jane_doe`` never meet in one schema. An unchanged
    name (``alice``) is used as it is.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    if slug and slug == name and len(slug) <= _LEARNER_MAX and not _HASHED.search(slug):
        return slug
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_LEN]
    return f"{slug[: _LEARNER_MAX - _HASH_LEN - 1].rstrip('_') or 'user'}_{digest}"


def learner_schema(lesson: str, learner: str | None = None) -> str:
    """The schema lesson ``lesson`` ("04") uses for this learner: ``tutorial_04_alice``."""
    if not re.fullmatch(r"[a-z0-9]+", lesson):
        raise ValueError(f"a lesson is named by its number, like '04', got {lesson!r}")
    return _checked(f"tutorial_{lesson}_{learner_slug(learner or learner_name())}")


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"schema names must match {_NAME.pattern}, got {name!r}")
    return name


def marker_comment(learner: str | None) -> str:
    """The comment ``reset_schema`` writes: the marker, and who the schema is for."""
    if not learner:
        return MARKER
    shown = _UNSAFE_IN_COMMENT.sub("?", learner)[:100]
    return f"{MARKER}{LEARNER_TAG}{shown}"


def is_marked(comment: str | None) -> bool:
    """True for a comment the tutorial wrote: the marker alone (older versions) or tagged."""
    return comment is not None and (comment == MARKER or comment.startswith(MARKER + LEARNER_TAG))


def schema_owner(name: str, comment: str | None) -> str | None:
    """Whose schema this is: the learner the comment records, else the slug in its name.

    None for a schema from before per-learner names (``tutorial_04``).
    """
    if comment and comment.startswith(MARKER + LEARNER_TAG):
        return comment[len(MARKER + LEARNER_TAG):]
    owned = _OWNED.match(name)
    return owned["slug"] if owned else None


def belongs_to(name: str, comment: str | None, learner: str) -> bool:
    """True if the marked schema ``name`` is ``learner``'s (by name or by slug)."""
    owner = schema_owner(name, comment)
    if owner is None:
        return False
    slug = learner_slug(learner)
    owned = _OWNED.match(name)
    return owner in (learner, slug) or (owned is not None and owned["slug"] == slug)


async def reset_schema(conn: AsyncConnection, name: str) -> None:
    """Drop the tutorial schema ``name`` with everything in it, then create it empty."""
    name = _checked(name)
    await drop_schema(conn, name)
    await conn.execute(text(f"CREATE SCHEMA {name}"))
    # Record the learner only when the name is theirs (learner_schema's shape).
    learner = learner_name()
    owned = _OWNED.match(name)
    mine = owned is not None and owned["slug"] == learner_slug(learner)
    comment = marker_comment(learner if mine else None)
    # COMMENT takes no bind parameters; the comment holds no quote or backslash.
    await conn.execute(text(f"COMMENT ON SCHEMA {name} IS '{comment}'"))


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
    if not is_marked(comment):
        raise ForeignSchemaError(
            f"Schema {name!r} exists but was not created by this tutorial, so it is left "
            "alone. Rename it, or point DATABASE_URL at another database."
        )
    await conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
    return True


_MARKED_SQL = (
    "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace "
    "WHERE obj_description(oid, 'pg_namespace') = :marker "
    "OR starts_with(obj_description(oid, 'pg_namespace'), :tagged) ORDER BY nspname"
)


async def marked_schemas(conn: AsyncConnection) -> list[tuple[str, str]]:
    """``(name, comment)`` of every schema the tutorial created in this database."""
    rows = await conn.execute(text(_MARKED_SQL), {"marker": MARKER, "tagged": MARKER + LEARNER_TAG})
    return [(name, comment) for name, comment in rows if is_marked(comment)]


async def tutorial_schemas(conn: AsyncConnection) -> list[str]:
    """The schemas the tutorial created in this database, by name."""
    return [name for name, _ in await marked_schemas(conn)]
