"""Checks for 13 · PgBouncer.

Exercise 1 reads the outcomes of ``two_transactions`` from the scaffold, then checks
the learner's engine out once itself: the statement name on the server, whether the
connection is in autocommit, and the name function it was given (read from the
``do_connect`` event, where the connect arguments pass), which it calls 1000 times to
see whether another worker process could make the same names and how many random bits
they carry. Exercise 2 reads the scaffold's ``capture_sql`` log.
"""

from __future__ import annotations

import math
import os
import re
import select
import signal
import warnings
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from itertools import pairwise
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.exercises import check, describe, unanswered
from tutorial_kit.pgbouncer import PgBouncer
from tutorial_kit.sql_capture import QueryLog, Statement

#: How asyncpg names a statement when nothing else names it: a per-process counter.
COUNTER_NAME = "__asyncpg_stmt_"
#: The name of this very query on the server (None when it is unnamed).
OWN_NAME = text("SELECT name FROM pg_prepared_statements WHERE statement LIKE "
                "'%pg_prepared_state%' AND prepare_time >= now()")
#: Names the check makes in a row with the learner's name function; the first IN_A_ROW
#: must all differ (32 random bits repeat within 200 names about once in 200 000 runs).
NAMES, IN_A_ROW = 1000, 200
#: The random bits the prompt asks for, and the slack of the estimate (``random_bits``):
#: in 1000 names a position shows every one of 16 values (hex) but with odds below
#: 1e-25, and misses one of 64 (base64) about once in 10^5 runs, which costs 0.02 bit.
#: Half a bit keeps exactly 32 random bits passing; 31 still fail.
BITS, BITS_SLACK = 32, 0.5
#: At most this share of names in a row may begin their varying part alike: a counter or
#: a clock changes its low digits from name to name and keeps its leading one (about 9
#: pairs in 10 share it); a random part drawn for each name begins with a new character
#: in all but about 1 pair in 16 (hex) or 10 (digits), and reaching one half by chance
#: is beyond any run's odds (below 1e-30 for 199 pairs), so the verdict never flips.
SEQUENTIAL = 0.5
#: ``pg_sleep``'s argument in the asked query, written in the SQL or bound as a parameter.
SLEEP = re.compile(r"pg_sleep\(\s*0*\.050*\s*(::\w+)?\s*\)")
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


def random_bits(names: list[str]) -> float:
    """An estimate of the random bits in ``names``, from what varies between them.

    The prefix and the suffix all names share are cut off; in what is left, each character
    position (counted from its start, so that names of different lengths line up as
    numbers without leading zeros do) adds log2 of the number of different characters the
    names have there. One hex digit drawn for each name shows its 16 values in 1000 names
    (4 bits); a fixed character adds nothing, and a uuid4's version digit neither. It
    counts what varies, not how: a counter's digits add bits too, which is why a counter,
    a clock and a seeded generator are refused by the rules before this one.
    """
    def shared_start(texts: list[str]) -> int:
        """How many leading characters all of ``texts`` share."""
        return next((i for i, column in enumerate(zip(*texts, strict=False))
                     if len(set(column)) > 1),
                    min(map(len, texts), default=0))

    rest = [name[shared_start(names):] for name in names]
    suffix = shared_start([r[::-1] for r in rest])
    varying = [r[:len(r) - suffix] for r in rest]
    longest = max(map(len, varying), default=0)
    return sum(math.log2(len({v[i] for v in varying if len(v) > i})) for i in range(longest))


