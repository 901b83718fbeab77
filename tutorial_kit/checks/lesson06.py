"""Checks for 06 · expire_on_commit.

The checks read the state of the objects the learner holds (``inspect()``: expired or
loaded, assigned or read from the database, detached), the statements the scaffold
recorded, what the database stores, and, for Exercise 2, what the learner's handler does
when the check calls it once more. So a right value reached without the technique the
exercise asks for is still "not yet".
"""

from __future__ import annotations

import inspect as pyinspect
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from tutorial_kit.checks.evidence import plain, scalar
from tutorial_kit.exercises import Rule, check, describe, unanswered, unavailable
from tutorial_kit.models import Author
from tutorial_kit.seed import Dataset
from tutorial_kit.sql_capture import QueryLog


def _loaded(obj: Any, key: str) -> Any:
    """``obj.key`` if it is loaded, else ``None``: read from its state, never a load."""
    return inspect(obj).dict.get(key)


def _expired(objs: Sequence[Any]) -> set[str]:
    """The column attributes still expired on any of ``objs``.

    Relationships are left out: a reload by query does not reset the lazy ones either, and
    reading one is a lazy load whether or not the commit expired it.
    """
    return {key for obj in objs for key in inspect(obj).expired_attributes
            if key in inspect(obj).mapper.column_attrs}


def ex1(answer: Any, log: QueryLog, *, books: Sequence[Any]) -> None:
    """The three expired books reloaded with exactly one SELECT from book, their prices read.

    Requirements, from the prompt:
    1. ``ex1`` is the three prices, in book-id order (999 each);
    2. the three objects of ``ex1_books`` are reloaded, holding the new prices;
    3. none of them is still expired: every column attribute reloaded, not ``price_cents``
       only (no column in ``inspect(book).expired_attributes``), as the prompt says;
    4. exactly one statement after the commit,
    5. a SELECT from book.
    """
    value_hint = "ex1 should be the three prices read back after the commit, [999, 999, 999]."
    if unanswered(1, answer, value_hint):
        return
    check(1, answer,
          plain(1, answer),
          (lambda v: isinstance(v, list | tuple) and list(v) == [999, 999, 999], value_hint),
          (lambda v: all(_loaded(b, "price_cents") == 999 for b in books),
           "ex1 has the prices, but the three objects in ex1_books are still expired (reading "
           "book.price_cents still raises MissingGreenlet): your code read the prices "
           "without reloading those objects. Query the Book objects again in this session."),
          (lambda v: not _expired(books),
           "the prices are reloaded, but the three objects still have expired attributes "
           f"({', '.join(sorted(_expired(books)))}): reading them is IO again. Reload the "
           "whole objects, not only price_cents, so none of them stays expired."),
          (lambda v: log.count == 1,
           f"the three books are reloaded, but your code sent {log.count} statement(s) after "
           "the commit, not 1: reload all three together instead of one at a time."),
          (lambda v: log.sql()[0].lstrip().startswith("SELECT") and "FROM book" in log.sql()[0],
           "one statement, but not a SELECT from book: read the books back with a query."))


async def _run_again(handler: Callable[..., Any], new_name: str) -> tuple[Any, list[Any]]:
    """Call the learner's handler once more (same input) and note what its session let go.

    ``persistent_to_detached`` fires for each object a session expunges, which close()
    does; a session merely dropped, never closed, fires nothing.
    """
    let_go: list[Any] = []

    def on_detach(session: Any, instance: Any) -> None:
        let_go.append(instance)

    event.listen(Session, "persistent_to_detached", on_detach)
    try:
        result = handler(3, new_name)
        if pyinspect.isawaitable(result):
            result = await result
    finally:
        event.remove(Session, "persistent_to_detached", on_detach)
    return result, let_go


