"""Checks for 12 · Migrations with Alembic.

Both judge by what Alembic left behind, read here from the server's catalog (which
transaction wrote a row is in its ``xmin``) and the revision file on disk, never by
running Alembic: a check that ran the migration would show how to write it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Pool, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import rows, scalar, scalars
from tutorial_kit.exercises import check, unanswered, unavailable
from tutorial_kit.models import Base
from tutorial_kit.sql_capture import QueryLog

VERSION = text("SELECT version_num FROM alembic_version")
#: ``in_print`` as the catalog has it: (type, nullable, server default).
IN_PRINT = text(
    "SELECT data_type, is_nullable, column_default FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = 'book' "
    "AND column_name = 'in_print'")
BOOK_COLUMNS = text(
    "SELECT column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = 'book'")
#: The transactions that wrote the in_print column and the version row: one migration
#: writes both in one transaction; a hand ALTER TABLE plus a stamp writes them in two.
WRITTEN_BY = text(
    "SELECT (SELECT xmin::text FROM pg_attribute WHERE attrelid = 'book'::regclass "
    "AND attname = 'in_print'), (SELECT xmin::text FROM alembic_version)")
#: Rows of the schema written after the transaction ``:mark`` (32-bit xids, no wraparound).
WRITTEN_SINCE = text(
    "SELECT (SELECT count(*) FROM alembic_version WHERE xmin::text::bigint > :mark) "
    "+ (SELECT count(*) FROM pg_attribute WHERE attrelid = 'book'::regclass "
    "AND xmin::text::bigint > :mark)")
#: The book columns the models and revisions 0001 and 0002 give: the exercise adds one.
BOOK_BEFORE = {c.name for c in Base.metadata.tables["book"].columns} | {"isbn"}
#: What downgrading from 0002 to 0001 runs, one statement each (whitespace collapsed).
DOWNGRADE = {
    "SET LOCAL lock_timeout = '1s'",
    "ALTER TABLE book DROP COLUMN isbn",
    "UPDATE alembic_version SET version_num='0001' WHERE alembic_version.version_num = '0002'",
}
OPERATION = re.compile(r"^\s*(op\.\w+\(.*)$", re.M)
#: A session setting the lesson teaches to put before an ALTER TABLE (``SET LOCAL
#: lock_timeout``): an operation of the revision that changes no column.
SETTING = re.compile(r"""op\.execute\(\s*(?:sa\.)?(?:text\()?\s*[rbuRBU]?["']+\s*SET\s""", re.I)


@dataclass
class Activity:
    """What every engine of this process did since ``reset_to_lesson_state``."""

    #: (id of the driver connection, SQL) of each statement, in order.
    statements: list[tuple[int, str]] = field(default_factory=list)
    #: Connections checked out of any pool (a connection opened, even with nothing sent).
    checkouts: int = 0


@contextmanager
def activity() -> Iterator[Activity]:
    """Record every statement and checkout of every engine, pool and connection inside the block.

    The lesson's ``reset_to_lesson_state`` keeps one open until the next reset: the
    checks read the learner's work from it (what ran on which connection, whether
    anything connected at all), which the schema alone does not show.
    """
    seen = Activity()

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.statements.append((id(conn.connection.driver_connection), sql))

    def checkout(*args: Any) -> None:
        seen.checkouts += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Pool, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Pool, "checkout", checkout)


def upgraded_online(seen: Activity) -> tuple[bool, bool]:
    """(an upgrade added in_print, autogenerate compared the database), from ``seen``.

    Alembic's online upgrade reads the database's version on the connection it then
    alters, right before the ``ALTER`` (``SET`` statements, such as the lesson's ``SET
    LOCAL lock_timeout``, may come in between: they read and write nothing); autogenerate
    reads the version and then reflects the schema from the catalog. SQL rendered offline
    and run by hand reads no version; a revision typed in, even with autogenerate's
    comments copied, reflects nothing.
    """
    last: dict[int, str] = {}
    upgraded = compared = False
    for conn, sql in seen.statements:
        before = last.get(conn, "")
        if "FROM alembic_version" in before and before.lstrip().upper().startswith("SELECT"):
            upgraded |= bool(re.match(r"\s*ALTER TABLE book ADD( COLUMN)? in_print", sql))
            compared |= "pg_catalog" in sql
        if not sql.lstrip().upper().startswith("SET "):
            last[conn] = sql
    return upgraded, compared


def operations(source: str, function: str) -> list[str]:
    """The ``op.…(`` lines of ``def upgrade`` or ``def downgrade`` in a revision's source.

    ``op.execute("SET …")`` lines are left out: the lesson adds ``SET LOCAL lock_timeout``
    before each ``ALTER TABLE``, which changes the session, not the schema.
    """
    body = source.split(f"def {function}", 1)[-1].split("\ndef ", 1)[0] if source else ""
    return [op for op in OPERATION.findall(body) if not SETTING.match(op)]


def statements(sql: str) -> list[str]:
    """The statements of an offline SQL script, comments, BEGIN and COMMIT left out."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    found = (" ".join(part.split()) for part in "\n".join(lines).split(";"))
    return [s for s in found if s and s.upper() not in ("BEGIN", "COMMIT")]


async def ex1(answer: Any, *, engine: AsyncEngine, migrations: Path,
              activity: Activity | None = None) -> None:
    """The book columns after an autogenerated revision 0003 that adds ``in_print``.

    The prompt's requirements, one rule each:

    1. ``ex1`` is the list of the book table's columns, isbn and in_print among them,
       and it is the table's real column list (every column, each once, none other);
    2. the database is at revision 0003 (``alembic_version``);
    3. in the catalog, in_print is boolean, NOT NULL, server default true (so a
       non-empty table gets a value: a NOT NULL column without it fails there);
    4. the book table has no other new column;
    5. revision 0003 on disk was autogenerated;
    6. its upgrade adds in_print and nothing else (no isbn dropped, no other column;
       ``op.execute("SET …")`` lines, such as the lesson's ``SET LOCAL lock_timeout``,
       are allowed);
    7. the revision's upgrade is what added the column: the column and the version
       row were written by one transaction, not by a hand ALTER TABLE and a stamp;
    8. autogenerate wrote it: after the reset, a connection read the version and then
       the catalog (``activity``, the lesson's record since ``reset_to_lesson_state``),
       which a revision typed in, autogenerate's comments copied, never does;
    9. Alembic's online upgrade added the column: the ``ALTER TABLE`` came right after
       the version was read on its connection (``SET`` statements in between allowed),
       which SQL rendered offline and run by hand (one transaction, column and version
       together) does not do.

    Not told apart: a learner who also reads ``alembic_version`` (or the catalog) by
    hand right before their own statements, on the same connection, to look like
    Alembic; nothing the database keeps shows who sent a statement.
    """
    shape = (lambda v: isinstance(v, list) and "in_print" in v and "isbn" in v,
             "ex1 should be the list of the book table's columns, with both isbn and "
             "in_print.")
    if unanswered(1, answer, shape[1]):
        return
    try:
        revision = next((migrations / "versions").glob("0003_*.py"), None)
        source = revision.read_text() if revision else ""
        version = await scalar(engine, VERSION)
        found = next(iter(await rows(engine, IN_PRINT)), None)   # (type, nullable, default)
        columns = set(await scalars(engine, BOOK_COLUMNS))
        written = next(iter(await rows(engine, WRITTEN_BY)), (None, None))
    except Exception as err:  # a missing alembic_version, a server gone: a hint, not a traceback
        check(1, answer, shape,
              unavailable("reading alembic_version and book's columns", err,
                          "The database must be upgraded through a revision with id 0003."))
        return
    upgrade = operations(source, "upgrade")
    extra = sorted(columns - BOOK_BEFORE - {"in_print"})
    upgraded, compared = upgraded_online(activity) if activity is not None else (True, True)
    listed = sorted(map(str, answer)) if isinstance(answer, list) else []
    check(1, answer, shape,
          (lambda v: listed == sorted(columns),
           f"ex1 lists {len(listed)} name(s), which are not the {len(columns)} columns the "
           "book table has after the migration: read the list back from the database (e.g. "
           "with book_columns())."),
          (lambda v: version == "0003",
           f"alembic_version says {version!r}: the database must be upgraded through a "
           "revision with id 0003."),
          (lambda v: found == ("boolean", "NO", "true"),
           f"the database has in_print as {found} (type, nullable, server default): it "
           "should be boolean, NOT NULL, with the server default true, so that books "
           "already in the table get a value."),
          (lambda v: not extra,
           f"the book table also has {', '.join(extra)}, which the exercise does not add: "
           "the target MetaData should be NEW_METADATA's tables plus in_print only."),
          (lambda v: "commands auto generated by Alembic" in source,
           "revision 0003 was not autogenerated: let autogenerate write it from a target "
           "MetaData, rather than typing the operations in."),
          (lambda v: compared,
           "revision 0003 was not autogenerated: nothing compared the database with a target "
           "MetaData, which autogenerate does before it writes a revision. Run the revision "
           "command with autogenerate=True rather than writing the file yourself."),
          (lambda v: len(upgrade) == 1 and upgrade[0].startswith("op.add_column('book'")
           and "in_print" in upgrade[0],
           f"revision 0003's upgrade runs {len(upgrade)} operation(s), "
           f"{'; '.join(op[:40] for op in upgrade) or 'none'}: it should add in_print and "
           "do nothing else. Autogenerate it, at the head revision, from a target MetaData "
           "that also has isbn."),
          (lambda v: None not in written and written[0] == written[1],
           "in_print and the version 0003 were written by different transactions, so "
           "revision 0003 is not what added the column: run the upgrade to 0003 rather "
           "than altering the table yourself and stamping the version."),
          (lambda v: upgraded,
           "in_print was not added by Alembic's upgrade: Alembic reads the database's version "
           "right before it alters the table, on the same connection, and here nothing did. "
           "Run the upgrade to 0003 (online) rather than running its SQL yourself."))


async def ex2(answer: Any, *, log: QueryLog, engine: AsyncEngine, since: int,
              activity: Activity | None = None) -> None:
    """The offline SQL of the downgrade from 0002 to 0001, produced without touching the server.

    The prompt's requirements, one rule each:

    1. ``ex2`` is SQL text with the ``ALTER TABLE`` that drops isbn;
    2. it has every statement the downgrade from 0002 to 0001 runs (the revision's
       ``SET LOCAL lock_timeout``, the ``ALTER TABLE``, alembic_version back to 0001);
    3. and nothing else (no other revision's SQL, upgrade or downgrade);
    4. the database was not touched: ``log`` (the scaffold's ``capture_sql`` on
       ``engine``) recorded nothing, and no row of alembic_version or of book's
       columns was written after the transaction ``since`` (the scaffold's reset), on
       any engine;
    5. no engine sent a statement (``activity``: every engine of the process since the
       reset), not even inside a transaction rolled back afterwards;
    6. no connection was opened at all, even one that sent nothing (offline mode needs
       none; a helper that opens one first touches the database all the same).
    """
    sent_anywhere = len(activity.statements) if activity is not None else 0
    opened = activity.checkouts if activity is not None else 0   # before the check's reads
    shape = (lambda v: isinstance(v, str) and "ALTER TABLE book DROP COLUMN isbn" in v,
             "ex2 should be SQL text containing the ALTER TABLE that drops isbn.")
    if unanswered(2, answer, shape[1]):
        return
    try:
        touched = await scalar(engine, WRITTEN_SINCE, {"mark": since % 2**32})
    except Exception as err:  # alembic_version dropped, the server gone: a hint, not a traceback
        check(2, answer, shape,
              unavailable("reading alembic_version", err, "The database should still be at "
                          "0001: offline mode renders the SQL without touching it."))
        return
    sent = statements(answer) if isinstance(answer, str) else []
    missing = sorted(DOWNGRADE - set(sent))
    extra = [s for s in sent if s not in DOWNGRADE]
    check(2, answer, shape,
          (lambda v: not missing,
           f"the text lacks {missing[0][:60] if missing else ''!r}, which the downgrade "
           "from 0002 to 0001 runs: ex2 should be the whole downgrade, as offline mode "
           "renders it."),
          (lambda v: not extra,
           f"the text also has {extra[0][:60] if extra else ''!r}, which the downgrade from "
           "0002 to 0001 does not run: ex2 should hold that downgrade's statements and "
           "nothing else."),
          (lambda v: log.count == 0,
           f"your code sent {log.count} statement(s) on engine: offline mode renders the SQL "
           "without connecting."),
          (lambda v: sent_anywhere == 0,
           f"{sent_anywhere} statement(s) were sent to the server between the scaffold's reset "
           "and this check, outside the capture on engine (after the with block, or on "
           "another engine; even if rolled back, they ran on the server): offline mode "
           "renders the SQL without connecting, and ex2 needs nothing more."),
          (lambda v: opened == 0,
           f"{opened} connection(s) were opened between the scaffold's reset and this check, "
           "though nothing was sent on them: offline "
           "mode renders the SQL without connecting, so call the command directly rather than "
           "through a helper that opens a connection first (such as alembic())."),
          (lambda v: touched == 0,
           "the database was changed while your code ran (alembic_version or book's columns "
           "were written), although nothing was sent on engine: offline mode renders the SQL "
           "without touching any database."))
