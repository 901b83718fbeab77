"""Checks for 07 · The implicit IO checklist.

The scaffolds record with ``checks.watch(engine)``: the statements, and every object the
ORM built, in which session, whether inside ``merge()``, and what was loaded on it when
the block ended. So a right value reached with one statement per object, without ORM
objects, in two sessions, or with the books loaded before or after the merge, is still
"not yet".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tutorial_kit.checks.evidence import Watched, closed, plain, rows, unrecorded, watch
from tutorial_kit.exercises import Rule, check, unanswered, unavailable
from tutorial_kit.models import Author, Book
from tutorial_kit.seed import Dataset

__all__ = ["ex1", "ex2", "watch"]

#: Every contributor's name and languages (NULL for a non-translator), in id order: the
#: rows themselves, read with plain SQL so the check does not use the loader it tests.
CONTRIBUTOR_ROWS = text(
    "SELECT c.name, t.languages FROM demo_contributor c "
    "LEFT JOIN demo_translator t ON t.id = c.id ORDER BY c.id")


def _built_of(log: Watched, table: str) -> list[Any]:
    """What was built of a lesson-local hierarchy (its classes live in the notebook), by the
    base table: a Translator is a Contributor."""
    return [b for b in log.loaded if inspect(b.cls).base_mapper.local_table.name == table]


async def ex1(answer: Any, log: Watched, *, engine: AsyncEngine) -> None:
    """Each contributor's ``(name, languages)``, from ORM objects of one session, ≤ 2 statements.

    Requirements, from the prompt:
    1. ``ex1`` is one ``(name, languages)`` per contributor, in id order, ``None`` for a
       non-translator;
    2. built from ORM objects: a query on ``Contributor`` builds one per contributor;
    3. the languages arrive on the ``Translator`` objects themselves (loaded on them);
    4. at most two statements;
    5. one session;
    6. that session is closed (no connection left checked out).
    """
    value_hint = ("one (name, languages) tuple per contributor, in id order, None for a "
                  "non-translator.")
    if unanswered(1, answer, value_hint) or unrecorded(1, log):
        return
    right_value: Rule
    expected: list[tuple[Any, ...]] = []
    try:
        expected = await rows(engine, CONTRIBUTOR_ROWS)
        right_value = (lambda v: isinstance(v, list | tuple)
                       and [tuple(x) for x in v] == expected, f"ex1 should be {value_hint}")
    except Exception as err:   # a verdict line, never a traceback
        right_value = unavailable("reading the contributors to compare", err,
                                  f"ex1 should be {value_hint}")
    people = _built_of(log, "demo_contributor")
    translators = [b for b in people if "languages" in _columns(b.cls)]
    check(1, answer,
          plain(1, answer),
          right_value,
          (lambda v: len({b.identity for b in people}) >= len(expected),
           "the list is right, but not built from ORM objects: your code built "
           f"{len({b.identity for b in people})} Contributor objects for {len(expected)} "
           "contributors. Query Contributor with the ORM and read the tuples from the "
           "objects."),
          (lambda v: translators and all(b.at_end and "languages" in b.at_end
                                         for b in translators),
           "the list is right, but the Translator objects your query built never got their "
           "languages: they came from elsewhere (a query of columns, or your own data). Load "
           "the subclass column onto the objects with the query (§6)."),
          (lambda v: log.count <= 2,
           f"the list is right, but your code sent {log.count} statements: load the "
           "translators' own column with the query, not one object at a time."),
          (lambda v: len(log.sessions) == 1,
           f"the list is right, but your code used {len(log.sessions)} sessions: the prompt "
           "asks for one new session, with the languages loaded by its query."),
          closed(log))


def _columns(cls: type) -> set[str]:
    return {p.key for p in inspect(cls).column_attrs}


def ex2(answer: Any, log: Watched, *, detached: Any, new_name: str, data: Dataset) -> None:
    """The author ``merge()`` returns, with the new name and the books the merge loaded.

    Requirements, from the prompt:
    1. ``ex2`` is the author ``merge()`` returns: an ``Author``, not ``ex2_detached``;
    2. it carries the new name;
    3. its ``books`` are loaded, author 2's titles;
    4. the author was loaded by ``merge()`` itself,
    5. and so were the books (the loader option given to the merge);
    6. no commit (nothing written);
    7. at most two statements,
    8. all of them sent by the merge;
    9. the session is closed (no connection left checked out).
    """
    value_hint = "ex2 should be the author merge() returns, a new object, not ex2_detached."
    if unanswered(2, answer, value_hint) or unrecorded(2, log):
        return
    titles = [b["title"] for b in data.books if b["author_id"] == 2]
    authors = [b for b in log.of(Author) if b.identity == (2,)]
    books = log.of(Book)
    stray = [s for s, merged in zip(log.sql(), log.sent_in_merge, strict=False) if not merged]
    check(2, answer,
          plain(2, answer),
          (lambda a: isinstance(a, Author) and a is not detached, value_hint),
          (lambda a: inspect(a).dict.get("name") == new_name,
           "ex2 does not carry the new name: merge ex2_detached instead of loading author 2 "
           "anew."),
          (lambda a: "books" in inspect(a).dict
           and [inspect(b).dict.get("title") for b in a.books] == titles,
           "ex2.books was not loaded: the copy merge() returns has only what was asked for."),
          (lambda a: any(b.in_merge for b in authors),
           "author 2 was not loaded by merge(): your own query loaded it (before a merge, or "
           "instead of one), so merge() had nothing to load. Let merge() load it, and give "
           "merge() the loader option."),
          (lambda a: books and all(b.in_merge for b in books),
           "the books were loaded after the merge, by a load of their own: give merge() the "
           "loader option, so they come with it."),
          (lambda a: all(s.lstrip().upper().startswith("SELECT") for s in log.sql()),
           "the author and its books came with the merge, but your code then wrote to the "
           "database (an UPDATE, sent by a commit or a flush): the prompt asks for no commit; "
           "the merged copy only has to carry the new name."),
          (lambda a: log.count <= 2,
           f"the books came with the merge, but your code sent {log.count} statements, not "
           "at most 2."),
          (lambda a: not stray,
           f"the books came with the merge, but a statement of yours was not sent by it "
           f"({' '.join(stray[0].split())[:40]} …): the merge alone loads the author and its "
           "books." if stray else ""),
          closed(log))
