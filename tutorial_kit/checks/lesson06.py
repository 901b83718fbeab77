"""Checks for 06 · expire_on_commit.

The checks read what the scaffold recorded (the statements sent after the commit, the
objects it holds) and, for Exercise 2, what the database stores, so a right value
reached without the technique the exercise asks for is still "not yet".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import scalar
from tutorial_kit.exercises import Rule, check, unanswered, unavailable
from tutorial_kit.models import Author
from tutorial_kit.seed import Dataset
from tutorial_kit.sql_capture import QueryLog


def ex1(answer: Any, log: QueryLog) -> None:
    """The three expired prices, read back with exactly one SELECT from book."""
    check(1, answer,
          (lambda v: list(v) == [999, 999, 999],
           "ex1 should be the three prices read back after the commit, [999, 999, 999]."),
          (lambda v: log.count == 1,
           f"the prices are right, but your code sent {log.count} statement(s) after the "
           "commit, not 1: reload all three books together instead of one at a time."),
          (lambda v: log.sql()[0].lstrip().startswith("SELECT") and "FROM book" in log.sql()[0],
           "one statement, but not a SELECT from book: read the books back with a query."))


async def ex2(answer: Any, *, new_name: str, engine: AsyncEngine, data: Dataset) -> None:
    """Author 3, renamed and committed by the handler, readable (name, books) once detached."""
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
    titles = [b["title"] for b in data.books if b["author_id"] == 3]
    check(2, answer,
          is_author,
          committed,
          (lambda a: inspect(a).detached,
           "return the author from a session that has closed, as a handler does."),
          (lambda a: a.name == new_name,
           "the caller cannot read the name: the commit expired it. Use a session factory "
           "that does not expire on commit."),
          (lambda a: [b.title for b in a.books] == titles,
           "the caller cannot read the books: load them before the session closes."))


def ex3(answer: Any, log: QueryLog, *, author: Any, new_name: str) -> None:
    """``author`` itself shows the writer's new name, refreshed with exactly one statement."""
    check(3, answer,
          (lambda v: v == new_name,
           "ex3 should be the writer's new name, read from ex3_author. session.get(), a plain "
           "select() and the attribute all give the stale name the identity map holds."),
          (lambda v: author.name == new_name,
           "ex3 is right, but ex3_author still shows the old name: update that object itself."),
          (lambda v: log.count == 1,
           f"ex3_author is fresh, but your code sent {log.count} statements, not 1."))