async def ex2(answer: Any, handler: Any, *, new_name: str, engine: AsyncEngine,
              data: Dataset) -> None:
    """Author 3, renamed and committed by the handler, readable (name, books) once detached.

    Requirements, from the prompt:
    1. ``ex2`` is the ``Author`` that ``author_for_api`` returns, author 3;
    2. the new name is committed (the database holds it);
    3. the handler's session has closed: the author is detached,
    4. and the handler closes it (called once more by the check, its session lets go of
       the author);
    5. the caller can read ``author.name`` (not expired), the new name,
    6. and ``author.books`` (loaded before the session closed), the author's titles.
    """
    is_author: Rule = (lambda a: isinstance(a, Author),
                       "ex2 should be the Author that author_for_api returns.")
    if unanswered(2, answer, is_author[1]):
        return
    committed: Rule
    try:
        stored = await scalar(engine, select(Author.name).where(Author.id == 3))
        committed = (lambda a: stored == new_name,
                     "the database does not hold the new name: the handler must commit.")
    except Exception as err:   # a verdict line, never a traceback
        committed = unavailable("reading author 3 back to see the commit", err,
                                "The handler must commit; if it does, run this check again.")
    second: Rule = (lambda a: True, "")
    if isinstance(answer, Author) and callable(handler):
        try:
            again, let_go = await _run_again(handler, new_name)
            second = (lambda a: any(o is again for o in let_go),
                      "the caller can read everything, but the handler never closes its "
                      "session: the check called it again, and its session never let go of "
                      "the author. Open the session with async with, so it closes before the "
                      "handler returns.")
        except Exception as err:   # a verdict line, never a traceback
            second = (lambda a: False,
                      f"called again by the check, author_for_api(3, ex2_new_name) raised "
                      f"{describe(err)}. It should work on every call.")
    titles = [b["title"] for b in data.books if b["author_id"] == 3]
    check(2, answer,
          plain(2, answer),
          is_author,
          (lambda a: inspect(a).identity == (3,),
           "ex2 is an Author, but not author 3: call author_for_api(3, ex2_new_name)."),
          committed,
          (lambda a: inspect(a).detached,
           "return the author from a session that has closed, as a handler does."),
          (lambda a: "name" in inspect(a).dict,
           "the caller cannot read the name: the commit expired it, and the closed session "
           "cannot load it again. Use a session factory that does not expire on commit."),
          (lambda a: _loaded(a, "name") == new_name,
           "ex2.name is not the new name: set it before the commit."),
          (lambda a: _loaded(a, "books") is not None,
           "the caller cannot read the books: load them before the session closes."),
          (lambda a: [_loaded(b, "title") for b in _loaded(a, "books")] == titles,
           "ex2.books is loaded, but its titles are not author 3's books."),
          second)


def ex3(answer: Any, log: QueryLog, *, author: Any, new_name: str) -> None:
    """``author`` itself shows the writer's new name, read back with exactly one SELECT.

    Requirements, from the prompt:
    1. ``ex3`` is the writer's new name, read from ``ex3_author``;
    2. ``ex3_author`` itself holds the new name,
    3. as read from the database, not assigned by the learner's code;
    4. exactly one statement,
    5. a SELECT from author (the reader reads the writer's change; it writes nothing).
    """
    value_hint = ("ex3 should be the writer's new name, read from ex3_author. session.get(), "
                  "a plain select() and the attribute all give the stale name the identity "
                  "map holds.")
    if unanswered(3, answer, value_hint):
        return
    check(3, answer,
          plain(3, answer),
          (lambda v: v == new_name, value_hint),
          (lambda v: _loaded(author, "name") == new_name,
           "ex3 is right, but ex3_author still shows the old name: update that object itself."),
          (lambda v: not inspect(author).attrs.name.history.added,
           "ex3_author shows the new name because your code assigned it, not because it was "
           "read from the database: it is a pending change the next flush would write. "
           "Reload the object instead."),
          (lambda v: log.count == 1,
           f"ex3_author is fresh, but your code sent {log.count} statements, not 1."),
          (lambda v: log.sql()[0].lstrip().startswith("SELECT") and "FROM author" in log.sql()[0],
           "one statement, but not a SELECT from author: your code wrote the name (or asked "
           "something else) instead of reading the writer's change back into ex3_author."))
