"""Lesson 11 · A web app's session lifecycle: the checks of its two exercises.

Both call the notebook's FastAPI ``app`` in process, through the notebook's
``in_process`` (lifespan and an httpx client on ``ASGITransport``). Exercise 1
adds an author the learner never saw, compares the endpoint's JSON with the
tables and counts the statements the app's engine ran; exercise 2 installs the
learner's dependency, drives four requests (the last one to an endpoint this
module adds that fails on purpose) and looks at the sessions, the scoped
registry and the pool after each.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the failing endpoint's
# ``Annotated[..., Depends(dependency)]`` at runtime, and ``dependency`` is a local name.

import asyncio
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI
from fastapi.exceptions import ResponseValidationError
from sqlalchemy import Select, select, text
from sqlalchemy.exc import InvalidRequestError, MissingGreenlet
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_scoped_session,
)
from sqlalchemy.orm import FromStatement

from tutorial_kit.checks.evidence import rows
from tutorial_kit.exercises import check, describe, unanswered, unavailable
from tutorial_kit.models import Author, Book
from tutorial_kit.sql_capture import capture_sql

#: The notebook's ``in_process(app, **transport)``: the app's lifespan and a client.
InProcess = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]

EX1_HINT = ("ex1 should be a select() of Author objects, in id order, that loads their books "
            "with the statement, in one more SELECT.")
EX2_HINT = "ex2 should be an async generator function that yields request.app.state.scoped()."
FAILED_ON_PURPOSE = "ex2: the endpoint failed on purpose"
#: An author the learner never saw, added for the call and removed after it: an answer
#: that hard-codes the seed's ids, its size or "every author has books" loses it.
#: Its id is far above the seed's (a cap like ``Author.id < 1000`` misses it), yet an int4.
EXTRA_AUTHOR = text("INSERT INTO author (id, name, country) "
                    "VALUES (2000000000 + (SELECT max(id) FROM author), 'Aaron Unpublished', "
                    "'NL') RETURNING id")
DROP_AUTHOR = text("DELETE FROM author WHERE id = :id")
#: A row limit on the authors' SELECT: "all authors" has none.
LIMITED = re.compile(r"\b(LIMIT|OFFSET|FETCH)\b")
FROM_BOOK = re.compile(r"\bbook\b")
#: Ordered by the author's id: the table's or an alias's (``aliased(Author)``: ``author_1``).
AUTHORS_BY_ID = re.compile(r"\bORDER BY author(_\d+)?\.id\b(?! DESC)")


def selects_authors(answer: Select) -> bool:
    """True if each row of ``answer`` is one whole ``Author`` object."""
    return [d.get("type") for d in answer.column_descriptions] == [Author]


def said_by(err: BaseException) -> str:
    """The error's type and message, and those of the errors it wraps, on one line.

    FastAPI wraps a failure while serializing the response (a lazy load's
    ``MissingGreenlet``) in a ``ResponseValidationError`` whose own ``str()`` reads
    the detached objects again, so its errors' messages are read one by one.
    """
    parts = [type(err).__name__]
    try:
        errors = err.errors() if isinstance(err, ResponseValidationError) else []
        parts += ["MissingGreenlet while reading an attribute" if "MissingGreenlet" in msg
                  else msg for msg in (str(e.get("msg", "")) for e in errors[:1])]
        if not errors:
            parts = [describe(err)]
    except Exception:   # an error whose message cannot even be read: its type says enough
        pass
    return ": ".join(parts)


def endpoint_error(err: BaseException) -> str:
    """What an error raised while the endpoint ran or serialized says about the statement."""
    said = said_by(err)
    if isinstance(err, MissingGreenlet) or "greenlet" in said:
        return (f"the endpoint raised {said}: serializing an author's books lazy-loaded them, "
                "which needs IO there. Load the books with the statement, with a loader "
                "option.")
    if isinstance(err, InvalidRequestError) and "unique" in said:
        return (f"the endpoint raised {said}: a joined eager load of a collection needs "
                ".unique() on the result, which this endpoint does not call. Use a loader "
                "that sends its own SELECT for the books.")
    return f"the endpoint raised {said}. {EX1_HINT}"


def json_hint(response: httpx.Response | None, expected: list[dict[str, Any]],
              extra: int) -> str:
    """What differs between the endpoint's JSON and the tables: authors missing, or order."""
    try:
        got = [a.get("id") for a in response.json()] if response is not None else []
    except Exception:   # not JSON, or not a list of objects: the generic hint says enough
        got = []
    missing = [a["id"] for a in expected if a["id"] not in got]
    if missing:
        added = " (among them the one the check added, with no books)" if extra in missing else ""
        return (f"{len(missing)} author(s) missing from the JSON{added}: \"all authors\" "
                "means no filter, no cap and no hard-coded ids, whatever the table holds.")
    if sorted(got, key=repr) == sorted((a["id"] for a in expected), key=repr) \
            and got != [a["id"] for a in expected]:
        return ("the authors came back, but not in id order: order them in the query, with "
                "order_by(Author.id).")
    return ("every author in id order, each with their books in id order: the JSON differs "
            "from the tables.")


