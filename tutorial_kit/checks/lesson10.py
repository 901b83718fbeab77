"""Lesson 10 · Testing with pytest: the checks of its two exercises.

Each check writes the learner's answer into a small project of its own with
the notebook's ``run_exercise`` (which runs pytest there, in a child process)
and judges the run. Both add tests of their own, which the learner never saw,
to run the answer under other conditions: exercise 1 looks from a second
connection while a test's commit is in progress, asks the ``engine`` fixture's
pool whether the session's connection came from it and went back to it, and then
reads the ``book`` table; exercise 2 asks pytest for the fixture loop scope the ini
really set, so a silenced warning does not pass for a set option.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

from tutorial_kit.exercises import check, unavailable
from tutorial_kit.proc import Completed

RunExercise = Callable[[int, dict[str, str]], Awaitable[Completed]]

EX1_HINT = "ex1 should be the source of an async fixture named session, as a string."
EX1_RECIPE = ("The fixture: a connection begins a transaction, a session joins it in the mode "
              "that turns its own commits and rollbacks into savepoint operations, and the "
              "transaction is rolled back after the yield.")
EX2_HINT = "ex2 should be the text of pytest.ini, starting with the line [pytest]."
EX2_RUN_HINT = "The tests still run in loops other than the engine's."

#: Each marker below is an assertion message of ``EX1_CHECK_TESTS``/``EX1_CHECK_FIXTURE``;
#: finding one in pytest's output names the rule the fixture broke.
FROM_ENGINE = "check: the session's connection is not from the engine fixture"
COMMIT_SEEN = "check: another connection saw the test's commit"
TEST_OUTCOME = re.compile(r"^(FAILED|ERROR) \S+\.py::")
GARBAGE = "garbage collector is trying to clean up"
LEFT_OUT = "check: a connection stayed checked out after the test"

#: Appended to the learner's conftest: after every test (it is set up before the
#: learner's ``session``, so torn down after it), the engine's pool has all its
#: connections back. A connection left open is caught here, or, if Python freed it
#: first, by SQLAlchemy's warning that the garbage collector had to clean it up.
EX1_CHECK_FIXTURE = f'''

import pytest as _pytest


@_pytest.fixture(autouse=True)
def _check_connections_returned(engine):
    yield
    assert engine.pool.checkedout() == 0, "{LEFT_OUT}"
'''

#: Run after the lesson's three tests: the session's connection comes from ``engine``,
#: and a commit inside a test is seen by no other connection.
EX1_CHECK_TESTS = f'''
import pytest
from sqlalchemy import text

from bookshop import add_book

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_session_uses_the_engine_fixture(session, engine):
    await session.connection()
    assert engine.pool.checkedout() >= 1, "{FROM_ENGINE}"


async def test_a_commit_stays_inside_the_test(session, engine):
    assert await add_book(session, author_id=1, title="Unseen") is not None
    async with engine.connect() as other:
        seen = await other.scalar(text("SELECT count(*) FROM book"))
    assert seen == 6, "{COMMIT_SEEN}"
'''

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
FIXTURE_SCOPE_UNSET = "check: asyncio_default_fixture_loop_scope is unset"
#: Not an asyncio test: it reads the option as pytest parsed the ini.
EX2_CHECK_TEST = f'''
def test_fixture_loop_scope_is_set(pytestconfig):
    assert pytestconfig.getini("asyncio_default_fixture_loop_scope"), "{FIXTURE_SCOPE_UNSET}"
'''


def outcomes(run: Completed) -> list[str]:
    """pytest's FAILED/ERROR lines for tests (not the ERROR lines of captured logging)."""
    return [line for line in run.lines("FAILED", "ERROR", width=120)
            if TEST_OUTCOME.match(line)]


#: pytest's summary line when at least one test ran.
TESTS_RAN = re.compile(r"\b\d+ (passed|failed)\b")


def tests_ran(run: Completed) -> bool:
    """Whether pytest got as far as running a test (not stopped by the ini or an import)."""
    return bool(TESTS_RAN.search(run.tail(1)))


def pytest_says(run: Completed) -> str:
    """The first FAILED/ERROR line of a run, else its last line (stdout's, or stderr's
    when stdout has none: an unreadable ini or conftest is reported there), naming it
    when no test ran (for a hint)."""
    found = outcomes(run)
    if found:
        return found[0]
    last = run.tail(1) or run.tail(1, stream="stderr") or f"exit status {run.returncode}"
    return last if tests_ran(run) else f"{last} (no test ran)"


def asserted(run: Completed, marker: str) -> bool:
    """Whether a test failed with ``marker`` as its assertion message (pytest's ``E``
    lines; the marker also appears in the test source pytest may print)."""
    return re.search(rf"^E\s+AssertionError: {re.escape(marker)}", run.stdout, re.M) is not None


