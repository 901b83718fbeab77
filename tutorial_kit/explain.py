"""``%load_ext tutorial_kit``: a learner's own async-ORM error, explained in a few lines.

A ``MissingGreenlet`` from a learner's cell is a 200-line traceback through greenlet and
SQLAlchemy internals that never says which attribute did IO, or why. The lessons know
both. Loaded as an IPython extension (IPython's documented ``load_ipython_extension``
hook and ``set_custom_exc``), this module turns the errors below into one line for the
error itself and a short paragraph: what did IO or failed (``Class.attribute`` and the
kind of load), the line of the learner's cell that triggered it, and the lesson section
that shows the fix. ``%tb`` right after shows the full traceback.

What is named comes from the objects involved, never from guessing: the attribute
descriptor (``sqlalchemy.orm.QueryableAttribute``) being read and ``sqlalchemy.inspect()``
of the instance it was read on (expired, unloaded, detached). The traceback's frames are
only searched for those objects, so this works the same on SQLAlchemy 2.0 and 2.1.
"""

from __future__ import annotations

import contextlib
import linecache
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect
from sqlalchemy.orm import ColumnProperty, QueryableAttribute, RelationshipProperty
from sqlalchemy.orm.exc import DetachedInstanceError

from tutorial_kit.errors import TutorialError, one_line

#: The most lines an explanation takes, the error's own line and the ``%tb`` hint included.
MAX_LINES = 15


@dataclass(frozen=True)
class Section:
    """Where a lesson shows the fix: the notebook and the heading of its section."""

    notebook: str   # 04_eager_loading.ipynb
    title: str      # 04 · Eager loading compared (the registry's title)
    heading: str    # The failure: a lazy load in async code

    def __str__(self) -> str:
        return f'{self.title}, section "{self.heading}" ({self.notebook})'


# tests/test_explain.py keeps every Section equal to a registered lesson and a heading in it.
LAZY = Section("04_eager_loading.ipynb", "04 · Eager loading compared",
               "The failure: a lazy load in async code")
EXPIRED_ON_COMMIT = Section("06_expire_on_commit.ipynb", "06 · expire_on_commit",
                            "Four fixes, side by side")
EXPIRED = Section("07_implicit_io_checklist.ipynb", "07 · Every implicit IO point",
                  "2. Expired attributes")
DEFERRED = Section("07_implicit_io_checklist.ipynb", "07 · Every implicit IO point",
                   "3. Deferred columns")
SERVER_VALUE = Section("07_implicit_io_checklist.ipynb", "07 · Every implicit IO point",
                       "4. UPDATE-time server values")
SYNC_CODE = Section("07_implicit_io_checklist.ipynb", "07 · Every implicit IO point",
                    "12. Running sync code with run_sync")
DETACHED = Section("06_expire_on_commit.ipynb", "06 · expire_on_commit",
                   "Detached objects: returning ORM objects from a function")
SHARED_SESSION = Section("08_concurrency.ipynb", "08 · Concurrency",
                         "What goes wrong when tasks share one session")
PENDING_ROLLBACK = Section("14_timeouts_and_failures.ipynb",
                           "14 · Timeouts, cancellation and failures",
                           "A client-side timeout: `asyncio.timeout`")
OTHER_LOOP = Section("10_testing_with_pytest.ipynb", "10 · Testing with pytest",
                     "The failure: one engine, two event loops")
LOST_CONNECTION = Section("14_timeouts_and_failures.ipynb",
                          "14 · Timeouts, cancellation and failures", "A dropped connection")
SECTIONS = (LAZY, EXPIRED_ON_COMMIT, EXPIRED, DEFERRED, SERVER_VALUE, SYNC_CODE, DETACHED,
            SHARED_SESSION, PENDING_ROLLBACK, OTHER_LOOP, LOST_CONNECTION)


@dataclass(frozen=True)
class Explanation:
    what: str      # what did IO or failed, and which kind
    why: str       # one or two sentences
    fix: str       # what to write instead
    section: Section


@dataclass(frozen=True)
class Read:
    """An ORM attribute being read when the error was raised."""

    attribute: QueryableAttribute[Any]
    instance: object

    @property
    def name(self) -> str:
        return f"{self.attribute.class_.__name__}.{self.attribute.key}"


# --- finding the attribute and the learner's line ------------------------------------------

def _frames(tb: TracebackType | None) -> Iterator[tuple[FrameType, int]]:
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


def attribute_read(tb: TracebackType | None) -> Read | None:
    """The outermost ORM attribute read in the traceback: the one the learner's code did.

    A descriptor's ``__get__`` frame holds the attribute and the instance it is read on;
    they are recognised by type, not by SQLAlchemy's local variable names.
    """
    for frame, _ in _frames(tb):
        if frame.f_code.co_name != "__get__":
            continue
        values = list(frame.f_locals.values())
        attr = next((v for v in values if isinstance(v, QueryableAttribute)), None)
        if attr is None:
            continue
        instance = next((v for v in values if isinstance(v, attr.class_)), None)
        if instance is not None:
            return Read(attr, instance)
    return None