async def ex1(answer: Any, *, app: FastAPI, slot: dict[str, object], in_process: InProcess,
              engine: AsyncEngine) -> None:
    """A ``select()`` of every author with their books, in two statements.

    The prompt's requirements, one rule each:

    1. a ``select()`` of whole ``Author`` objects;
    2. the endpoint serializes it (no ``MissingGreenlet``, no missing ``unique()``);
    3. all the authors, in id order, each with their books: the JSON equals the
       tables, with an author the learner never saw (no books, the next id) added for
       the call, so a hard-coded limit, id range or "has books" filter shows;
    4. two statements: one for the authors, one for all their books (``selectinload``
       or ``subqueryload``: the prompt asks only for the count and the split);
    5. the authors' order comes from the query: the first has ``ORDER BY author.id``.
    """
    if not isinstance(answer, Select):
        hint = "ex1 should be a select() statement, built with select(Author)."
        if isinstance(answer, FromStatement):
            hint = ("ex1 wraps text SQL with from_statement(): the prompt asks for a select() "
                    "statement, built with select(Author) and its methods, not SQL text.")
        check(1, answer, (lambda v: isinstance(v, Select), hint))
        return
    error: BaseException | None = None
    response: httpx.Response | None = None
    try:
        async with engine.begin() as conn:
            extra = (await conn.execute(EXTRA_AUTHOR)).scalar_one()
        try:
            slot["statement"] = answer
            async with in_process(app) as client:
                with capture_sql(app.state.engine) as log:
                    try:
                        response = await client.get("/ex1/authors")
                    except Exception as err:   # the app's own error, raised through httpx
                        error = err
            # the expected JSON, from the tables
            author_rows = await rows(engine, select(Author.id, Author.name).order_by(Author.id))
            book_rows = await rows(engine, select(Book.author_id, Book.id, Book.title)
                                   .order_by(Book.id))
        finally:
            async with engine.begin() as conn:
                await conn.execute(DROP_AUTHOR, {"id": extra})
    except Exception as err:
        check(1, answer, unavailable("calling the endpoint", err, EX1_HINT))
        return
    expected = [{"id": a_id, "name": name,
                 "books": [{"id": b_id, "title": title} for b_a, b_id, title in book_rows
                           if b_a == a_id]} for a_id, name in author_rows]
    sql = log.sql()
    answered = f"{response.status_code} {response.text[:60]}" if response is not None else ""
    check(1, answer,
          (selects_authors,
           "ex1 should select whole Author objects, select(Author), so the endpoint can read "
           "each author's books."),
          (lambda v: error is None, endpoint_error(error) if error else ""),
          (lambda v: response is not None and response.status_code == 200,
           f"the endpoint answered {answered}. {EX1_HINT}"),
          (lambda v: response.json() == expected, json_hint(response, expected, extra)),
          (lambda v: len(sql) == 2 and FROM_BOOK.search(sql[1])
           and not FROM_BOOK.search(sql[0]),
           f"right JSON, but {len(sql)} statement(s): one SELECT for the authors and one for "
           "all their books, two in all."),
          (lambda v: not LIMITED.search(sql[0]),
           "the authors' SELECT has a LIMIT (or OFFSET): the endpoint lists every author, "
           "however many there are, so leave the row limit out."),
          (lambda v: AUTHORS_BY_ID.search(sql[0]),
           "the authors' order must come from the query (ORDER BY Author.id), not from the "
           "table's physical order."))


