"""Each notebook works in a PostgreSQL schema of its own, and only there.

The name says which lesson and which learner: ``tutorial_04_alice``. The
learner is resolved once per process (:func:`current_learner`):
``JUPYTERHUB_USER`` when set (JupyterHub sets it in every single-user server),
else the operating-system user, so two learners on one shared server never
share a schema.

A notebook's engine sets ``search_path`` to its schema, so ``create_all`` and
``drop_all`` can only see the tutorial's tables: a reader's ``public.a`` is
out of reach. A schema is dropped only if it carries the tutorial's marker
comment, so a reader's own schema that happens to share the name survives.
The comment also records the learner (``… safe to drop. Learner: alice``): the
server-side mark of whose schema it is, so an instructor's tools can group a
class's schemas by person. Its format is written and read only here
(:func:`marker_comment`, :func:`tutorial_schemas`).
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tutorial_kit import setup_problems as problems
from tutorial_kit.errors import TutorialError

MARKER = "Created by the async SQLAlchemy tutorial; safe to drop."
#: What follows the marker when the comment records who the schema belongs to.
_LEARNER_TAG = " Learner: "
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


@dataclass(frozen=True)
class Learner:
    """Who runs the notebooks: the name their schemas are named after and marked with."""

    name: str

    @classmethod
    def from_environment(cls) -> Learner:
        """``JUPYTERHUB_USER``, else the OS user.

        On Binder the OS user (``jovyan``) is used instead: a Binder session is one
        learner with a server of their own, and its hub user name is random.
        """
        hub_user = os.environ.get("JUPYTERHUB_USER", "").strip()
        on_binder = any(os.environ.get(v) for v in BINDER_VARIABLES)
        if hub_user and not on_binder:
            return cls(hub_user)
        try:
            return cls(getpass.getuser().strip() or "learner")
        except (KeyError, OSError):  # a container user with no passwd entry
            return cls("learner")

    @property
    def slug(self) -> str:
        """The name as it appears in schema names (see :func:`learner_slug`)."""
        return learner_slug(self.name)

    def schema(self, lesson: str) -> str:
        """The schema lesson ``lesson`` ("04") uses for this learner: ``tutorial_04_alice``."""
        if not re.fullmatch(r"[a-z0-9]+", lesson):
            raise ValueError(f"a lesson is named by its number, like '04', got {lesson!r}")
        return _checked(f"tutorial_{lesson}_{self.slug}")

    def named_in(self, schema: str) -> bool:
        """True if ``schema`` has this learner's slug in it (``learner_schema``'s shape)."""
        owned = _OWNED.match(schema)
        return owned is not None and owned["slug"] == self.slug


@functools.cache
def current_learner() -> Learner:
    """This process's learner, read from the environment once (a kernel's does not change)."""
    return Learner.from_environment()


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
    """The schema lesson ``lesson`` ("04") uses: ``tutorial_04_alice``.

    The notebooks call it with the lesson only, for this kernel's learner;
    ``learner`` names another one.
    """
    return (Learner(learner) if learner else current_learner()).schema(lesson)


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"schema names must match {_NAME.pattern}, got {name!r}")
    return name


def marker_comment(learner: Learner | None) -> str:
    """The comment ``reset_schema`` writes: the marker, and who the schema is for."""
    if learner is None:
        return MARKER
    shown = _UNSAFE_IN_COMMENT.sub("?", learner.name)[:100]
    return f"{MARKER}{_LEARNER_TAG}{shown}"


def _is_marked(comment: str | None) -> bool:
    """True for a comment the tutorial wrote: the marker alone (older versions) or tagged."""
    return comment is not None and (comment == MARKER
                                    or comment.startswith(MARKER + _LEARNER_TAG))


@dataclass(frozen=True)
class TutorialSchema:
    """A schema the tutorial created, as its marker comment and name say, with its size."""

    name: str
    #: Whose it is: the learner its comment records, else the slug in its name; None for a
    #: schema from before per-learner names (``tutorial_04``).
    learner: str | None
    size_bytes: int

    @classmethod
    def read(cls, name: str, comment: str, size_bytes: int = 0) -> TutorialSchema:
        """From the name and marker comment as the server holds them."""
        owned = _OWNED.match(name)
        if comment.startswith(MARKER + _LEARNER_TAG):
            learner: str | None = comment[len(MARKER + _LEARNER_TAG):]
        else:
            learner = owned["slug"] if owned else None
        return cls(name, learner, size_bytes)

    def belongs_to(self, learner: Learner) -> bool:
        """True if this is ``learner``'s schema (by the name recorded, or by slug)."""
        if self.learner is None:
            return False
        return self.learner in (learner.name, learner.slug) or learner.named_in(self.name)


_TUTORIAL_SCHEMAS = text(
    "SELECT n.nspname, obj_description(n.oid, 'pg_namespace'), "
    "  coalesce(sum(pg_total_relation_size(c.oid)) "
    "           FILTER (WHERE c.relkind IN ('r', 'm', 'S')), 0)::bigint "
    "FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid "
    "WHERE obj_description(n.oid, 'pg_namespace') = :marker "
    "   OR starts_with(obj_description(n.oid, 'pg_namespace'), :tagged) "
    "GROUP BY n.oid, n.nspname ORDER BY n.nspname"
)


async def tutorial_schemas(conn: AsyncConnection) -> list[TutorialSchema]:
    """Every schema the tutorial created in this database, with its size:
    ``pg_total_relation_size`` summed over its tables, materialized views and sequences
    (indexes and TOAST are part of each table's total)."""
    rows = await conn.execute(_TUTORIAL_SCHEMAS,
                              {"marker": MARKER, "tagged": MARKER + _LEARNER_TAG})
    return [TutorialSchema.read(name, comment, int(size)) for name, comment, size in rows
            if _is_marked(comment)]


async def reset_schema(conn: AsyncConnection, name: str, learner: Learner | None = None) -> None:
    """Drop the tutorial schema ``name`` with everything in it, then create it empty.

    Its comment records ``learner`` (this kernel's, unless given) when the name is
    theirs, as ``learner_schema`` makes it.
    """
    name = _checked(name)
    await drop_schema(conn, name)
    await conn.execute(text(f"CREATE SCHEMA {name}"))
    learner = learner or current_learner()
    comment = marker_comment(learner if learner.named_in(name) else None)
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
    if not _is_marked(comment):
        raise ForeignSchemaError(problems.FOREIGN_SCHEMA.message(name=name))
    await conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
    return True