def cell_line(tb: TracebackType | None,
              cell_name: Callable[[str], tuple[str, str] | None]) -> str | None:
    """``line 3 of In[7]: print(author.books)``: the innermost frame in a notebook cell.

    ``cell_name`` is IPython's ``shell.compile.format_code_name``, which knows the file
    names it gave the cells.
    """
    found = None
    for frame, lineno in _frames(tb):
        named = cell_name(frame.f_code.co_filename)
        if named is not None:
            code = linecache.getline(frame.f_code.co_filename, lineno).strip()
            found = f"line {lineno} of {named[1]}: {code}"
    return found


# --- what each error means -----------------------------------------------------------------

def _server_computed(prop: ColumnProperty[Any]) -> bool:
    column = prop.columns[0]
    return (column.server_default is not None or column.server_onupdate is not None
            or getattr(column.onupdate, "is_clause_element", False))


def _attribute_kind(read: Read, detached: bool) -> Explanation:
    state = inspect(read.instance)
    prop = read.attribute.property
    key = read.attribute.key
    closed = ("its session is closed or the object was expunged, so nothing can load it"
              if detached else "async code cannot do IO behind an attribute access")
    whole = (" as commit() does with expire_on_commit=True (the default), and rollback() "
             "and expire_all() too")
    if isinstance(prop, RelationshipProperty) and state.expired:
        # Loaded once (selectinload, say), then unloaded when the object was expired.
        return Explanation(
            f"{read.name}, a relationship unloaded when its object was expired as a whole,"
            f"{whole}",
            f"reading it would load it again, and {closed}.",
            "if commit() expired it: async_sessionmaker(..., expire_on_commit=False); "
            f"otherwise await session.refresh(obj, [{key!r}]) before reading.",
            DETACHED if detached else EXPIRED_ON_COMMIT)
    if isinstance(prop, RelationshipProperty):
        return Explanation(
            f"{read.name}, a lazy load of a relationship (lazy={prop.lazy!r})",
            f"the collection or object was not loaded, and {closed}.",
            "load it with the query: a loader option on the path that reaches it "
            f"(selectinload({read.name}) when you select {read.attribute.class_.__name__}, "
            "chained after the relationship that leads there otherwise), or "
            f"await obj.awaitable_attrs.{key} while the session is open.",
            DETACHED if detached else LAZY)
    if key in state.expired_attributes and state.expired:
        return Explanation(
            f"{read.name}, an expired attribute: the whole object was expired,{whole}",
            f"reading it would reload the row, and {closed}.",
            "if commit() expired it: async_sessionmaker(..., expire_on_commit=False); "
            "otherwise await session.refresh(obj) before reading.",
            DETACHED if detached else EXPIRED_ON_COMMIT)
    if key in state.expired_attributes and isinstance(prop, ColumnProperty) \
            and _server_computed(prop):
        return Explanation(
            f"{read.name}, a value the database computes (a server default or onupdate), "
            "expired and not loaded again",
            "a flush expires such a value unless the mapper fetches it back (or "
            f"session.expire() did), and {closed}.",
            "eager_defaults=True in the mapper (it comes back with RETURNING), or await "
            f"session.refresh(obj, [{key!r}]).",
            SERVER_VALUE)
    if key in state.expired_attributes:
        return Explanation(
            f"{read.name}, an expired attribute: expired by session.expire(), by a refresh, "
            "or by a flush that sent a SQL expression for it",
            f"reading it would reload it, and {closed}.",
            f"await session.refresh(obj, [{key!r}]) before reading it.", EXPIRED)
    if isinstance(prop, ColumnProperty) and prop.deferred:
        return Explanation(
            f"{read.name}, a deferred column (deferred=True in its mapping)",
            f"the query did not load it, and {closed}.",
            f"undefer it in the query (options(undefer({read.name}))), or await "
            f"obj.awaitable_attrs.{key}.", DEFERRED)
    return Explanation(
        f"{read.name}, a column the query did not load (defer() or load_only())",
        f"reading it would load it, and {closed}.",
        "load it in the query, or await obj.awaitable_attrs." + key, DEFERRED)


def _text(err: BaseException) -> str:
    return str(err).lower()


def _from_asyncpg(tb: TracebackType | None) -> bool:
    """True if the traceback runs through asyncpg's own code (its connect, its protocol)."""
    return any(f"{os.sep}asyncpg{os.sep}" in frame.f_code.co_filename for frame, _ in _frames(tb))


def _lost_connection(err: BaseException, tb: TracebackType | None) -> bool:
    if isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated:
        return True
    if isinstance(err, ConnectionRefusedError | ConnectionResetError):
        return True
    # A stopped server's socket file is gone: connecting raises a bare FileNotFoundError.
    # (Not every OSError: asyncpg's command_timeout is a TimeoutError, and a misspelt host
    # a socket.gaierror; neither means the server went away.)
    if isinstance(err, FileNotFoundError) and _from_asyncpg(tb):
        return True
    said = _text(err)
    return any(words in said for words in (
        "connection is closed", "connection was closed in the middle of operation",
        "the database system is shutting down", "terminating connection due to administrator",
        "connection refused", "server closed the connection"))


