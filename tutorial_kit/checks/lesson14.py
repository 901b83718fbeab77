"""Checks for 14 · Timeouts and failures.

Exercise 1 reads what the scaffold recorded while the learner's code ran
(:func:`recorded`): every statement as the driver got it, the session whose
connection ran it, when the session was asked for it, and what each failing statement
met. Exercise 2 also tries the learner's engine itself: it drops one of its pooled
connections again, with nothing of the learner's code in between, looks whether a
second checkout reuses the first one's connection, and whether two checkouts at once
get two server connections.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, orm, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from tutorial_kit.checks.evidence import bound_values, sql_code
from tutorial_kit.connection_slots import connection_slots
from tutorial_kit.exercises import check, describe, unanswered

PID = text("SELECT pg_backend_pid()")
#: Waits (up to 10 s, for a busy server) until the backend is really gone.
TERMINATE = text("SELECT pg_terminate_backend(:pid, 10000)")
#: The seconds ``pg_sleep`` is asked for, written in the SQL or bound to a parameter
#: (``select(func.pg_sleep(3))`` sends ``pg_sleep($1::INTEGER)`` with 3).
SLEEP = re.compile(r"\bpg_sleep\s*\(\s*(?:(?P<literal>\d+(?:\.\d*)?)|\$(?P<index>\d+))", re.I)
#: ``SELECT 42`` in any spelling that sends the value alone: ``text("SELECT 42")``,
#: ``select(literal_column("42"))``, ``select(literal(42))`` (``SELECT $1::INTEGER``).
ANSWER = re.compile(r"^\s*SELECT\s+(?:(?P<literal>42)|\$(?P<index>1))(?:::\w+)?"
                    r"(?:\s+AS\s+\w+)?\s*;?\s*$", re.I)
#: How long after pg_sleep(3) went out its await may end: 0.2 s asked, the rest is slack
#: for a busy machine (0.6 s would be too long). Measured to the moment the await was
#: cancelled, so the rollback and the new connection that follow do not count.
GAVE_UP_BY = 0.55
#: How long after the session was asked to run pg_sleep(3) its await may end at the
#: earliest: 0.2 s asked, less slack for the moment between starting the clock and asking
#: (a turn of the event loop; a busy machine may pause it a little). Measured from the
#: request, before the session gets its connection, so a slow connect cannot shorten it.
#: A timeout of 0.05 s ends before it unless the machine stalls the event loop for a
#: tenth of a second.
GAVE_UP_AFTER = 0.15


@dataclass(frozen=True)
class ErrorMet:
    """What a failing statement raised, and when (``time.perf_counter()``, as the log)."""

    error: BaseException
    statement: str
    at: float


@dataclass(frozen=True)
class Sent:
    """One statement as the driver got it, and the session whose connection ran it.

    ``session`` is ``None`` for a connection no session held (``engine.connect()``).
    """

    sql: str
    params: Any
    session: orm.Session | None
    started: float


@dataclass
class Recording:
    """What :func:`recorded` saw during the block."""

    sent: list[Sent] = field(default_factory=list)
    #: ``(session, when)`` for each statement a session was asked to run, before it
    #: had a connection for it.
    asked: list[tuple[orm.Session, float]] = field(default_factory=list)
    errors: list[ErrorMet] = field(default_factory=list)
    started: float = 0.0
    ended: float | None = None

    @property
    def seconds(self) -> float:
        """How long the block ran."""
        return (self.ended or time.perf_counter()) - self.started


@contextmanager
def recorded(engine: AsyncEngine) -> Iterator[Recording]:
    """Record, inside the block, every statement on ``engine`` and whose session sent it.

    A session's connection is the one ``after_begin`` hands it (a new ``Connection`` at
    each checkout), so a statement run through ``session.execute()`` and one run on
    ``await session.connection()`` both count as the session's. ``do_orm_execute`` marks
    when a session was asked for a statement; ``handle_error`` what a failing statement
    met, and when: a client that gives up cancels the await (``CancelledError`` at the
    statement), a cancel asked of the server comes back as the server's error; nothing
    else tells the two apart afterwards. The time is taken as the error reaches
    SQLAlchemy, before any rollback or reconnect.
    """
    seen = Recording(started=time.perf_counter())
    # Each Connection is kept beside its session, so its id is never another's.
    owners: dict[int, tuple[Connection, orm.Session]] = {}

    def began(session: orm.Session, _transaction: Any, connection: Connection) -> None:
        owners[id(connection)] = (connection, session)

    def asked(state: orm.ORMExecuteState) -> None:
        seen.asked.append((state.session, time.perf_counter()))

    def sent(conn: Connection, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        owner = owners.get(id(conn))
        seen.sent.append(Sent(statement, parameters, owner[1] if owner else None,
                              time.perf_counter()))

    def failed(context: Any) -> None:
        seen.errors.append(ErrorMet(context.original_exception, str(context.statement or ""),
                                    time.perf_counter()))

    hooks: list[tuple[Any, str, Any]] = [
        (orm.Session, "after_begin", began),
        (orm.Session, "do_orm_execute", asked),
        (engine.sync_engine, "before_cursor_execute", sent),
        (engine.sync_engine, "handle_error", failed),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield seen
    finally:
        seen.ended = time.perf_counter()
        for target, name, fn in hooks:
            event.remove(target, name, fn)


def bound(match: re.Match[str], params: Any) -> float | None:
    """The number a match names: written in the SQL, or the parameter it points at."""
    if match.group("literal"):
        return float(match.group("literal"))
    values = bound_values(params)
    index = int(match.group("index")) - 1
    value = values[index] if 0 <= index < len(values) else None
    return float(value) if isinstance(value, int | float) else None


def slept(stmt: Sent) -> float | None:
    """The seconds ``stmt`` asks ``pg_sleep`` for (``None``: no pg_sleep in it)."""
    match = SLEEP.search(sql_code(stmt.sql))
    return bound(match, stmt.params) if match else None


def selects_42(stmt: Sent) -> bool:
    """``stmt`` is a ``SELECT`` of the value 42 alone."""
    match = ANSWER.match(sql_code(stmt.sql))
    return bool(match) and bound(match, stmt.params) == 42


def sleep_hint(sent: list[Sent], session: orm.Session | None) -> str:
    """Where pg_sleep(3) did not run, said from what did."""
    ours = [slept(s) for s in sent if s.session is session and slept(s) is not None]
    if ours:
        return (f"ex1_session ran pg_sleep({ours[0]:g}), not pg_sleep(3): run SELECT "
                "pg_sleep(3) in ex1_session.")
    if any(slept(s) == 3 for s in sent):
        return ("pg_sleep(3) ran outside ex1_session (in another session, or on a connection "
                "of its own): run it in ex1_session.")
    return "No pg_sleep(3) reached the server: run SELECT pg_sleep(3) in ex1_session first."


def ex1(answer: Any, *, session: Any, record: Recording) -> None:
    """42 from ``SELECT 42`` in the same session, after a time-boxed ``pg_sleep(3)``.

    ``session`` is ``ex1_session``, ``record`` what :func:`recorded` saw. Statements are
    recognised by what they ask the server, in any spelling (text, a SQL expression,
    bound parameters). The prompt's requirements, one rule each:

    1. ``ex1`` is 42;
    2. ``pg_sleep(3)`` ran in ``ex1_session``;
    3. the cell took far less than the sleep;
    4. ``SELECT 42`` ran in ``ex1_session`` after the sleep (through ``execute()``, or on
       the session's own connection), so the session was made usable again (without
       that, it raises ``PendingRollbackError``);
    5. no server setting or other query did the work: those two are the only
       statements sent on the engine;
    6. the client gave up after about 0.2 s: the sleep's await ended (the error it met)
       within ``GAVE_UP_BY`` of its start (the next statement's start when no error was
       recorded), and 7. no sooner than ``GAVE_UP_AFTER`` after the session was asked
       for it;
    8. the client gave up, not the server: the sleep's await was cancelled
       (``CancelledError`` at the statement), not ended by the server's error (a
       ``pg_cancel_backend`` sent from another engine).

    Accepted alike, because no check can tell them apart (each cancels the await on
    the client after 0.2 s, the ``TimeoutError`` exists only in the learner's code):
    ``asyncio.timeout``, ``timeout_at``, ``wait_for``, and a task cancelled by hand
    after ``asyncio.sleep(0.2)``. The prompt says so.
    """
    ours = session.sync_session if isinstance(session, AsyncSession) else None
    sent = record.sent
    sleep = next((i for i, s in enumerate(sent) if s.session is ours and slept(s) == 3), None)
    after = [s for s in sent[sleep + 1:] if s.session is ours and selects_42(s)] \
        if sleep is not None else []
    others = [s.sql for s in sent if slept(s) != 3 and not selects_42(s)]
    start = sent[sleep].started if sleep is not None else None
    ended = next((m.at for m in record.errors
                  if start is not None and m.at >= start and m.statement == sent[sleep].sql),
                 None)
    if ended is None and sleep is not None and sleep + 1 < len(sent):
        ended = sent[sleep + 1].started
    waited = ended - start if start is not None and ended is not None else None
    asked = max((t for s, t in record.asked if s is ours and start is not None and t <= start),
                default=start)
    since_asked = ended - asked if asked is not None and ended is not None else None
    met = [m.error for m in record.errors]
    cancelled = any(isinstance(e, asyncio.CancelledError) for e in met)
    server = next((e for e in met if not isinstance(e, asyncio.CancelledError)), None)
    check(1, answer,
          (lambda v: v == 42, "ex1 should be the 42 that SELECT 42 returns."),
          (lambda v: sleep is not None, sleep_hint(sent, ours)),
          (lambda v: record.seconds < 1.5,
           f"The cell took {record.seconds:.1f} s, as long as the sleep: give up on the client "
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
          (lambda v: since_asked is not None and since_asked >= GAVE_UP_AFTER,
           f"Your code stopped waiting for pg_sleep(3) {since_asked or 0:.2f} s after asking "
           "for it: give up after 0.2 s, as the exercise asks, not sooner."),
          (lambda v: cancelled,
           "The pg_sleep(3) was not given up by the client: it ended with the server's error"
           f"{' (' + describe(server) + ')' if server else ''}, a cancel asked of the server. "
           "Let the client stop waiting after 0.2 s, with asyncio.timeout."))


@dataclass(frozen=True)
class Probe:
    """What :func:`reuse_and_drop` found out about an engine's pool."""

    #: Two checkouts in a row got the same backend.
    reused: bool
    #: What a query met after that backend was dropped: ``"ok"``, or the error.
    outcome: str
    #: The backends of two checkouts held at once.
    at_once: tuple[int, int]


async def reuse_and_drop(engine: AsyncEngine) -> Probe:
    """Try ``engine``'s pool: reuse, a dropped connection, two checkouts at once.

    The backend is terminated through a connection of the check's own (``NullPool``),
    opened before the pooled one, so the drop and the next query follow its checkouts
    within a few round trips: a ``pool_recycle`` of half a second cannot pass for a test
    at checkout, however long a busy machine takes to connect. Only the pid ``engine``'s
    pool reported is touched. The pool is disposed afterwards, so nothing the probe
    opened stays behind. With the notebook engine's idle connection and this module's
    own, that is four connections at once: on a class server the probe first waits for
    2 slots (``connection_slots``).
    """
    url = engine.url.render_as_string(hide_password=False)
    async with connection_slots(url, 2):
        try:
            killer = create_async_engine(engine.url, poolclass=NullPool)
            try:
                async with killer.connect() as kill:
                    async with engine.connect() as conn:
                        first = await conn.scalar(PID)
                    async with engine.connect() as conn:
                        second = await conn.scalar(PID)
                    await kill.execute(TERMINATE, {"pid": second})
            finally:
                await killer.dispose()
            try:
                async with engine.connect() as conn:
                    await conn.scalar(PID)
                outcome = "ok"
            except DBAPIError as err:
                outcome = describe(err)
            async with engine.connect() as a, engine.connect() as b:
                at_once = (await a.scalar(PID), await b.scalar(PID))
            return Probe(first == second, outcome, at_once)
        finally:
            await engine.dispose()


async def ex2(answer: Any, *, report: str | None) -> None:
    """A pooled engine whose first query after its connections were dropped succeeds.

    ``report`` is what ``query_once`` returned after ``drop_pooled_connections``.
    The prompt's requirements, one rule each:

    1. ``ex2`` is an ``AsyncEngine``;
    2. the scaffold tried it (a cell that raised leaves ``report`` ``None``; its own
       error says why, so the hint guesses no cause);
    3. it keeps a pool: not ``NullPool``, and a second checkout reuses the first one's
       connection (a pool that reconnects at every checkout, through a tiny
       ``pool_recycle`` or a listener that invalidates, keeps nothing);
    4. two checkouts at once get two server connections (``StaticPool`` lends its one
       connection to both);
    5. its next query succeeds after the server dropped its pooled connections, in the
       scaffold's run and in the check's own (a drop with nothing in between).
    """
    engine_rule = (lambda e: isinstance(e, AsyncEngine), "ex2 should be an AsyncEngine.")
    if unanswered(2, answer, engine_rule[1]):
        return
    probe = Probe(False, "not tried", (0, 0))
    failure = ""
    if (isinstance(answer, AsyncEngine) and report is not None
            and not isinstance(answer.pool, NullPool)):
        try:
            probe = await reuse_and_drop(answer)
        except Exception as err:  # a server gone, a broken engine: a hint, not a traceback
            failure = f"Trying the engine raised {describe(err)}. "
    check(2, answer, engine_rule,
          (lambda e: report is not None,
           "The cell stopped before it tried the engine (ex2_report is None): the error it "
           "printed says what stopped it; fix that and run the whole cell again."),
          (lambda e: not isinstance(e.pool, NullPool),
           "Keep a pool: with NullPool there is nothing to drop, and every query pays a "
           "connect."),
          (lambda e: probe.reused,
           f"{failure}Two checkouts in a row got two different server connections: the pool "
           "keeps none for reuse (a tiny pool_recycle, or connections invalidated at "
           "checkin, reconnect every time). Keep the pool's defaults for that."),
          (lambda e: probe.at_once[0] != probe.at_once[1],
           f"Two connections checked out at once both ran on server connection (backend) "
           f"{probe.at_once[0]}: keep a pool that can hand out two connections at once, as "
           "the exercise asks."),
          (lambda e: str(report).startswith("ok"),
           "The first query after the drop failed: have the pool test connections at "
           "checkout."),
          (lambda e: probe.outcome == "ok",
           f"After the check dropped a pooled connection, with nothing in between, the next "
           f"query met {probe.outcome}: have the pool test connections at checkout, rather "
           "than emptying the pool by hand."))
