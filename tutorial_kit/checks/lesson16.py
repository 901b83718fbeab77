"""Checks for 16 · Choosing the driver.

Exercise 1 tries the learner's engine itself, through the notebook's PgBouncer: one
connection it checks out (which driver, which port, psycopg's ``prepare_threshold``, and
what the server connection prepared while one statement ran ten times in one
transaction), then twelve executions of one statement that alternate between
PgBouncer's two server connections. Exercise 2 reads the scaffold's ``capture_sql`` log
of the asyncpg engine and compares the rows with the seeded data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tutorial_kit.checks.evidence import bound_values, plain
from tutorial_kit.exercises import check, describe, unanswered, unavailable
from tutorial_kit.models import Author
from tutorial_kit.pgbouncer import PgBouncer
from tutorial_kit.seed import Dataset
from tutorial_kit.sql_capture import QueryLog

#: Executions of one statement in one transaction: more than psycopg's default threshold (5).
IN_ONE_TRANSACTION = 10
#: Executions of one statement, one transaction each, alternating server connections.
ALTERNATING = 12
#: Named statements the server connection prepared in the check's transaction (psycopg's
#: protocol-level ones have from_sql = false; now() is the transaction's start).
PREPARED_HERE = text("SELECT count(*) FROM pg_prepared_statements "
                     "WHERE NOT from_sql AND prepare_time >= now()")


@dataclass
class Tried:
    """What the check saw of the learner's engine, or the error that stopped it."""

    psycopg_async: bool = False
    port: int | None = None
    threshold: Any = "unread"
    prepared: int | None = None
    failure: Exception | None = None   # gathering the connection's facts raised
    missing_table: bool = False
    outcome: str | None = None  # the alternating run: None when every execution ran
    servers: int = 0


def one_statement(author_id: int) -> Any:
    """The statement the check runs again and again (qualified by the engine's QUALIFY)."""
    return select(Author.name, func.pg_backend_pid()).where(Author.id == author_id)


async def connection_facts(engine: AsyncEngine, seen: Tried) -> None:
    """Driver, port and prepare_threshold of one new connection, and what its server
    connection prepared while one statement ran IN_ONE_TRANSACTION times."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        seen.psycopg_async = isinstance(driver, psycopg.AsyncConnection)
        if not seen.psycopg_async:
            return
        seen.port = driver.info.port
        seen.threshold = driver.prepare_threshold
        try:
            for _ in range(IN_ONE_TRANSACTION):
                await conn.execute(one_statement(1))
        except Exception as err:
            seen.missing_table = "does not exist" in str(err) and "relation" in str(err)
            raise
        seen.prepared = int(await conn.scalar(PREPARED_HERE))
        await conn.rollback()


async def alternating(engine: AsyncEngine, neighbour: AsyncEngine, seen: Tried) -> None:
    """ALTERNATING executions on one connection, a transaction each; before every other
    one the neighbour holds the server connection just used, as in the lesson's repeated."""
    pids: set[int] = set()
    async with engine.connect() as conn:
        for i in range(1, ALTERNATING + 1):
            async with neighbour.connect() as other:
                if i % 2 == 0:
                    await other.execute(text("SELECT 1"))
                try:
                    row = (await conn.execute(one_statement(i))).one()
                    await conn.commit()
                except Exception as err:
                    await conn.rollback()
                    seen.outcome = f"execution {i} raised {describe(err)}"
                    break
            pids.add(row[1])
    seen.servers = len(pids)


async def try_engine(engine: AsyncEngine, bouncer: PgBouncer) -> Tried:
    """Everything ex1 judges, from new connections of ``engine``; closed after."""
    seen = Tried()
    # statement_cache_size=0: the neighbour's one SELECT is unnamed (lesson 13), so it
    # can never fail itself.
    neighbour = create_async_engine(bouncer.url(), poolclass=NullPool,
                                    connect_args={"statement_cache_size": 0})
    await engine.dispose()   # new connections: what the engine's settings make now
    try:
        try:
            await connection_facts(engine, seen)
        except Exception as err:  # the learner's engine: a hint, not a traceback
            seen.failure = err
            return seen
        if seen.psycopg_async and seen.port == bouncer.port:
            await alternating(engine, neighbour, seen)
    finally:
        await engine.dispose()
        await neighbour.dispose()
    return seen