def explain(err: BaseException, tb: TracebackType | None) -> Explanation | None:
    """What ``err`` means, or None for an error this module does not know."""
    if isinstance(err, TutorialError):
        return None  # a setup problem already prints its own paragraph
    if isinstance(err, sa_exc.MissingGreenlet | DetachedInstanceError):
        detached = isinstance(err, DetachedInstanceError)
        read = attribute_read(tb)
        if read is not None:
            return _attribute_kind(read, detached)
        if not detached:
            return Explanation(
                "synchronous SQLAlchemy code that does IO, called outside greenlet_spawn",
                "only code that AsyncSession/AsyncConnection runs for you (or run_sync) "
                "may do IO from a plain function.",
                "await the async API, or pass the function to await session.run_sync(fn).",
                SYNC_CODE)
    if isinstance(err, sa_exc.PendingRollbackError):
        return Explanation(
            "the session's transaction: an earlier statement or flush in it failed",
            "after a failure the transaction must be rolled back before the session is "
            "used again.",
            "await session.rollback() (async with session.begin() does it for you), then "
            "retry the work.", PENDING_ROLLBACK)
    said = _text(err)
    if (isinstance(err, sa_exc.InvalidRequestError) and getattr(err, "code", None) == "isce") \
            or isinstance(err, sa_exc.IllegalStateChangeError) \
            or "another operation is in progress" in said:
        return Explanation(
            "one AsyncSession (or one connection) used by two tasks at the same time",
            "a session and its connection run one operation at a time; asyncio.gather "
            "over one session starts several.",
            "give each task its own session: async with Session() as session: inside the "
            "task.", SHARED_SESSION)
    if isinstance(err, RuntimeError) and ("attached to a different loop" in said
                                          or "event loop is closed" in said):
        return Explanation(
            "a connection made on one event loop, used on another (or after it closed)",
            "an engine's pooled connections belong to the loop that opened them: "
            "asyncio.run() per call, a thread, or a test's own loop is another loop.",
            "await engine.dispose() before the loop ends, create the engine on the loop "
            "that uses it, or use poolclass=NullPool.", OTHER_LOOP)
    if _lost_connection(err, tb):
        return Explanation(
            "the connection to PostgreSQL: the server closed it, or is not running",
            "the server stopped or restarted (make stop, a reboot), or it ended this "
            "connection.",
            "make db (or rerun the notebook's setup cell, which starts the embedded "
            "server), then rerun the cell; pool_pre_ping=True replaces dropped "
            "connections.", LOST_CONNECTION)
    return None


def render(err: BaseException, tb: TracebackType | None,
           cell_name: Callable[[str], tuple[str, str] | None]) -> list[str] | None:
    """The lines shown instead of the traceback (at most MAX_LINES), or None."""
    found = explain(err, tb)
    if found is None:
        return None
    where = cell_line(tb, cell_name)
    # Plain text, no ANSI colour: the book shows lesson 04's copy of it, where IPython's
    # red fails the contrast an accessible page needs.
    lines = [one_line(err),
             f"What: {found.what}.",
             f"Why: {found.why}",
             *([f"Where: {where}"] if where else []),
             f"Fix: {found.fix}",
             f"Shown in: {found.section}.",
             "The full traceback: run %tb in the next cell."]
    return lines[:MAX_LINES]


# --- the IPython extension ---------------------------------------------------------------

#: The exception types the handler sees; any other error keeps IPython's own traceback.
#: (No SyntaxError: IPython sends compile errors through this handler too. asyncpg's own
#: InterfaceError is "another operation is in progress" on a driver connection.)
HANDLED: tuple[type[BaseException], ...] = (
    sa_exc.SQLAlchemyError, asyncpg.InterfaceError, RuntimeError, OSError)


def _handler(shell: Any, etype: type[BaseException], value: BaseException,
             tb: TracebackType | None, tb_offset: int | None = None) -> None:
    lines = render(value, tb, shell.compile.format_code_name)
    if lines is not None:
        def once() -> list[str]:
            # Shown once: %tb asks again and then gets IPython's full traceback.
            del value._render_traceback_  # type: ignore[attr-defined]
            return lines
        # An exception type with __slots__ cannot take it: shown as it is, then.
        with contextlib.suppress(AttributeError):
            value._render_traceback_ = once  # type: ignore[attr-defined]
    # showtraceback records the error for %tb (sys.last_*) and asks _render_traceback_.
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset, running_compiled_code=True)


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext tutorial_kit``: explain the errors above in every later cell."""
    shell.set_custom_exc(HANDLED, _handler)


def unload_ipython_extension(shell: Any) -> None:
    shell.set_custom_exc((), None)
