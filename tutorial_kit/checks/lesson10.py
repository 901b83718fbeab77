"""Lesson 10 · Testing with pytest: the checks of its two exercises.

Each check writes the learner's answer into a small project of its own with
the notebook's ``run_exercise`` (which runs pytest there, in a child process)
and judges the run: its exit code, its warnings, and for exercise 1 whether
the ``book`` table was left as the seed made it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tutorial_kit.exercises import check, unavailable
from tutorial_kit.proc import Completed

RunExercise = Callable[[int, dict[str, str]], Awaitable[Completed]]

EX1_HINT = "ex1 should be the source of an async fixture named session, as a string."
EX1_RUN_HINT = ("Each test must start from the seed, and add_book's rollback() must not undo "
                "the test's earlier commit.")
EX2_HINT = "ex2 should be the text of pytest.ini, starting with the line [pytest]."
EX2_RUN_HINT = "The tests still run in loops other than the engine's."

#: Exercise 2's tests: three tests in the default loop scope, one engine among them.
EX2_TESTS = '''
import pytest
from sqlalchemy import text

pytestmark = pytest.mark.asyncio


async def test_one(engine):
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM book")) == 6


async def test_two(engine):
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT 2")) == 2


async def test_three(engine):
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT 3")) == 3
'''


def pytest_says(run: Completed) -> str:
    """The first FAILED/ERROR line of a run, else its summary line (for a hint)."""
    return (run.lines("FAILED", "ERROR", width=120) or [run.tail(1)])[0]


async def ex1(answer: Any, *, run_exercise: RunExercise,
              restore_books: Callable[[], Awaitable[bool]],
              engine_fixture: str, tests: str) -> None:
    """The transaction-per-test ``session`` fixture.

    Its source is appended to ``engine_fixture``; ``tests`` (the three tests of
    *A transaction per test*) must pass against it, and ``restore_books`` must
    find no row left behind (it deletes any, so the learner can try again).
    """
    if not (isinstance(answer, str) and "def session(" in answer):
        check(1, answer, (lambda v: isinstance(v, str) and "def session(" in v, EX1_HINT))
        return
    try:
        try:
            run = await run_exercise(1, {"conftest.py": engine_fixture + "\n\n" + answer,
                                         "test_books.py": tests})
        finally:
            left_rows = await restore_books()   # however the run ended, the seed is back
    except Exception as err:
        check(1, answer, unavailable("running the tests", err, EX1_RUN_HINT))
        return
    check(1, answer,
          (lambda v: run.returncode == 0,
           f"pytest says: {pytest_says(run)}. {EX1_RUN_HINT}"),
          (lambda v: not left_rows,
           "the tests pass but left rows in the table: roll back the connection's transaction "
           "after the yield, instead of committing through the engine."))


async def ex2(answer: Any, *, run_exercise: RunExercise, engine_fixture: str) -> None:
    """A ``pytest.ini`` that runs a plainly marked project in one session-wide loop.

    ``engine_fixture`` loses its ``loop_scope``; with the learner's ini the
    three tests of ``EX2_TESTS`` must pass and pytest-asyncio must not warn
    that the fixtures' default loop scope is unset.
    """
    if not (isinstance(answer, str) and answer.strip().startswith("[pytest]")):
        check(2, answer, (lambda v: isinstance(v, str) and v.strip().startswith("[pytest]"),
                          EX2_HINT))
        return
    conftest = engine_fixture.replace('scope="session", loop_scope="session"',
                                      'scope="session"')
    try:
        run = await run_exercise(2, {"pytest.ini": answer, "conftest.py": conftest,
                                     "test_loops.py": EX2_TESTS})
    except Exception as err:
        check(2, answer, unavailable("running the tests", err, EX2_RUN_HINT))
        return
    check(2, answer,
          (lambda v: run.returncode == 0,
           f"pytest says: {pytest_says(run)}. {EX2_RUN_HINT}"),
          (lambda v: "PytestDeprecationWarning" not in run.stdout + run.stderr,
           "the tests pass, but pytest-asyncio warns that the default loop scope of fixtures "
           "is unset: set it explicitly."))
