"""Checks for 16 · Choosing the driver.

Exercise 1 tries the learner's engine itself, through the notebook's PgBouncer: two new
connections, one after the other (a setting made on the pool's first connection only, or
on one pooled connection by hand, shows on the second), each read for its driver, port and
psycopg's ``prepare_threshold``, and asked what its server connection prepared while one
statement ran ten times and one ``executemany()`` ran, in a transaction rolled back; then
twelve executions of one statement that alternate between PgBouncer's two server
connections. Exercise 2 reads the scaffold's ``watch`` of the asyncpg engine, compares the
rows with the seeded data, and runs the statements that carried the number again after
swapping two books' titles, in a transaction it rolls back: a lookup that finds the book by
its id (equal to its volume number in the seeded data) returns the wrong book there.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tutorial_kit.checks.evidence import (
    Watched,
    bound_values,
    closed,
    plain,
    sql_code,
    unrecorded,
    watch,
)
from tutorial_kit.exercises import check, describe, unanswered, unavailable
from tutorial_kit.models import Author
from tutorial_kit.pgbouncer import PgBouncer
from tutorial_kit.seed import Dataset

__all__ = ["ex1", "ex2", "watch"]

#: Executions of one statement in one transaction: more than psycopg's default threshold (5).
IN_ONE_TRANSACTION = 10
#: Executions of one statement, one transaction each, alternating server connections.
ALTERNATING = 12
#: New connections ex1 is read on: a setting that reaches only one of them shows.
CONNECTIONS = 2
#: Seconds to wait for PgBouncer's two server connections (another client may hold one).
CLEAN_WAIT = 5.0
#: Named statements the server connection prepared since ``:since`` (psycopg's
#: protocol-level ones have from_sql = false).
PREPARED_SINCE = text("SELECT count(*) FROM pg_prepared_statements "
                      "WHERE NOT from_sql AND prepare_time >= :since")
#: One ``executemany()``: an UPDATE with two parameter sets that changes nothing, so it
#: leaves the data as it was in any isolation level (AUTOCOMMIT included).
UNCHANGED = update(Author).where(Author.id == bindparam("key")).values(name=Author.name)


@dataclass
class Tried:
    """What the check saw of the learner's engine, or the error that stopped it."""

    psycopg_async: list[bool] = field(default_factory=list)
    ports: list[int | None] = field(default_factory=list)
    thresholds: list[Any] = field(default_factory=list)
    #: Per connection: statements prepared by the ten executions, then by the executemany().
    by_execute: list[int] = field(default_factory=list)
    by_executemany: list[int] = field(default_factory=list)
    prepare_error: str | None = None  # psycopg tried to prepare and the server refused
    failure: Exception | None = None   # gathering the connection's facts raised otherwise
    missing_table: bool = False
    outcome: str | None = None  # the alternating run: None when every execution ran
    servers: int = 0


def one_statement(author_id: int) -> Any:
    """The statement the check runs again and again (qualified by the engine's QUALIFY)."""
    return select(Author.name, func.pg_backend_pid()).where(Author.id == author_id)


async def prepared_since(conn: AsyncConnection, since: Any) -> int:
    return int(await conn.scalar(PREPARED_SINCE, {"since": since}))


async def statements_prepared(conn: AsyncConnection, seen: Tried) -> None:
    """Ten executions of one statement, then one executemany(), and after each what the
    server connection prepared; rolled back."""
    since = await conn.scalar(select(func.clock_timestamp()))
    try:
        for _ in range(IN_ONE_TRANSACTION):
            await conn.execute(one_statement(1))
        seen.by_execute.append(await prepared_since(conn, since))
        await conn.execute(UNCHANGED, [{"key": 1}, {"key": 2}])
        seen.by_executemany.append(await prepared_since(conn, since) - seen.by_execute[-1])
    except Exception as err:
        await conn.rollback()
        if "prepared statement" in str(err):   # _pg3_N already exists / does not exist
            seen.prepare_error = describe(err)
            return
        seen.missing_table = "does not exist" in str(err) and "relation" in str(err)
        raise
    await conn.rollback()


