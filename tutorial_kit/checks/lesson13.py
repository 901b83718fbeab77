"""Checks for 13 · PgBouncer.

Exercise 1 reads the outcomes of ``two_transactions`` from the scaffold, then checks
the learner's engine out once itself: the statement name on the server, whether the
connection is in autocommit, and the name function it was given (read from the
``do_connect`` event, where the connect arguments pass), which it calls a few times to
see whether another worker process could make the same names. Exercise 2 reads the
scaffold's ``capture_sql`` log.
"""

from __future__ import annotations

import os
import select
import signal
import warnings
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.exercises import check, describe, unanswered
from tutorial_kit.pgbouncer import PgBouncer
from tutorial_kit.sql_capture import QueryLog

#: How asyncpg names a statement when nothing else names it: a per-process counter.
COUNTER_NAME = "__asyncpg_stmt_"
#: The name of this very query on the server (None when it is unnamed).
OWN_NAME = text("SELECT name FROM pg_prepared_statements WHERE statement LIKE "
                "'%pg_prepared_state%' AND prepare_time >= now()")
#: Characters in which two names in a row must differ: a random part (a uuid has 32),
#: not a counter, a clock reading or a process id, which another worker repeats.
RANDOM_PART = 12
#: Names made on each side of a fork, and how long the child may take to make them.
FORKED_NAMES, FORK_WAIT = 3, 5.0


def forked_names(func: Callable[[], Any]) -> tuple[list[str], list[str]] | None:
    """(names ``func`` makes here, names it makes in a child process forked from here).

    A forked worker (``multiprocessing``, a server that forks its workers) starts with
    this process's state: a seeded generator, a counter, a prefix drawn once, a hash of
    a counter all make the same names there. ``None`` where there is no fork (Windows)
    or the child did not answer in time.
    """
    if not hasattr(os, "fork"):
        return None
    read, write = os.pipe()
    with warnings.catch_warnings():   # the kernel's threads: the child only calls func
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:   # the child: names, then out at once, running nothing of the parent's
        try:
            os.close(read)
            os.write(write, "\n".join(str(func()) for _ in range(FORKED_NAMES)).encode())
        finally:
            os._exit(0)
    os.close(write)
    ready: list[int] = []
    try:
        here = [str(func()) for _ in range(FORKED_NAMES)]
        ready, _, _ = select.select([read], [], [], FORK_WAIT)
        there = os.read(read, 1 << 16).decode().split("\n") if ready else None
    finally:
        os.close(read)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return (here, there) if there is not None else None


async def checked_out(engine: AsyncEngine) -> tuple[Callable[[], Any] | None, Any, bool]:
    """(the name function the engine connects with, the name of a query on the server,
    whether the connection is in autocommit), from one new connection, closed after."""
    cparams: dict[str, Any] = {}

    def connect_args(dialect: Any, record: Any, cargs: Any, params: dict[str, Any]) -> None:
        cparams.update(params)

    await engine.dispose()   # a new connection, so do_connect fires
    event.listen(engine.sync_engine, "do_connect", connect_args)
    try:
        async with engine.connect() as conn:
            name = await conn.scalar(OWN_NAME)
            raw = await conn.get_raw_connection()
            autocommit = bool(raw.dbapi_connection.autocommit)
    finally:
        event.remove(engine.sync_engine, "do_connect", connect_args)
        await engine.dispose()
    return cparams.get("prepared_statement_name_func"), name, autocommit


def common_start(a: str, b: str) -> int:
    """How many characters ``a`` and ``b`` share from their start."""
    pairs = enumerate(zip(a, b, strict=False))
    return next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))


def differing(names: list[str]) -> int:
    """The fewest characters in which two names in a row differ (common ends left out)."""
    fewest = None
    for a, b in pairwise(names):
        head = common_start(a, b)
        tail = common_start(a[head:][::-1], b[head:][::-1])
        width = max(len(a), len(b)) - head - tail
        fewest = width if fewest is None else min(fewest, width)
    return fewest or 0


