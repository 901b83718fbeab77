"""Checks for 14 · Timeouts and failures.

Exercise 1 reads what the scaffold recorded while the learner's code ran (the
statements, the time). Exercise 2 also tries the learner's engine itself: it drops one
of its pooled connections again, with nothing of the learner's code in between, and
looks whether a second checkout reuses the first one's connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tutorial_kit.connection_slots import connection_slots
from tutorial_kit.exercises import check, describe, unanswered
from tutorial_kit.measure import Timing
from tutorial_kit.sql_capture import QueryLog

PID = text("SELECT pg_backend_pid()")
#: Waits (up to 10 s, for a busy server) until the backend is really gone.
TERMINATE = text("SELECT pg_terminate_backend(:pid, 10000)")
#: How long after pg_sleep(3) went out its await may end: 0.2 s asked, the rest is slack
#: for a busy machine (0.6 s would be too long). Measured to the moment the await was
#: cancelled, so the rollback and the new connection that follow do not count.
GAVE_UP_BY = 0.55


@dataclass(frozen=True)
class ErrorMet:
    """What a failing statement raised, and when (``time.perf_counter()``, as the log)."""

    error: BaseException
    statement: str
    at: float


@contextmanager
def errors_met(engine: AsyncEngine) -> Iterator[list[ErrorMet]]:
    """Record what each failing statement on ``engine`` raised inside the block, and when.

    Ex1's scaffold uses it: a client that gives up cancels the await
    (``CancelledError`` at the statement), a cancel asked of the server comes back
    as the server's error; nothing else tells the two apart afterwards. The time is
    taken as the error reaches SQLAlchemy, before any rollback or reconnect.
    """
    met: list[ErrorMet] = []

    def record(context: Any) -> None:
        met.append(ErrorMet(context.original_exception, str(context.statement or ""),
                            time.perf_counter()))

    event.listen(engine.sync_engine, "handle_error", record)
    try:
        yield met
    finally:
        event.remove(engine.sync_engine, "handle_error", record)


def ex1(answer: Any, *, seen: list[str], time: Timing, log: QueryLog,
        errors: list[ErrorMet] | None = None) -> None:
    """42 from ``SELECT 42`` in the same session, after a time-boxed ``pg_sleep(3)``.

    ``seen`` is the SQL that ran through ``ex1_session``, ``time`` the cell's
    duration, ``log`` every statement sent on the engine and ``errors`` what the
    failing statements raised (``errors_met``). The prompt's requirements, one rule each:

    1. ``ex1`` is 42;
    2. ``SELECT pg_sleep(3)`` ran in ``ex1_session``;
    3. the cell took far less than the sleep;
    4. ``SELECT 42`` ran in ``ex1_session`` after the sleep, so the session was made
       usable again (without that, it raises ``PendingRollbackError``);
    5. no server setting or other query did the work: those two are the only
       statements sent on the engine;
    6. the client gave up after about 0.2 s: the sleep's await ended (the error it met,
       ``errors``) within ``GAVE_UP_BY`` of its start (the next statement's start when
       no error was recorded);
    7. the client gave up, not the server: the sleep's await was cancelled
       (``CancelledError`` at the statement), not ended by the server's error (a
       ``pg_cancel_backend`` sent from another engine).

    Accepted alike, because no check can tell them apart (each cancels the await on
    the client after 0.2 s, the ``TimeoutError`` exists only in the learner's code):
    ``asyncio.timeout``, ``timeout_at``, ``wait_for``, and a task cancelled by hand
    after ``asyncio.sleep(0.2)``. The prompt says so.
    """
    sleep = next((i for i, s in enumerate(seen) if "pg_sleep(3)" in s), None)
    after = [s for s in seen[sleep + 1:] if "42" in s] if sleep is not None else []
    others = [s for s in log.sql() if "pg_sleep(3)" not in s and "42" not in s]
    sent = log.statements
    slept = next((i for i, s in enumerate(sent) if "pg_sleep(3)" in s.sql), None)
    ended = next((m.at for m in errors or [] if "pg_sleep(3)" in m.statement), None)
    if ended is None and slept is not None and slept + 1 < len(sent):
        ended = sent[slept + 1].started
    waited = ended - sent[slept].started if slept is not None and ended is not None else None
    met = [m.error for m in errors or []]
    cancelled = any(isinstance(e, asyncio.CancelledError) for e in met)
    server = next((e for e in met if not isinstance(e, asyncio.CancelledError)), None)
    check(1, answer,
          (lambda v: v == 42, "ex1 should be the 42 that SELECT 42 returns."),
          (lambda v: sleep is not None, "Run SELECT pg_sleep(3) in ex1_session first."),
          (lambda v: time.seconds < 1.5,
           f"The cell took {time.seconds:.1f} s, as long as the sleep: give up on the client "
           "after 0.2 s with asyncio.timeout."),
          (lambda v: bool(after),
           "SELECT 42 should run in ex1_session itself, after the timed-out pg_sleep(3): "
           "make the session usable again, then run it there."),
          (lambda v: not others,
           f"Your code also sent {others[0][:50] if others else ''!r}: only SELECT "
           "pg_sleep(3) and SELECT 42 should be sent, with the time limit kept on the client "
           "(asyncio.timeout) rather than asked of the server."),
          (lambda v: waited is not None and waited < GAVE_UP_BY,
           f"Your code stopped waiting for pg_sleep(3) {waited or 0:.1f} s after it went out: "
           "give up after 0.2 s, as the exercise asks."),
          (lambda v: cancelled,
           "The pg_sleep(3) was not given up by the client: it ended with the server's error"
           f"{' (' + describe(server) + ')' if server else ''}, a cancel asked of the server. "
           "Let the client stop waiting after 0.2 s, with asyncio.timeout."))


async def reuse_and_drop(engine: AsyncEngine) -> tuple[bool, str]:
    """(two checkouts in a row got the same backend, what a query after its drop met).

    The backend is terminated through a connection of the check's own (``NullPool``,
    closed at once); only the pid ``engine``'s pool reported is touched. The pool is
    disposed afterwards, so nothing the probe opened stays behind. With the notebook's
    own engine, that is three connections at once: on a class server the probe first
    waits for room (``connection_slots``).
    """
    url = engine.url.render_as_string(hide_password=False)
    async with connection_slots(url, 2):
        try:
            async with engine.connect() as conn:
                first = await conn.scalar(PID)
            async with engine.connect() as conn:
                second = await conn.scalar(PID)
            killer = create_async_engine(engine.url, poolclass=NullPool)
            try:
                async with killer.connect() as conn:
                    await conn.execute(TERMINATE, {"pid": second})
            finally:
                await killer.dispose()
            try:
                async with engine.connect() as conn:
                    await conn.scalar(PID)
                outcome = "ok"
            except DBAPIError as err:
                outcome = describe(err)
            return first == second, outcome
        finally:
            await engine.dispose()


async def ex2(answer: Any, *, report: str | None) -> None:
    """A pooled engine whose first query after its connections were dropped succeeds.

    ``report`` is what ``query_once`` returned after ``drop_pooled_connections``.
    The prompt's requirements, one rule each:

    1. ``ex2`` is an ``AsyncEngine``;
    2. the scaffold tried it (a cell that raised, such as a pool that cannot hand out the
       two connections ``drop_pooled_connections`` holds at once, leaves ``report``
       ``None``);
    3. it keeps a pool: not ``NullPool``, and a second checkout reuses the first one's
       connection (a pool that reconnects at every checkout, through a tiny
       ``pool_recycle`` or a listener that invalidates, keeps nothing);
    4. its next query succeeds after the server dropped its pooled connections, in the
       scaffold's run and in the check's own (a drop with nothing in between).
    """
    engine_rule = (lambda e: isinstance(e, AsyncEngine), "ex2 should be an AsyncEngine.")
    if unanswered(2, answer, engine_rule[1]):
        return
    reused, outcome = False, "not tried"
    failure = ""
    if isinstance(answer, AsyncEngine) and not isinstance(answer.pool, NullPool):
        try:
            reused, outcome = await reuse_and_drop(answer)
        except Exception as err:  # a server gone, a broken engine: a hint, not a traceback
            failure = f"Trying the engine raised {describe(err)}. "
    check(2, answer, engine_rule,
          (lambda e: report is not None,
           "The cell stopped before it tried the engine (ex2_report is None): run the whole "
           "cell without an error; the error it printed names what stopped it (a pool that "
           "cannot hand out two connections at once times out in drop_pooled_connections)."),
          (lambda e: not isinstance(e.pool, NullPool),
           "Keep a pool: with NullPool there is nothing to drop, and every query pays a "
           "connect."),
          (lambda e: reused,
           f"{failure}Two checkouts in a row got two different server connections: the pool "
           "keeps none for reuse (a tiny pool_recycle, or connections invalidated at "
           "checkin, reconnect every time). Keep the pool's defaults for that."),
          (lambda e: str(report).startswith("ok"),
           "The first query after the drop failed: have the pool test connections at "
           "checkout."),
          (lambda e: outcome == "ok",
           f"After the check dropped a pooled connection, with nothing in between, the next "
           f"query met {outcome}: have the pool test connections at checkout, rather than "
           "emptying the pool by hand."))