async def deallocate_everywhere(neighbour: AsyncEngine) -> None:
    """Remove every prepared statement from PgBouncer's two server connections: the lesson's
    table, earlier tries and psycopg's rollbacks (whose ``DEALLOCATE ALL`` runs after the
    ``ROLLBACK``, on whichever server connection PgBouncer lends) leave ``_pg3_N`` names
    there, which a new psycopg connection would collide with. Two transactions held at once
    get one server connection each; prepared statements are not transactional."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLEAN_WAIT), \
                neighbour.connect() as first, neighbour.connect() as second:
            for conn in (first, second):
                await conn.execute(text("DEALLOCATE ALL"))


async def connection_facts(engine: AsyncEngine, bouncer: PgBouncer, neighbour: AsyncEngine,
                           seen: Tried) -> None:
    """Driver, port and prepare_threshold of CONNECTIONS new connections, one after the
    other, and on each what its server connection prepared."""
    for _ in range(CONNECTIONS):
        await deallocate_everywhere(neighbour)
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            is_psycopg = isinstance(driver, psycopg.AsyncConnection)
            seen.psycopg_async.append(is_psycopg)
            seen.ports.append(driver.info.port if is_psycopg else None)
            seen.thresholds.append(driver.prepare_threshold if is_psycopg else None)
            if is_psycopg and driver.info.port == bouncer.port:
                await statements_prepared(conn, seen)
            await conn.invalidate()   # the next connect() opens a new driver connection


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
            await connection_facts(engine, bouncer, neighbour, seen)
        except Exception as err:  # the learner's engine: a hint, not a traceback
            seen.failure = err
            return seen
        if all(seen.psycopg_async) and set(seen.ports) == {bouncer.port}:
            await deallocate_everywhere(neighbour)
            await alternating(engine, neighbour, seen)
    finally:
        await engine.dispose()
        await neighbour.dispose()
    return seen


def _prepared_hint(seen: Tried) -> str:
    if seen.prepare_error is not None:
        return (f"Running one statement ten times and one executemany() on a new connection "
                f"of ex1 raised {seen.prepare_error}: psycopg prepared a statement there.")
    if any(seen.by_execute):
        return (f"Ten executions of one statement in one transaction left {seen.by_execute} "
                "prepared statement(s) on the server connections of two new connections of "
                "ex1: psycopg still prepares.")
    return (f"One executemany() (two parameter sets) left {seen.by_executemany} prepared "
            "statement(s) on the server connections of two new connections of ex1: psycopg "
            "still prepares.")


async def ex1(answer: Any, *, bouncer: PgBouncer | None) -> None:
    """A psycopg async engine through PgBouncer (transaction pooling) that never prepares.

    The prompt's requirements, one rule each, judged on connections the check opens:

    1. ``ex1`` is an ``AsyncEngine``; PgBouncer is installed and running;
    2. its connections open and run the check's statements (its tables are found:
       ``execution_options=QUALIFY``);
    3. their driver connections are psycopg's ``AsyncConnection``;
    4. they are connected to PgBouncer's port;
    5. twelve executions of one statement, alternating PgBouncer's two server
       connections, all run;
    6. on each of two new connections, ten executions of one statement and one
       ``executemany()`` in one transaction leave nothing prepared on the server connection
       (psycopg prepares an ``executemany()`` at once whatever its threshold);
    7. each of the two connections has ``prepare_threshold=None``, as the prompt asks.

    Every route that sets it on every connection is accepted: ``connect_args``, a
    ``connect`` event listener, an ``async_creator``; AUTOCOMMIT too, which the prompt does
    not forbid.
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
    in_url = answer.url.query.get("prepare_threshold")
    if seen.failure is not None:
        hint = ("Its statements did not find the tables: keep execution_options=QUALIFY, as "
                "the exercise asks." if seen.missing_table else
                f"Its URL has prepare_threshold={in_url!r} in its query, so psycopg gets the "
                "text, which it compares with a count." if in_url is not None else
                "Make sure ex1 connects through PgBouncer with psycopg, as the cell in "
                "'Behind PgBouncer' does.")
        failed = (unavailable("Opening a connection of ex1 and running a query",
                              seen.failure, hint),)
    wrong_port = next((p for p in seen.ports if p != bouncer.port), None)
    check(1, answer, plain(1, answer), engine_rule, running, *failed,
          (lambda e: all(seen.psycopg_async),
           "Its connections are not psycopg's: use the postgresql+psycopg driver "
           "(psycopg_url() makes that URL from bouncer.url())."),
          (lambda e: wrong_port is None,
           f"Its connection goes to port {wrong_port}, not to PgBouncer's ({bouncer.port}): "
           "start from bouncer.url()."),
          (lambda e: seen.prepare_error is None and not any(seen.by_execute)
           and not any(seen.by_executemany), _prepared_hint(seen)),
          (lambda e: seen.outcome is None and seen.servers >= 2,
           f"Twelve executions of one statement, alternating PgBouncer's server connections: "
           f"{seen.outcome or f'they used {seen.servers} server connection(s)'}. psycopg "
           "still prepares statements that run often."),
          (lambda e: all(t is None for t in seen.thresholds),
           f"Two new connections of ex1 had prepare_threshold {seen.thresholds}: the exercise "
           "asks for None on every connection the engine opens. With a number there, "
           "psycopg prepares every executemany() at once."))