def ex1_cause(run: Completed) -> str:
    """What a failed run says about the fixture: the first cause found in pytest's output."""
    out = run.stdout + run.stderr
    failed = "\n".join(outcomes(run))
    if re.search(r"^E\s+fixture 'session' not found", out, re.M):
        return ("pytest found no fixture named session: define it at the top level of the "
                "source, decorated with @pytest_asyncio.fixture, as the engine fixture is.")
    if re.search(r"^E\s+.*MissingGreenlet", out, re.M):
        return ("Reading book.id after add_book's commit() loaded it again, which needs IO "
                "the test cannot do there: create the session with expire_on_commit=False.")
    if asserted(run, FROM_ENGINE):
        return ("the session's connection did not come from the `engine` fixture (a test of "
                "the check looked at its pool): open the connection with engine.connect().")
    if asserted(run, LEFT_OUT) or GARBAGE in out:
        return ("after a test, a connection was still checked out of the engine's pool: "
                "close the session and the connection when the test ends (async with).")
    if "test_each_test_starts_from_the_seed" in failed or asserted(run, COMMIT_SEEN):
        return ("a book a test committed was seen from outside that test (by another "
                "connection, or by the next test): the test's commits must stay inside a "
                "transaction of the connection, rolled back after the yield.")
    if "test_rollback_keeps_earlier_commits" in failed:
        return ("add_book's rollback() undid the test's earlier commit too: join the session "
                "in the mode that turns its own commits and rollbacks into savepoint "
                "operations.")
    return EX1_RECIPE


async def ex1(answer: Any, *, run_exercise: RunExercise,
              restore_books: Callable[[], Awaitable[bool]],
              engine_fixture: str, tests: str) -> None:
    """The transaction-per-test ``session`` fixture.

    The prompt's requirements, one rule each (the source is appended to
    ``engine_fixture``; ``tests`` are the three tests of *A transaction per test*):

    1. the three tests pass (each with its own hint: ``expire_on_commit``, the
       savepoint mode, the seed at each test's start);
    2. the session's connection comes from the ``engine`` fixture;
    3. a commit inside a test is seen by no other connection: one transaction per
       test, rolled back, not real commits cleaned up afterwards;
    4. the connection goes back to the engine's pool after each test;
    5. the ``book`` table is unchanged afterwards (``restore_books`` finds it as
       seeded; it puts the seed back exactly, before the run, so an earlier answer that
       changed the table does not fail this one, and after it, so the learner can try
       again).
    """
    if not (isinstance(answer, str) and "def session(" in answer):
        check(1, answer, (lambda v: isinstance(v, str) and "def session(" in v, EX1_HINT))
        return
    try:
        try:
            await restore_books()               # the seed, whatever an earlier try left
            run = await run_exercise(1, {
                "conftest.py": (engine_fixture + "\n\n" + textwrap.dedent(answer)
                                + EX1_CHECK_FIXTURE),
                "test_books.py": tests, "test_isolation.py": EX1_CHECK_TESTS})
        finally:
            left_rows = await restore_books()   # however the run ended, the seed is back
    except Exception as err:
        check(1, answer, unavailable("running the tests", err, EX1_RECIPE))
        return
    check(1, answer,
          (lambda v: run.returncode == 0, f"pytest says: {pytest_says(run)}. {ex1_cause(run)}"),
          (lambda v: GARBAGE not in run.stdout + run.stderr,
           "the tests pass, but SQLAlchemy warned that the garbage collector had to clean up a "
           "connection never returned to the pool: close the session and the connection "
           "when the test ends (async with)."),
          (lambda v: not left_rows,
           "the tests pass but changed the book table (rows added, removed or changed): roll "
           "back the connection's transaction after the yield, instead of committing it."))


async def ex2(answer: Any, *, run_exercise: RunExercise, engine_fixture: str) -> None:
    """A ``pytest.ini`` that runs a plainly marked project in one session-wide loop.

    The prompt's requirements, one rule each (``engine_fixture`` loses its
    ``loop_scope``; ``EX2_TESTS`` mark their tests with a plain ``asyncio`` mark):

    1. the three tests pass (so they share the engine's loop);
    2. the fixtures' default loop scope is set (read from pytest's parsed ini by a
       test of the check, so silencing the warning does not pass for it);
    3. and pytest-asyncio prints no deprecation warning about it.
    """
    if not (isinstance(answer, str) and answer.strip().startswith("[pytest]")):
        check(2, answer, (lambda v: isinstance(v, str) and v.strip().startswith("[pytest]"),
                          EX2_HINT))
        return
    conftest = engine_fixture.replace('scope="session", loop_scope="session"',
                                      'scope="session"')
    try:
        run = await run_exercise(2, {"pytest.ini": answer, "conftest.py": conftest,
                                     "test_loops.py": EX2_TESTS,
                                     "test_options.py": EX2_CHECK_TEST})
    except Exception as err:
        check(2, answer, unavailable("running the tests", err, EX2_RUN_HINT))
        return
    out = run.stdout + run.stderr
    loops_failed = [line for line in outcomes(run) if "test_options.py" not in line]
    deprecated = [line.strip() for line in out.splitlines() if "PytestDeprecationWarning" in line]
    check(2, answer,
          (lambda v: tests_ran(run),
           f"pytest says: {pytest_says(run)}. pytest could not run the tests with this ini: fix "
           "what it names."),
          (lambda v: not loops_failed and "passed" in run.tail(1),
           f"pytest says: {(loops_failed or [run.tail(1)])[0]}. {EX2_RUN_HINT}"),
          (lambda v: FIXTURE_SCOPE_UNSET not in out,
           "the tests pass, but asyncio_default_fixture_loop_scope is unset, so pytest-asyncio "
           "warns (a silenced warning leaves it unset): set it explicitly."),
          (lambda v: run.returncode == 0, f"pytest says: {pytest_says(run)}."),
          (lambda v: not deprecated,
           "the tests pass and the fixtures' loop scope is set, but pytest still prints a "
           f"deprecation warning: {deprecated[0] if deprecated else ''}. Change what it names."))
