"""Lesson 17 · Work outside the request: the checks of its two exercises.

Exercise 1 installs the learner's background task behind the notebook's
``POST /ex1/books`` endpoint (its session dependency has ``scope="function"``),
posts two books in process and judges the notifications committed, which session
wrote them (one the given sessionmaker made; the request's session not used at all),
whether anything the task started outlived it, the connections checked out after
each request and whether the task's sessions were closed. Exercise 2 runs the
learner's job runner in a worker thread with a job of the check's own, which notes
its event loop and its server process, and judges the rows, the loops (one per job,
closed afterwards), what the pool and asyncio logged, the connections kept in a pool
after their loop closed and the server processes still connected when the runner
has returned.

The notebook maps ``Notification`` itself, so the checks read and clean its table
with plain SQL.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from tutorial_kit.checks.evidence import Watched, rows, table_name, watch
from tutorial_kit.connection_slots import connection_slots
from tutorial_kit.errors import one_line
from tutorial_kit.exercises import check, describe, unanswered, unavailable
from tutorial_kit.proc import shorten
from tutorial_kit.reports import captured

EX1_HINT = ("ex1 should be an async function notify_book(session, maker, book_id) that writes "
            "the notification in a session of its own, made with maker(), and commits it.")
EX2_HINT = ("ex2 should be a plain function run_jobs(book_ids, job) that runs "
            "asyncio.run(job(engine, book_id)) for each id, with an engine whose connections "
            "never outlive a job's loop.")
NOTIFICATIONS = text("SELECT book_id, message FROM notification WHERE book_id = ANY(:ids) "
                     "ORDER BY id")
DROP_BOOKS = text("DELETE FROM book WHERE id = ANY(:ids)")   # their notifications cascade
LIVE = text("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)")
TERMINATE = text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE pid = ANY(:pids)")
EX2_INSERT = text("INSERT INTO notification (book_id, message) VALUES (:book_id, :message)")
EX2_ROWS = text("SELECT book_id FROM notification WHERE message LIKE 'ex2 job %' ORDER BY id")
EX2_CLEAN = text("DELETE FROM notification WHERE message LIKE 'ex2 job %'")
EX2_BOOKS = [1, 2, 3, 4]
#: How long exercise 1's task may run (a leaked connection per request empties the pool).
TASK_TIMEOUT = 10.0
#: How long a closed connection's server process may take to go away.
SETTLE = 1.0
RUNNER_TIMEOUT = 60.0
#: What asyncio and SQLAlchemy report when a connection outlives the loop it belongs to.
CLOSED_LOOP_SIGNS = ("Event loop is closed", "unclosed transport", "garbage collector",
                     "Connection._cancel", "different loop")


def writes_notification(statement: Any) -> bool:
    """True for an INSERT into the notification table, however it was built."""
    try:
        sql = " ".join(str(statement).split()).lower()
    except Exception:   # a statement that cannot be rendered without its dialect
        return False
    return sql.startswith("insert into notification")


def writer_sessions(log: Watched) -> set[int]:
    """``hash_key`` of every session that wrote a notification: by a flush, or by executing an
    INSERT (``session.execute(insert(Notification))``, or SQL text)."""
    flushed = {key for key, objs in log.flushes
               if any(table_name(obj) == "notification" for obj in objs)}
    return flushed | {run.session for run in log.orm if writes_notification(run.statement)}


@dataclass
class TaskTrail:
    """What the learner's background task did with sessions and tasks, across both requests.

    ``hash_key``s of sessions: the request's sessions the endpoint handed to the task, those
    ``maker`` made while the task ran (and which of them were closed), those that began a
    transaction while the task ran; and the tasks the answer started that were still
    running when it returned.
    """

    given: list[int] = field(default_factory=list)
    made: set[int] = field(default_factory=set)
    closed: set[int] = field(default_factory=set)
    began_in_task: set[int] = field(default_factory=set)
    outlived: list[asyncio.Task[Any]] = field(default_factory=list)
    #: Every session that began a transaction, with its engine; held strongly, so a session
    #: the answer drops unclosed can still be closed by the check after the requests.
    begun: dict[int, tuple[Session, Engine]] = field(default_factory=dict)
    in_task: bool = False


def tracking(trail: TaskTrail, base: type[AsyncSession]) -> type[AsyncSession]:
    """A subclass of the sessionmaker's class that notes each session made and closed."""

    class MadeByMaker(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            trail.made.add(self.sync_session.hash_key)

        async def close(self) -> None:   # what async with, maker.begin() and aclose() call
            trail.closed.add(self.sync_session.hash_key)
            await super().close()

    return MadeByMaker


@contextmanager
def sessions_begun(trail: TaskTrail) -> Iterator[None]:
    """Note every session that begins a transaction in the block (and whether in the task)."""

    def began(session: Session, _transaction: Any, connection: Any) -> None:
        trail.begun.setdefault(session.hash_key, (session, connection.engine))
        if trail.in_task:
            trail.began_in_task.add(session.hash_key)

    event.listen(Session, "after_begin", began)
    try:
        yield
    finally:
        event.remove(Session, "after_begin", began)


@contextmanager
def tasks_started_by_current_task(started: list[asyncio.Task[Any]]) -> Iterator[None]:
    """Note every task created while the current task runs (by the code it awaits).

    Through the loop's task factory, restored afterwards: other tasks of the kernel's loop
    that create tasks meanwhile are not noted.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Future[Any]:
        task = (previous(loop, coro, **kw) if previous is not None
                else asyncio.Task(coro, loop=loop, **kw))
        if asyncio.current_task() is me and isinstance(task, asyncio.Task):
            started.append(task)
        return task

    loop.set_task_factory(factory)
    try:
        yield
    finally:
        loop.set_task_factory(previous)


async def ex1(answer: Any, *, app: FastAPI, slot: dict[str, object], app_engine: AsyncEngine,
              engine: AsyncEngine, url: str) -> None:
    """A background task that writes a notification in a session of its own.

    The prompt's requirements, one rule each:

    1. an async function, and it runs without raising;
    2. nothing it started still running when it returned (its write is done by then);
    3. the request's session not used at all: it begins no transaction in the task, and
       writes nothing;
    4. one notification per new book, ``"new book: <title>"``, committed (read back on
       a connection of the check's own) ...
    5. ... written through a session that ``maker`` made while the task ran (the
       sessionmaker's class is swapped for a subclass that notes each session);
    6. no connection checked out after each request, and no garbage-collector report;
    7. every session the task made with ``maker`` is closed.
    """
    if unanswered(1, answer, EX1_HINT):
        return
    if not inspect.iscoroutinefunction(answer):
        check(1, answer, (lambda v: False,
                          "ex1 should be an async function (async def notify_book(session, "
                          "maker, book_id)), so the task can await the database."))
        return
    titles = [f"Exercise 1 check {secrets.token_hex(3)}" for _ in range(2)]
    trail = TaskTrail()
    errors: list[str] = []
    checked_out: list[int] = []
    ids: list[int] = []

    async def task(session: AsyncSession, maker: Any, book_id: int) -> None:
        trail.given.append(session.sync_session.hash_key)
        base = maker.class_
        started: list[asyncio.Task[Any]] = []
        maker.class_, trail.in_task = tracking(trail, base), True
        try:
            async with asyncio.timeout(TASK_TIMEOUT):
                with tasks_started_by_current_task(started):
                    await answer(session, maker, book_id)
        except TimeoutError:
            errors.append(f"nothing: it was still running after {TASK_TIMEOUT:.0f} s (waiting "
                          "for a connection the pool no longer had?)")
        except Exception as err:   # the learner's error, judged below
            errors.append(describe(err))
        finally:
            outlived = [t for t in started if not t.done()]
            trail.outlived += outlived
            if outlived:   # let them finish now, so what follows is judged on settled state
                await asyncio.wait(outlived, timeout=TASK_TIMEOUT)
            maker.class_, trail.in_task = base, False

    slot["task"] = task
    gc.collect()   # what an earlier try left to the collector is reported now, not below
    try:
        # The app's pool lends up to 4 (a wrong answer keeps one per request), plus the check's.
        async with connection_slots(url, 4):
            with captured("sqlalchemy", "asyncio") as reports:
                with watch(app_engine) as log, sessions_begun(trail):
                    client = httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                               base_url="http://app")
                    async with client:
                        for title in titles:
                            response = await client.post("/ex1/books", params={"title": title})
                            ids.append(response.json()["id"])
                            checked_out.append(app_engine.pool.checkedout())
                writers = writer_sessions(log)
                for session, _engine in trail.begun.values():   # what the answer left open
                    if session.in_transaction():
                        await greenlet_spawn(session.close)
                log.flushes.clear()
                trail.begun.clear()
                await app_engine.dispose()     # its idle connections too, before the slots go
        written = await rows(engine, NOTIFICATIONS, {"ids": ids})
    except Exception as err:
        check(1, answer, unavailable("posting the books", err, EX1_HINT))
        return
    finally:
        slot.pop("task", None)
        for pending in trail.outlived:
            pending.cancel()
        if ids:
            async with engine.begin() as conn:
                await conn.execute(DROP_BOOKS, {"ids": ids})
    expected = [(book_id, f"new book: {title}") for book_id, title in zip(ids, titles, strict=True)]
    gc_reports = [r for r in reports if "garbage collector" in r]
    request_used = set(trail.given) & (trail.began_in_task | writers)
    check(1, answer,
          (lambda v: not errors, f"your task raised {errors[0] if errors else ''}. {EX1_HINT}"),
          (lambda v: not trail.outlived,
           "your task returned while a task it had started (create_task) was still running, "
           "so its write was not done when the background task ended: a background task "
           "already runs after the response, so do the work in notify_book itself and wait "
           "for it there."),
          (lambda v: not request_used,
           "the task used the request's session, the one the endpoint handed it (the "
           "dependency had already committed and closed it): it began a new transaction "
           "on it. Read and write only through a session of your own from maker."),
          (lambda v: written, "no notification was committed: the task's write must be "
                              "committed in its own session (a session that is closed without "
                              "commit rolls back; nobody commits it for you)."),
          (lambda v: written == expected,
           f"the notifications committed were {written}, expected {expected}: one per new "
           "book, the message \"new book: \" and the title read from the database."),
          (lambda v: writers & trail.made,
           "the notification was not written through a session that maker made (a "
           "connection, or an AsyncSession built by hand, does not count): the prompt asks "
           "for a session of the task's own from maker."),
          (lambda v: checked_out == [0, 0] and not gc_reports,
           f"connections still checked out after each request: {checked_out}"
           + (" (the garbage collector had to give one back)" if gc_reports else "")
           + ": the task must close every session it uses, with async with."),
          (lambda v: trail.made <= trail.closed,
           "a session the task made with maker was not closed: close it too (async with "
           "maker() as session: …), so it holds neither objects nor a connection."))


async def _left_connected(engine: AsyncEngine, pids: list[int]) -> list[int]:
    """Which of ``pids`` are still connected, after giving closed ones :data:`SETTLE` s to go."""
    deadline = asyncio.get_running_loop().time() + SETTLE
    while True:
        async with engine.connect() as conn:
            live = [pid for (pid,) in await conn.execute(LIVE, {"pids": pids})]
        if not live or asyncio.get_running_loop().time() > deadline:
            return live
        await asyncio.sleep(0.05)


def _job_error_hint(errors: Mapping[int, str]) -> str:
    """What the first failing job raised, and what it usually means."""
    book_id, said = next(iter(errors.items()))
    if "different loop" in said or "another operation is in progress" in said:
        why = ("a pooled connection from an earlier job's loop was used on a new loop: give "
               "each job connections of its own loop (NullPool, or an engine per job "
               "disposed inside the job).")
    elif "does not exist" in said:
        why = ("make the engine with connect_args=CONNECT_ARGS, so that it finds this "
               "lesson's tables.")
    else:
        why = EX2_HINT
    return f"job {book_id} raised {shorten(said, 160)}: {why}"


def _report_hint(report: str) -> str:
    """What the first thing reported during the run was, and, where it is known, its cause."""
    said = f"the run reported: {shorten(report, 160)}."
    if "unclosed event loop" in report:
        return (f"{said} An event loop was never closed: run each job with asyncio.run(), "
                "which closes the loop it made.")
    if any(sign in report for sign in CLOSED_LOOP_SIGNS):
        return (f"{said} A connection was closed (or collected) after the loop it belongs "
                "to had closed: close it inside the job.")
    return f"{said} Nothing may be logged or warned while the jobs run. {EX2_HINT}"


async def ex2(answer: Any, *, url: str, engine: AsyncEngine) -> None:
    """A job runner: one ``asyncio.run()`` per job, no connection outliving its loop.

    The check's ``job(engine, book_id)`` writes one notification, noting its loop, its
    server process and the engine it was given. The prompt's requirements, one rule each:

    1. a plain function that returns without raising (run in a worker thread);
    2. every job ran and succeeded: one notification per book id;
    3. one event loop per job, closed when the runner has returned (``asyncio.run()`` each
       time: it closes the loop it made);
    4. no connection kept in a pool once the runner has returned (its loop is closed);
    5. none of the jobs' server processes still connected when the runner has returned;
    6. nothing logged by SQLAlchemy or asyncio, nothing warned (a closed loop, a
       coroutine never awaited, a transport the garbage collector found).
    """
    if unanswered(2, answer, EX2_HINT):
        return
    if not callable(answer) or inspect.iscoroutinefunction(answer):
        check(2, answer, (lambda v: False,
                          "ex2 should be a plain function (def, not async def): a worker's "
                          "main loop that calls asyncio.run() for each job itself."))
        return
    seen: list[tuple[int, object, int]] = []     # (book_id, its event loop, server pid)
    engines: dict[int, AsyncEngine] = {}         # what the jobs were given, kept until judged
    job_errors: dict[int, str] = {}

    async def job(given: AsyncEngine, book_id: int) -> None:
        try:
            engines[id(given)] = given
            async with AsyncSession(given) as session, session.begin():
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                seen.append((book_id, asyncio.get_running_loop(), pid))
                await session.execute(EX2_INSERT, {"book_id": book_id,
                                                   "message": f"ex2 job {book_id}"})
        except Exception as err:
            job_errors.setdefault(book_id, one_line(err))   # whole: its end says the most
            raise

    raised = ""
    pids: list[int] = []
    try:
        async with connection_slots(url, len(EX2_BOOKS)):   # a wrong answer leaves them open
            gc.collect()   # an earlier try's garbage is reported now, not in this run
            try:
                with captured("sqlalchemy", "asyncio") as reports:
                    try:
                        await asyncio.wait_for(asyncio.to_thread(answer, list(EX2_BOOKS), job),
                                               RUNNER_TIMEOUT)
                    except Exception as err:
                        raised = describe(err)
                    kept = sum(e.pool.checkedin() for e in engines.values()
                               if isinstance(e.pool, QueuePool))
                    pids = sorted({pid for _b, _loop, pid in seen})
                    left = await _left_connected(engine, pids)
                    loops = len({id(loop) for _b, loop, _pid in seen})   # all still alive
                    open_loops = len({id(loop) for _b, loop, _pid in seen
                                      if not loop.is_closed()})
                    engines.clear()                 # collected before the block ends
                    seen.clear()
                written = [book_id for (book_id,) in await rows(engine, EX2_ROWS)]
            finally:
                async with engine.begin() as conn:
                    await conn.execute(EX2_CLEAN)
                    if pids:                        # whatever the runner left connected
                        await conn.execute(TERMINATE, {"pids": pids})
                await _left_connected(engine, pids)
    except Exception as err:
        check(2, answer, unavailable("running your job runner", err, EX2_HINT))
        return
    check(2, answer,
          (lambda v: not raised or job_errors,
           f"run_jobs raised {raised}. {EX2_HINT}"),
          (lambda v: not job_errors, _job_error_hint(job_errors) if job_errors else ""),
          (lambda v: sorted(written) == EX2_BOOKS,
           f"jobs that wrote their notification: {sorted(written)}, expected {EX2_BOOKS}: "
           "run job(engine, book_id) once for each id."),
          (lambda v: loops == len(EX2_BOOKS),
           f"the {len(EX2_BOOKS)} jobs ran on {loops} event loop(s): give each job an "
           "asyncio.run() of its own, as a framework that calls it for you would."),
          (lambda v: not open_loops,
           f"{open_loops} of the jobs' event loops were still open after run_jobs returned: "
           "run each job with asyncio.run(), which makes a loop, runs the job and closes "
           "the loop."),
          (lambda v: kept == 0,
           f"after run_jobs returned, a pool still held {kept} connection(s) opened on a "
           "loop that is now closed: dispose the engine inside the job, or use NullPool."),
          (lambda v: not left,
           f"{len(left)} server connection(s) the jobs opened were still open after run_jobs "
           "returned: every connection must be closed inside the job that opened it."),
          (lambda v: not reports, _report_hint(reports[0]) if reports else ""))

