"""Lesson 11 · A web app's session lifecycle: the checks of its two exercises.

Both call the notebook's FastAPI ``app`` in process, through the notebook's
``in_process`` (lifespan and an httpx client on ``ASGITransport``). Exercise 1
compares the endpoint's JSON with the tables and counts the statements the
app's engine ran; exercise 2 installs the learner's dependency, drives four
requests (the last one to an endpoint this module adds that fails on purpose)
and looks at the sessions, the scoped registry and the pool after each.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the failing endpoint's
# ``Annotated[..., Depends(dependency)]`` at runtime, and ``dependency`` is a local name.

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_scoped_session,
    close_all_sessions,
)

from tutorial_kit.checks.evidence import rows
from tutorial_kit.exercises import check, describe, unanswered, unavailable
from tutorial_kit.models import Author, Book
from tutorial_kit.sql_capture import capture_sql

#: The notebook's ``in_process(app, **transport)``: the app's lifespan and a client.
InProcess = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]

EX1_HINT = "serializing books must not need IO."
EX2_HINT = "ex2 should be an async generator function that yields request.app.state.scoped()."
FAILED_ON_PURPOSE = "ex2: the endpoint failed on purpose"


async def ex1(answer: Any, *, app: FastAPI, slot: dict[str, object], in_process: InProcess,
              engine: AsyncEngine) -> None:
    """A ``select()`` of every author with their books, in two statements.

    The statement goes into ``slot``, which ``GET /ex1/authors`` runs; its JSON
    must equal the tables (read with plain column queries on ``engine``), and
    the app's engine must have run exactly two statements: the authors with
    ``ORDER BY``, then their books with ``IN (…)``.
    """
    if not isinstance(answer, Select):
        check(1, answer, (lambda v: isinstance(v, Select), "ex1 should be a select() statement."))
        return
    try:
        slot["statement"] = answer
        async with in_process(app, raise_app_exceptions=False) as client:
            with capture_sql(app.state.engine) as log:
                response = await client.get("/ex1/authors")
        # the expected JSON, from the tables
        author_rows = await rows(engine, select(Author.id, Author.name).order_by(Author.id))
        book_rows = await rows(engine, select(Book.author_id, Book.id, Book.title)
                               .order_by(Book.id))
    except Exception as err:
        check(1, answer, (lambda v: False, f"calling the endpoint raised {describe(err)}: "
                                           f"{EX1_HINT}"))
        return
    expected = [{"id": a_id, "name": name,
                 "books": [{"id": b_id, "title": title} for b_a, b_id, title in book_rows
                           if b_a == a_id]} for a_id, name in author_rows]
    check(1, answer,
          (lambda v: response.status_code == 200,
           f"the endpoint answered {response.status_code} {response.text[:60]}: {EX1_HINT}"),
          (lambda v: response.json() == expected,
           "every author in id order, each with their books in id order."),
          (lambda v: log.count == 2 and " IN (" in log.sql()[1],
           f"right JSON, but {log.count} statement(s): load all the books in one extra "
           "SELECT … IN (…)."),
          (lambda v: "ORDER BY" in log.sql()[0],
           "the authors' order must come from the query (ORDER BY), not from the table's "
           "physical order."))


async def ex2(answer: Any, *, app: FastAPI, dependency: Callable[..., Any],
              sessions: list[AsyncSession], in_process: InProcess) -> None:
    """A dependency that yields the scoped session and ends its scope with the request.

    ``answer`` replaces ``dependency`` for three ``GET /ex2/authors/{id}`` calls
    (which append their session to ``sessions``) and one call to an endpoint
    added here for the check, which uses its session and then raises. Each
    request must get a new session from the app's registry, leave no connection
    checked out, and leave nothing in the registry, the failed one included.
    The endpoint, the override and the sessions are gone when the check ends.
    """
    if unanswered(2, answer, EX2_HINT):
        return
    made: list[AsyncSession] = []          # every session the app's registry made
    checked_out: list[int] = []            # connections checked out after each request
    after_fail: tuple[bool, int] | None = None
    error = ""

    def factory() -> AsyncSession:
        """The app's sessionmaker, remembering each session the app's registry makes."""
        made.append(app.state.sessionmaker())
        return made[-1]

    async def fail(author_id: int,
                   session: Annotated[AsyncSession, Depends(dependency)]) -> None:
        sessions.append(session)
        await session.get(Author, author_id)          # checks out a connection
        raise RuntimeError(FAILED_ON_PURPOSE)

    app.add_api_route("/ex2/fail/{author_id}", fail, methods=["GET"])
    route = app.router.routes[-1]
    app.dependency_overrides[dependency] = answer
    sessions.clear()
    try:
        async with in_process(app) as client:
            app.state.scoped = async_scoped_session(factory, scopefunc=asyncio.current_task)
            try:
                for author_id in (1, 2, 3):
                    await client.get(f"/ex2/authors/{author_id}")
                    checked_out.append(app.state.engine.pool.checkedout())
                try:
                    await client.get("/ex2/fail/4")
                except RuntimeError as err:       # the endpoint's own error is expected
                    if FAILED_ON_PURPOSE not in str(err):
                        raise
                after_fail = (app.state.scoped.registry.has(),
                              app.state.engine.pool.checkedout())
            except Exception as err:          # caught inside the block: the lifespan still ends
                error = f"a request raised {describe(err)}. "
            finally:
                got = list(sessions)
                await close_all_sessions()    # whatever the answer left open
    except Exception as err:
        check(2, answer, unavailable("running the app", err, EX2_HINT))
        return
    finally:
        app.dependency_overrides.clear()
        app.router.routes.remove(route)
        sessions.clear()
    check(2, answer,
          (lambda v: not error and len(got) == 4, f"{error}{EX2_HINT}"),
          (lambda v: all(any(s is m for m in made) for s in got),
           "the endpoint got a session that the app's registry, request.app.state.scoped, did "
           "not make: take the session from that registry, not from a registry of your own."),
          (lambda v: len({id(s) for s in got}) == 4,
           "the requests got the same session: the registry still holds it after each "
           "request."),
          (lambda v: checked_out == [0, 0, 0],
           f"connections checked out after each request: {checked_out}; the session must "
           "be closed when the request ends."),
          (lambda v: after_fail == (False, 0),
           "after a request whose endpoint raised: a session left in the registry: "
           f"{after_fail[0] if after_fail else '-'}, connections checked out: "
           f"{after_fail[1] if after_fail else '-'}. The scope must end however the "
           "request ends."))