async def ex1(answer: Any, *, bouncer: PgBouncer | None) -> None:
    """A psycopg async engine through PgBouncer (transaction pooling) that never prepares.

    The prompt's requirements, one rule each, judged on connections the check opens:

    1. ``ex1`` is an ``AsyncEngine``; PgBouncer is installed and running;
    2. a connection of it opens and runs the check's statement (its tables are found:
       ``execution_options=QUALIFY``);
    3. its driver connection is psycopg's ``AsyncConnection``;
    4. it is connected to PgBouncer's port;
    5. twelve executions of one statement, alternating PgBouncer's two server
       connections, all run;
    6. ten executions in one transaction leave nothing prepared on the server connection;
    7. the connection's ``prepare_threshold`` is ``None`` (a high threshold passes 5 and 6
       and still prepares on a busy day).

    Every route that sets it is accepted: ``connect_args``, a ``connect`` event listener,
    an ``async_creator``; AUTOCOMMIT too, which the prompt does not forbid.
    """
    engine_rule = (lambda e: isinstance(e, AsyncEngine),
                   "ex1 should be an AsyncEngine, made with create_async_engine(...).")
    if unanswered(1, answer, engine_rule[1]):
        return
    running = (lambda e: bouncer is not None and bouncer.running,
               "This exercise needs the notebook's PgBouncer running: install pgbouncer (see "
               "lesson 13), or, if the cell after this exercise stopped it, run "
               "`await bouncer.start()` first.")
    if not (engine_rule[0](answer) and running[0](answer)):
        check(1, answer, plain(1, answer), engine_rule, running)
        return
    assert bouncer is not None
    seen = await try_engine(answer, bouncer)
    failed: tuple[Any, ...] = ()
    if seen.failure is not None:
        hint = ("Its statements did not find the tables: keep execution_options=QUALIFY, as "
                "the exercise asks." if seen.missing_table else
                "Make sure ex1 connects through PgBouncer with psycopg, as the cell in "
                "'Behind PgBouncer' does.")
        failed = (unavailable("Opening a connection of ex1 and running a query",
                              seen.failure, hint),)
    check(1, answer, plain(1, answer), engine_rule, running, *failed,
          (lambda e: seen.psycopg_async,
           "Its connections are not psycopg's: use the postgresql+psycopg driver "
           "(psycopg_url() makes that URL from bouncer.url())."),
          (lambda e: seen.port == bouncer.port,
           f"Its connection goes to port {seen.port}, not to PgBouncer's ({bouncer.port}): "
           "start from bouncer.url()."),
          (lambda e: seen.outcome is None and seen.servers >= 2,
           f"Twelve executions of one statement, alternating PgBouncer's server connections: "
           f"{seen.outcome or f'they used {seen.servers} server connection(s)'}. psycopg "
           "still prepares statements that run often."),
          (lambda e: seen.prepared == 0,
           f"Ten executions of one statement in one transaction left {seen.prepared} "
           "prepared statement(s) on the server connection: psycopg still prepares."),
          (lambda e: seen.threshold is None,
           f"Its psycopg connections have prepare_threshold={seen.threshold!r}: they still "
           "prepare a statement once it has run that often, which only takes longer to "
           "fail. Turn preparing off."))


#: The number written into SQL text, not as part of a longer number or a $1-style placeholder.
def pasted(number: int) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w$%]){number}(?!\d)")


def as_rows(answer: Any) -> list[tuple[Any, ...]] | None:
    """``answer`` as a list of plain tuples; None if it is not a list of rows."""
    if not isinstance(answer, list | tuple):
        return None
    try:
        return [tuple(row) for row in answer]
    except TypeError:
        return None


def ex2(answer: Any, *, log: QueryLog, engine: AsyncEngine, data: Dataset,
        volume: int) -> None:
    """The volume lookup made to work on asyncpg, the number still a bound parameter.

    ``log`` is the scaffold's ``capture_sql`` on ``engine``. The prompt's requirements:

    1. ``ex2`` is a list of ``(id, title)`` rows;
    2. they are the books whose title ends in ``vol. N``, by id (from the seeded data);
    3. statements ran on ``engine`` inside the block, and ``engine`` is asyncpg's;
    4. a statement on ``book`` carried the number in a bound parameter (an ``int``, a
       ``str``, or a pattern that holds it) and ran to the end on ``engine``, so the
       filtering happened in SQL, on asyncpg;
    5. no statement has the number written into its SQL text.
    """
    shape = "ex2 should be the list of (id, title) rows the lookup returns."
    if unanswered(2, answer, shape):
        return
    suffix = f"vol. {volume}"
    expected = sorted((b["id"], b["title"]) for b in data.books if b["title"].endswith(suffix))
    got = as_rows(answer)
    # A statement that raised has no end time: a lookup that failed on asyncpg (and was
    # answered elsewhere) does not count.
    carried = [s for s in log.statements if "book" in s.sql.lower() and s.ended is not None
               and any(str(volume) in str(v) for v in bound_values(s.params))]
    written = [s for s in log.statements if pasted(volume).search(s.sql)]
    extra = [row for row in got or [] if row not in expected]
    check(2, answer, plain(2, answer),
          (lambda a: got is not None and all(len(row) == 2 for row in got), shape),
          (lambda a: not extra,
           f"ex2 has rows that are not books ending in '{suffix}' (such as "
           f"{extra[0] if extra else ''}): match '{suffix}' at the end of the title, as "
           "VOLUME does."),
          (lambda a: got == expected,
           f"ex2 should hold {len(expected)} row(s), the books whose title ends in "
           f"'{suffix}', ordered by id; it holds {len(got or [])}."),
          (lambda a: log.count > 0,
           "Nothing ran on engine inside the capture_sql block: run the lookup there, on the "
           "asyncpg engine (pg_engine would not need a fix)."),
          (lambda a: engine.dialect.driver == "asyncpg",
           f"engine is {engine.dialect.driver}'s now: the exercise is about asyncpg, the "
           "notebook's engine."),
          (lambda a: not written,
           f"The number {volume} is written into the SQL text: keep it a bound parameter and "
           "give it the right type instead."),
          (lambda a: carried,
           f"No statement on book that ran on engine without an error carried {volume} in a "
           "bound parameter: filter in SQL on the asyncpg engine, with the number as a "
           "parameter of the type the SQL expects."))