async def ex1(answer: Any, *, bouncer: PgBouncer | None, outcome: str | None,
              many: str | None) -> None:
    """An engine through PgBouncer whose statements are uniquely named and survive pooling.

    ``outcome`` and ``many`` are what ``two_transactions`` printed for the
    ``SELECT`` and the ``executemany()``. The prompt's requirements, one rule each:

    1. ``ex1`` is an ``AsyncEngine`` through PgBouncer;
    2. the scaffold tried it (a cell that raised leaves the outcomes ``None``);
    3. the ``SELECT`` survives two transactions; 4. so does the ``executemany()``;
    5. its statements run in transactions (not AUTOCOMMIT, where the lesson shows
       named statements failing);
    6. the statements the dialect prepares are named (read on the server by the check);
    7. not with asyncpg's per-process counter names;
    8. with names no other process can make: a name function whose names differ in a
       random part drawn for each name, not a counter, the clock or the process id, nor
       a prefix drawn once per process;
    9. a worker process forked from this one makes other names (a generator seeded with
       a constant, a hash or ``uuid5`` of a counter look random and repeat there).
    """
    through = (lambda e: isinstance(e, AsyncEngine) and bouncer is not None
               and e.url.port == bouncer.port,
               "ex1 should be an AsyncEngine made from bouncer.url(), so it goes through "
               "PgBouncer.")
    if unanswered(1, answer, through[1]):
        return
    func: Callable[[], Any] | None = None
    name: Any = None
    autocommit = False
    names: list[str] = []
    forked: tuple[list[str], list[str]] | None = None
    failure = ""
    if through[0](answer) and outcome is not None:
        try:
            func, name, autocommit = await checked_out(answer)
            names = [str(func()) for _ in range(4)] if callable(func) else []
            forked = forked_names(func) if callable(func) else None
        except Exception as err:  # a broken engine or name function: a hint, not a traceback
            failure = f"Checking out a connection of ex1 raised {describe(err)}. "
    check(1, answer, through,
          (lambda e: outcome is not None and many is not None,
           "The cell stopped before it tried the engine (ex1_outcome is None): run the whole "
           "cell without an error; the error it printed names what stopped it."),
          (lambda e: str(outcome).startswith("ok"),
           "The SELECT failed in the second transaction: a cache still hands out a statement "
           "prepared elsewhere."),
          (lambda e: str(many).startswith("ok"),
           "The executemany() failed in the second transaction: see the executemany column of "
           "the table in 'Fix 1: settings in connect_args'."),
          (lambda e: not failure and not autocommit,
           f"{failure}The engine runs in AUTOCOMMIT, where the section 'Statements outside a "
           "transaction: AUTOCOMMIT' shows named statements failing: keep its transactions."),
          (lambda e: name is not None,
           "Its statements are unnamed: the exercise asks for named statements with unique "
           "names (a name function)."),
          (lambda e: not str(name).startswith(COUNTER_NAME),
           "Its statements get asyncpg's per-process counter names; give them unique names."),
          (lambda e: len(set(names)) == len(names) > 0 and differing(names) >= RANDOM_PART,
           f"Names in a row from your name function ({', '.join(names[:2])}) differ in "
           f"{differing(names) if len(set(names)) > 1 else 0} character(s): only a counter, the "
           "clock or the process id changes from name to name, and another worker process can "
           "repeat them (one forked from this one keeps even a prefix drawn at random). Draw a "
           "random part for each name, such as uuid.uuid4()."),
          (lambda e: forked is None or not set(forked[0]) & set(forked[1]),
           f"A worker process forked from this one made the same names as this one "
           f"({forked[0][0] if forked else ''}): your name function's sequence is fixed (a "
           "seeded generator, a hash of a counter), so every worker repeats it. Draw each "
           "name from the operating system's randomness, such as uuid.uuid4()."))


def in_flight(log: QueryLog) -> int:
    """The most statements of ``log`` under way at one moment."""
    edges = sorted([(s.started, 1) for s in log.statements]
                   + [(s.ended or s.started, -1) for s in log.statements])
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def ex2(answer: Any, *, log: QueryLog, bouncer: PgBouncer | None) -> None:
    """12 backend pids from 12 concurrent clients, each on its own connection through PgBouncer.

    ``log`` is the scaffold's ``capture_sql`` on the ``safe`` engine. The prompt's
    requirements, one rule each:

    1. ``ex2`` holds 12 pids;
    2. 12 statements ran through ``safe``, one per client;
    3. each is the asked query, ``pg_backend_pid()`` after ``pg_sleep(0.05)``;
    4. each client had its own connection;
    5. they ran at the same time: more queries were under way at once than PgBouncer has
       server connections, so some waited in its queue;
    6. the pids are PgBouncer's few server connections.
    """
    asked = [s for s in log.sql() if "pg_backend_pid()" in s and "pg_sleep(0.05)" in s]
    pool = bouncer.pool_size if bouncer is not None else 0
    check(2, answer,
          (lambda v: isinstance(v, list) and len(v) == 12,
           "ex2 should be a list of 12 pids, one per client."),
          (lambda v: log.count == 12,
           f"{log.count} statement(s) ran through the safe engine: each of the 12 clients "
           "should run its own query there."),
          (lambda v: len(asked) == 12,
           "Each client should run SELECT pg_backend_pid() FROM pg_sleep(0.05), the query "
           "the exercise asks for."),
          (lambda v: len(log.connections()) == 12,
           f"The 12 queries ran on {len(log.connections())} connection(s): each client needs "
           "a connection of its own while the others hold theirs, so open one per task and "
           "run the tasks together."),
          (lambda v: in_flight(log) > pool,
           f"At most {in_flight(log)} queries were under way at once, no more than PgBouncer's "
           f"{pool} server connections: start all 12 clients together, with nothing limiting "
           "how many run."),
          (lambda v: bouncer is not None and len(set(v)) <= bouncer.pool_size,
           f"ex2 holds {len(set(answer)) if isinstance(answer, list) else 0} different pids, "
           f"more than PgBouncer's {pool} server connections, though the queries went through "
           "it: ex2 should hold what each query returned, the server's pg_backend_pid()."))
