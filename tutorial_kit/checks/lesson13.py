"""Checks for 13 · PgBouncer.

Both read what the scaffold's own code recorded (the outcomes of ``two_transactions``,
the statement name on the server, a ``capture_sql`` log), so neither runs a query.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.exercises import check
from tutorial_kit.pgbouncer import PgBouncer
from tutorial_kit.sql_capture import QueryLog

#: How asyncpg names a statement when nothing else names it: a per-process counter.
COUNTER_NAME = "__asyncpg_stmt_"


def ex1(answer: Any, *, bouncer: PgBouncer | None, outcome: str | None, many: str | None,
        name: str | None) -> None:
    """An engine through PgBouncer whose statements are uniquely named and survive pooling.

    ``outcome`` and ``many`` are what ``two_transactions`` printed for the
    ``SELECT`` and the ``executemany()``; ``name`` is the statement name the
    server saw (``None`` when the statements were unnamed).
    """
    check(1, answer,
          (lambda e: isinstance(e, AsyncEngine) and bouncer is not None
           and e.url.port == bouncer.port,
           "ex1 should be an AsyncEngine made from bouncer.url(), so it goes through "
           "PgBouncer."),
          (lambda e: name is not None,
           "Its statements are unnamed (statement_cache_size=0 alone): the exercise asks for "
           "named statements with unique names."),
          (lambda e: not str(name).startswith(COUNTER_NAME),
           "Its statements get asyncpg's per-process counter names; give them unique names."),
          (lambda e: str(outcome).startswith("ok"),
           "The SELECT failed in the second transaction: a cache still hands out a statement "
           "prepared elsewhere."),
          (lambda e: str(many).startswith("ok"),
           "The executemany() failed in the second transaction: see the executemany column of "
           "the table in 'Fix 1: settings in connect_args'."))


def ex2(answer: Any, *, log: QueryLog, bouncer: PgBouncer | None) -> None:
    """12 backend pids from 12 concurrent clients, each on its own connection through PgBouncer.

    ``log`` is the scaffold's ``capture_sql`` on the ``safe`` engine.
    """
    check(2, answer,
          (lambda v: len(v) == 12, "ex2 should hold 12 pids, one per client."),
          (lambda v: log.count == 12,
           "Run the 12 queries through the safe engine (it goes through PgBouncer)."),
          (lambda v: len(log.connections()) == 12,
           "Each client needs its own connection: open one per task."),
          (lambda v: log.overlapped(), "The clients ran one after another; run them at once."),
          (lambda v: bouncer is not None and len(set(v)) <= bouncer.pool_size,
           "More backends than PgBouncer's pool: did the queries go through PgBouncer?"))