def sequential(names: list[str]) -> float:
    """The share of names in a row whose varying part begins with the same character.

    The varying part is what follows the prefix nine names in ten share (all of them but
    for a rare odd one, such as ``str(random.random())`` printed as ``8.5e-05``). A counter,
    a clock reading (``time_ns()``, ``uuid1()``) or a counter after a process id keeps its
    leading digit from one name to the next; a random part drawn for each name does not.
    """
    head = 0
    while shared := Counter(n[:head + 1] for n in names if len(n) > head).most_common(1):
        if shared[0][1] < 0.9 * len(names):
            break
        head += 1
    pairs = list(pairwise(n[head:head + 1] for n in names))
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else 1.0


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
    8. with names no other process can make: 200 names in a row from the name function
       are all different (a process id, a prefix drawn once repeat), and they are not a
       sequence: the part after their common prefix does not keep its first character
       from one name to the next, as a counter or a clock reading does (``sequential``);
    9. a worker process forked from this one makes other names (a generator seeded with
       a constant, a hash or ``uuid5`` of a counter look random and repeat there);
    10. the names carry 32 random bits or more: estimated from 1000 names by what varies
        at each character position (``random_bits``), so ``uuid4().hex[:6]`` (24 bits)
        is refused and ``os.urandom(4).hex()`` (exactly 32) passes.

    Told apart on purpose: a random part that comes after a counter or a clock reading
    (``f"{time.time_ns()}_{uuid4()}"``) is refused, because the names then are a
    sequence; the prompt asks for the random part first, after any fixed prefix.
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
            names = [str(func()) for _ in range(NAMES)] if callable(func) else []
            forked = forked_names(func) if callable(func) else None
        except Exception as err:  # a broken engine or name function: a hint, not a traceback
            failure = f"Checking out a connection of ex1 raised {describe(err)}. "
    check(1, answer, through,
          (lambda e: outcome is not None and many is not None,
           "The cell stopped before it tried the engine (ex1_outcome is None): run the whole "
           "cell without an error; the error it printed names what stopped it."),
          (lambda e: failure or not autocommit,
           "The engine runs in AUTOCOMMIT, where the section 'Statements outside a "
           "transaction: AUTOCOMMIT' shows named statements failing: keep its transactions."),
          (lambda e: str(outcome).startswith("ok"),
           "The SELECT failed in the second transaction: a cache still hands out a statement "
           "prepared elsewhere."),
          (lambda e: str(many).startswith("ok"),
           "The executemany() failed in the second transaction: see the executemany column of "
           "the table in 'Fix 1: settings in connect_args'."),
          (lambda e: not failure,
           f"{failure}The check could not check out a connection of ex1 to read its "
           "statement names: make sure the engine connects on its own, after the cell."),
          (lambda e: name is not None,
           "Its statements are unnamed: the exercise asks for named statements with unique "
           "names (a name function)."),
          (lambda e: not str(name).startswith(COUNTER_NAME),
           "Its statements get asyncpg's per-process counter names; give them unique names."),
          (lambda e: len(set(names[:IN_A_ROW])) == len(names[:IN_A_ROW]) > 0,
           f"Your name function made only {len(set(names[:IN_A_ROW]))} different name(s) in "
           f"{len(names[:IN_A_ROW])} calls ({', '.join(names[:2])}): a name that repeats in this "
           "process (a process id, a prefix drawn once, a short random part) repeats in "
           "another one too. Draw a random part of 32 bits or more for each name, such as "
           "uuid.uuid4()."),
          (lambda e: sequential(names) < SEQUENTIAL,
           f"Names in a row from your name function ({', '.join(names[:3])}) form a "
           "sequence: their varying part keeps its first character from one name to the "
           "next, as a counter or a clock reading does, and another worker process can make "
           "the same ones. Begin the varying part with a random part drawn for each name, "
           "such as uuid.uuid4()."),
          (lambda e: forked is None or not set(forked[0]) & set(forked[1]),
           f"A worker process forked from this one made the same names as this one "
           f"({forked[0][0] if forked else ''}): your name function's sequence is fixed (a "
           "seeded generator, a hash of a counter), so every worker repeats it. Draw each "
           "name from the operating system's randomness, such as uuid.uuid4()."),
          (lambda e: random_bits(names) >= BITS - BITS_SLACK,
           f"Your names carry about {random_bits(names):.0f} random bits: that is what varies "
           f"between {len(names)} of them ({', '.join(names[:2])}), counted character by "
           f"character. The exercise asks for {BITS} or more: draw a longer random part for "
           "each name, such as uuid.uuid4().hex."))


def in_flight(log: QueryLog) -> int:
    """The most statements of ``log`` under way at one moment."""
    edges = sorted([(s.started, 1) for s in log.statements]
                   + [(s.ended or s.started, -1) for s in log.statements])
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def asked_query(statement: Statement) -> bool:
    """Whether ``statement`` selects ``pg_backend_pid()`` after ``pg_sleep(0.05)``.

    The 0.05 may be in the SQL (``text()``) or bound as a parameter (``func.pg_sleep(0.05)``
    in a Core ``select``): both ask the server the same thing.
    """
    sql = statement.sql
    if "pg_backend_pid()" not in sql or "pg_sleep(" not in sql:
        return False
    params = statement.params
    values = (params.values() if isinstance(params, dict)
              else params if isinstance(params, (list, tuple)) else ())
    bound = any(isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)
                and float(v) == 0.05 for v in values)
    return bool(SLEEP.search(sql)) or (bound and len(values) == 1)


def ex2(answer: Any, *, log: QueryLog, bouncer: PgBouncer | None) -> None:
    """12 backend pids from 12 concurrent clients, each on its own connection through PgBouncer.

    ``log`` is the scaffold's ``capture_sql`` on the ``safe`` engine. The prompt's
    requirements, one rule each:

    1. ``ex2`` holds 12 pids;
    2. 12 statements ran through ``safe``, one per client;
    3. each is the asked query, ``pg_backend_pid()`` after ``pg_sleep(0.05)`` (the 0.05
       written in the SQL or bound as a parameter, ``asked_query``);
    4. each client had its own connection;
    5. they ran at the same time: more queries were under way at once than PgBouncer has
       server connections, so some waited in its queue;
    6. the pids are PgBouncer's few server connections.
    """
    asked = [s for s in log.statements if asked_query(s)]
    pool = bouncer.pool_size if bouncer is not None else 0
    check(2, answer,
          (lambda v: isinstance(v, list) and len(v) == 12,
           "ex2 should be a list of 12 pids, one per client."),
          (lambda v: log.count == 12,
           f"{log.count} statement(s) ran through the safe engine: each of the 12 clients "
           "should run its own query there."),
          (lambda v: len(asked) == 12,
           f"{len(asked)} of the statements select pg_backend_pid() after pg_sleep(0.05): "
           "each client should run SELECT pg_backend_pid() FROM pg_sleep(0.05), the query "
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
