"""Checks for 14 · Timeouts and failures.

Both read what the scaffold recorded while the learner's code ran (the statements, the
time, the outcome of ``query_once``), so neither runs a query.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from tutorial_kit.exercises import check
from tutorial_kit.measure import Timing
from tutorial_kit.sql_capture import QueryLog


def ex1(answer: Any, *, seen: list[str], time: Timing, log: QueryLog) -> None:
    """42 from ``SELECT 42`` in the same session, after a time-boxed ``pg_sleep(3)``.

    ``seen`` is the SQL that ran through ``ex1_session``, ``time`` the cell's
    duration and ``log`` every statement sent on the engine.
    """
    check(1, answer,
          (lambda v: v == 42, "ex1 should be the 42 that SELECT 42 returns."),
          (lambda v: any("pg_sleep(3)" in s for s in seen),
           "Run SELECT pg_sleep(3) in ex1_session first."),
          (lambda v: time.seconds < 1.5,
           "The cell took as long as the sleep: the timeout should give up after 0.2 s."),
          (lambda v: log.count == 2,
           "Exactly two statements should run: use asyncio.timeout, not a server setting."),
          (lambda v: any("42" in s for s in seen),
           "SELECT 42 should run in ex1_session itself, after making it usable again."))


def ex2(answer: Any, *, report: str | None) -> None:
    """A pooled engine whose first query after its connections were dropped succeeds.

    ``report`` is what ``query_once`` returned after ``drop_pooled_connections``.
    """
    check(2, answer,
          (lambda e: isinstance(e, AsyncEngine), "ex2 should be an AsyncEngine."),
          (lambda e: not isinstance(e.pool, NullPool),
           "Keep a pool: with NullPool there is nothing to drop, and every query pays a "
           "connect."),
          (lambda e: str(report).startswith("ok"),
           "The first query after the drop failed: have the pool test connections at "
           "checkout."))
