"""Checks for 07 · The implicit IO checklist.

Each check judges the value, then the statements the scaffold's ``capture_sql`` block
recorded, so a right value reached with one statement per object, or without ORM
objects at all, is still "not yet".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import rows
from tutorial_kit.exercises import Rule, check, unanswered, unavailable
from tutorial_kit.models import Author
from tutorial_kit.seed import Dataset
from tutorial_kit.sql_capture import QueryLog

#: Every contributor's name and languages (NULL for a non-translator), in id order: the
#: rows themselves, read with plain SQL so the check does not use the loader it tests.
CONTRIBUTOR_ROWS = text(
    "SELECT c.name, t.languages FROM demo_contributor c "
    "LEFT JOIN demo_translator t ON t.id = c.id ORDER BY c.id")


async def ex1(answer: Any, log: QueryLog, *, engine: AsyncEngine) -> None:
    """Each contributor's ``(name, languages)``, from ORM objects, in at most two statements."""
    value_hint = ("one (name, languages) tuple per contributor, in id order, None for a "
                  "non-translator.")
    if unanswered(1, answer, value_hint):
        return
    right_value: Rule
    try:
        expected = await rows(engine, CONTRIBUTOR_ROWS)
        right_value = (lambda v: list(v) == expected, value_hint)
    except Exception as err:   # a verdict line, never a traceback
        right_value = unavailable("reading the contributors to compare", err,
                                  f"ex1 should be {value_hint}")
    # Judged by the statements sent: the ORM selects demo_contributor.kind (the
    # discriminator it reads to pick Contributor or Translator) whenever it builds these
    # objects.
    sql = [" ".join(s.split()) for s in log.sql()]
    check(1, answer,
          right_value,
          (lambda v: log.count <= 2,
           f"the list is right, but your code sent {log.count} statements: load the "
           "translators' own column with the query, not one object at a time."),
          (lambda v: len(log.connections()) == 1,
           f"the list is right, but your statements ran on {len(log.connections())} "
           "connections: use one session."),
          (lambda v: sql and all("demo_contributor.kind" in s for s in sql)
           and any("demo_translator.languages" in s for s in sql),
           "the list is right, but not built from ORM objects: a statement of yours loads no "
           "Contributor or Translator objects (it lacks demo_contributor.kind, the column the "
           "ORM reads to pick the class). Query Contributor with the ORM and let that load the "
           "translators' languages onto the objects."))


def ex2(answer: Any, log: QueryLog, *, detached: Any, new_name: str, data: Dataset) -> None:
    """The author ``merge()`` returns, with the new name and its books, in two statements."""
    titles = [b["title"] for b in data.books if b["author_id"] == 2]
    check(2, answer,
          (lambda a: isinstance(a, Author) and a is not detached,
           "ex2 should be the author merge() returns, a new object, not ex2_detached."),
          (lambda a: a.name == new_name,
           "ex2 does not carry the new name: merge ex2_detached instead of loading author 2 "
           "anew."),
          (lambda a: [book.title for book in a.books] == titles,
           "ex2.books was not loaded: the copy merge() returns has only what was asked for."),
          (lambda a: log.count == 2,
           f"the books are there, but your code sent {log.count} statements, not 2."),
          (lambda a: " IN (" in log.sql()[1],
           "two statements, but the books were loaded after the merge: give merge() the "
           "loader option."))