#: The number written into SQL text, not as part of a longer number or a $1-style placeholder.
def pasted(number: int) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w$%]){number}(?!\d)")


ORDER_BY = re.compile(r"\border\s+by\b", re.I)


def as_rows(answer: Any) -> list[tuple[Any, ...]] | None:
    """``answer`` as a list of plain tuples; None if it is not a list of rows."""
    if not isinstance(answer, list | tuple):
        return None
    try:
        return [tuple(row) for row in answer]
    except TypeError:
        return None


def swapped_titles(data: Dataset, suffix: str) -> dict[int, str]:
    """Each book whose title ends in ``suffix`` trades titles with a book whose title does
    not (the first such books by id): ids that equal volume numbers no longer do."""
    titles = {b["id"]: b["title"] for b in data.books}
    matching = sorted(i for i, t in titles.items() if t.endswith(suffix))
    others = sorted(i for i, t in titles.items() if not t.endswith(suffix))
    swap: dict[int, str] = {}
    for mine, other in zip(matching, others, strict=False):
        swap[mine], swap[other] = titles[other], titles[mine]
    return swap


def finds(rows: list[tuple[Any, ...]], expected: list[tuple[int, str]]) -> bool:
    """True if ``rows`` are the ``expected`` books, in order (other columns allowed)."""
    return len(rows) == len(expected) and all(
        book_id in row and title in row
        for row, (book_id, title) in zip(rows, expected, strict=True))


async def rerun(engine: AsyncEngine, statements: list[Any], swap: dict[int, str]
                ) -> list[tuple[Any, list[tuple[Any, ...]] | str]]:
    """Each statement again, as the driver got it, with the titles in ``swap`` in place, in
    a transaction rolled back: its rows, or the error it raised."""
    results: list[tuple[Any, list[tuple[Any, ...]] | str]] = []
    async with engine.connect() as conn:
        await conn.execute(text("UPDATE book SET title = :title WHERE id = :id"),
                           [{"id": i, "title": t} for i, t in swap.items()])
        for stmt in statements:
            params = stmt.params
            if isinstance(params, list):
                params = tuple(params)
            try:
                async with conn.begin_nested():
                    got = await conn.exec_driver_sql(stmt.sql, params)
                    results.append((stmt, [tuple(r) for r in got]))
            except Exception as err:  # the learner's SQL: what it raised is the evidence
                results.append((stmt, describe(err)))
        await conn.rollback()
    return results


async def ex2(answer: Any, *, log: Watched, engine: AsyncEngine, data: Dataset,
              volume: int) -> None:
    """The volume lookup made to work on asyncpg, the number still a bound parameter.

    ``log`` is the scaffold's ``watch`` on ``engine``. The prompt's requirements:

    1. ``ex2`` is a list of ``(id, title)`` rows;
    2. they are the books whose title ends in ``vol. N``, by id (from the seeded data);
    3. statements ran on ``engine`` inside the block, and ``engine`` is asyncpg's;
    4. no statement has the number written into its SQL text;
    5. a statement on ``book`` carried the number in a bound parameter (an ``int``, a
       ``str``, or a pattern that holds it) and ran to the end on ``engine``;
    6. that statement matches the end of the title, in SQL: run again with two books'
       titles swapped (rolled back), it returns the book that now has the title;
    7. it has an ``ORDER BY``, as "ordered by id" and the tutorial's rule ask;
    8. every connection the block opened is closed again.
    """
    shape = "ex2 should be the list of (id, title) rows the lookup returns."
    if unanswered(2, answer, shape) or unrecorded(2, log):
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
    swap = swapped_titles(data, suffix)
    after_swap = sorted((i, t) for i, t in
                        ({b["id"]: b["title"] for b in data.books} | swap).items()
                        if t.endswith(suffix))
    again = await rerun(engine, carried, swap) if carried else []
    by_title = [stmt for stmt, rows in again if isinstance(rows, list) and finds(rows, after_swap)]
    shown = next((rows for _stmt, rows in again), None)
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
           "Nothing ran on engine inside the watch block: run the lookup there, on the "
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
           "parameter of the type the SQL expects."),
          (lambda a: by_title,
           f"The check swapped the titles of books {sorted(swap)} (in a transaction it rolled "
           f"back) and ran your statement again: it returned {shown}, not the book whose "
           f"title now ends in '{suffix}' {after_swap}. Find the books by the end of their "
           "title, in the SQL."),
          (lambda a: any(ORDER_BY.search(sql_code(s.sql)) for s in by_title),
           "The statement that found the rows has no ORDER BY: the order of rows without "
           "one is the server's choice. Order them by id in the SQL, as the exercise asks."),
          closed(log, "connection"))