async def ex2(answer: Any, *, app: FastAPI, dependency: Callable[..., Any],
              sessions: list[AsyncSession], in_process: InProcess) -> None:
    """A dependency that yields the scoped session and ends its scope with the request.

    ``answer`` replaces ``dependency`` for three ``GET /ex2/authors/{id}`` calls
    (which append their session to ``sessions``) and one call to an endpoint
    added here for the check, which uses its session and then raises. The
    prompt's requirements, one rule each:

    1. every request is served (the dependency yields a session);
    2. the session comes from the app's registry, ``request.app.state.scoped``;
    3. each request gets a new session: the scope ends with the request;
    4. no connection stays checked out after a request (the session is closed);
    5. a request whose endpoint raises ends the scope too: nothing left in the
       registry, no connection checked out.

    The endpoint, the override and the sessions are gone when the check ends.
    """
    if unanswered(2, answer, EX2_HINT):
        return
    made: list[AsyncSession] = []          # every session the app's registry made
    checked_out: list[int] = []            # connections checked out after each request
    after_fail: tuple[bool, int] | None = None
    error = ""
    ended_early: list[bool] = []           # the failing endpoint's session: scope already ended?

    def factory() -> AsyncSession:
        """The app's sessionmaker, remembering each session the app's registry makes."""
        made.append(app.state.sessionmaker())
        return made[-1]

    async def fail(author_id: int,
                   session: Annotated[AsyncSession, Depends(dependency)]) -> None:
        sessions.append(session)
        # still the registry's session for this request's task, or its scope already over?
        registry = app.state.scoped.registry
        ended_early.append(not (registry.has() and registry() is session))
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
                for made_session in made:     # whatever the answer left open, and no other
                    await made_session.close()
    except Exception as err:
        check(2, answer, unavailable("running the app", err, EX2_HINT))
        return
    finally:
        app.dependency_overrides.clear()
        app.router.routes.remove(route)
        sessions.clear()
    check(2, answer,
          (lambda v: not error and len(got) == 4, f"{error}{EX2_HINT}"),
          (lambda v: not any(isinstance(s, async_scoped_session) for s in got),
           "the endpoint got the registry itself, request.app.state.scoped, not a session: "
           "yield scoped(), the session the registry makes for this request."),
          (lambda v: all(any(s is m for m in made) for s in got),
           "the endpoint got a session that the app's registry, request.app.state.scoped, did "
           "not make: take the session from that registry, not from a registry of your own."),
          (lambda v: len({id(s) for s in got}) == 4,
           "the requests got the same session: the registry still holds it after each "
           "request."),
          (lambda v: checked_out == [0, 0, 0],
           f"connections checked out after each request: {checked_out}. "
           + ("The endpoint got a session whose scope had already ended before it used it, "
              "so the connection it then took was never given back: end the scope after the "
              "yield, once the endpoint is done." if any(ended_early) else
              "The session that served a request must be closed when the request ends.")),
          (lambda v: after_fail == (False, 0),
           "after a request whose endpoint raised: a session left in the registry: "
           f"{after_fail[0] if after_fail else '-'}, connections checked out: "
           f"{after_fail[1] if after_fail else '-'}. The scope must end however the "
           "request ends."))
