"""What the checks read for themselves: the database by plain SQL, a log's INSERTs, what
the ORM did during a cell (``watch``, the one recorder the scaffolds use), and the rules
every lesson shares (``plain``, ``closed``, ``unrecorded``).

Each read opens a connection of its own and closes it at once, so a check sees what
the learner's code committed, not what their session holds, and leaves nothing open.
The checks write their queries as plain SQL (or a column select) rather than the
ORM technique the exercise asks for, so no check shows the answer.
"""

from __future__ import annotations

import gc
import inspect as pyinspect
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

from greenlet import getcurrent
from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import Executable

from tutorial_kit.exercises import Rule, describe, line
from tutorial_kit.sql_capture import QueryLog, capture_sql

Params = Mapping[str, Any] | None


async def scalar(engine: AsyncEngine, statement: Executable, params: Params = None) -> Any:
    """The first column of the first row ``statement`` returns (``None`` for no row)."""
    async with engine.connect() as conn:
        return await conn.scalar(statement, params)


async def scalars(engine: AsyncEngine, statement: Executable, params: Params = None) -> list[Any]:
    """The first column of every row ``statement`` returns."""
    async with engine.connect() as conn:
        return list(await conn.scalars(statement, params))


async def rows(engine: AsyncEngine, statement: Executable,
               params: Params = None) -> list[tuple[Any, ...]]:
    """Every row ``statement`` returns, each as a plain tuple."""
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(statement, params)]


def inserts(log: QueryLog) -> list[str]:
    """The head of each INSERT in ``log``, ``"INSERT INTO a"``: which tables, in which order."""
    return [sql.split("(")[0].strip() for sql in log.sql() if sql.startswith("INSERT")]


def primary_key(obj: Any) -> Any:
    """``obj``'s primary key, read from its identity: no attribute access, so no IO even
    when it is expired or detached (``None`` while it is pending)."""
    identity = inspect(obj).identity
    return identity[0] if identity else None


def table_name(obj_or_class: Any) -> str:
    """The table ``obj_or_class`` is mapped to: how a check tells apart the classes a
    notebook maps itself (``A``, ``B``), which it cannot import."""
    return str(inspect(obj_or_class).mapper.local_table.name)


# --- The pool: connections the learner's code still holds ---------------------------------


def checked_out(engine: AsyncEngine) -> int:
    """Connections checked out of ``engine``'s pool right now (a ``NullPool`` keeps none)."""
    pool = engine.pool
    return pool.checkedout() if isinstance(pool, QueuePool) else 0


# --- What a cell did through the ORM, not only the SQL it sent ---------------------------

#: ``Session.merge()`` (and ``merge_all()`` on 2.1): what is loaded or sent while one of
#: them runs came with the merge.
_MERGE_CODE: frozenset[CodeType] = frozenset(
    method.__code__ for method in (getattr(Session, "merge", None),
                                   getattr(Session, "merge_all", None)) if method is not None)


def _in_merge() -> bool:
    """True while ``merge()`` runs: no event brackets a merge, so the call stack tells."""
    frame = pyinspect.currentframe()
    while frame is not None:
        if frame.f_code in _MERGE_CODE:
            return True
        frame = frame.f_back
    return False


@dataclass
class OrmRun:
    """One ``session.execute()`` (or ``scalars()``, ``scalar()``…) the ORM saw."""

    session: int                     #: ``Session.hash_key`` of the session it ran in
    statement: Executable
    #: True when the statement names mapped classes (``insert(Review)``), False for a
    #: statement on a plain ``Table`` (``insert(Review.__table__)``), which runs as Core.
    is_orm_statement: bool
    #: The parameters passed beside the statement: a list of dicts for an ORM bulk INSERT.
    parameters: Any
    #: True for a load a relationship loader ran (``selectinload``'s second SELECT…).
    relationship_load: bool = False


@dataclass
class Loaded:
    """One object a query built from a row inside a ``watch`` block."""

    #: The object itself, so a check can inspect its state after the cell (``None`` when
    #: ``watch(keep=False)``: then the block holds no object).
    obj: Any
    cls: type
    identity: tuple[Any, ...] | None
    #: ``Session.hash_key`` of the session that built it.
    session: int
    #: Statements sent when it was built: 1 means the first statement's rows built it.
    statement: int
    #: Which fetch built it: the ORM builds one batch per trip into SQLAlchemy's greenlet.
    batch: int
    #: Built while ``merge()`` ran.
    in_merge: bool
    #: Built inside the call that executed its statement (a buffered ``execute()``, or a
    #: sync ``Session`` inside ``run_sync``), not by a fetch of an async stream after it.
    in_execute: bool
    #: Mapped attributes already set when it was built (by the statement itself).
    at_load: frozenset[str]
    #: Its column values as built (the very objects, so a copy of a value is told apart).
    values: Mapping[str, Any]
    #: Mapped attributes loaded when the block ended (``None`` when ``keep=False``).
    at_end: frozenset[str] | None = None


@dataclass
class Watched(QueryLog):
    """A ``capture_sql`` log (``show()``, ``count``, ``sql()``…), plus what the ORM, the DDL
    machinery and the pool did in the same block.

    ``executed`` holds every statement object handed to a connection (a ``TextClause``, a
    ``CreateIndex``, an ORM ``Select`` …), ``orm`` every execution inside a ``Session``,
    ``loaded`` every object a query built and ``flushes`` the objects each flush inserted,
    each with its session's ``hash_key``. So a check judges what the learner's code did, not
    only the value it produced: titles copied from the seed data, a relationship filled
    from the identity map after the query, a session left open, all show.
    """

    executed: list[Any] = field(default_factory=list)
    orm: list[OrmRun] = field(default_factory=list)
    loaded: list[Loaded] = field(default_factory=list)
    flushes: list[tuple[int, list[Any]]] = field(default_factory=list)
    #: Per statement: True if it was sent while ``merge()`` ran.
    sent_in_merge: list[bool] = field(default_factory=list)
    #: ``Session.hash_key`` of every session that began a transaction or built an object.
    sessions: set[int] = field(default_factory=set)
    #: Per class: the most objects of that class one session's identity map held while
    #: one was being built (per class, so the books loaded with reviews do not count as
    #: reviews held).
    peak_held: dict[type, int] = field(default_factory=dict)
    checked_out_before: int = 0
    #: Connections checked out when the block ended, and those the garbage collector
    #: handed back during it (a dropped, unclosed connection: detached, not checked in).
    checked_out_after: int | None = None
    collected: int = 0
    #: Per COMMIT on a connection of the engine: how many statements were sent before it.
    commits: list[int] = field(default_factory=list)
    engine: AsyncEngine | None = None


    @property
    def flushed(self) -> list[Any]:
        """Every object the recorded flushes inserted, in order."""
        return [obj for _session, objs in self.flushes for obj in objs]
    def of(self, cls: type) -> list[Loaded]:
        """What was built of ``cls`` (subclasses included), in order."""
        return [b for b in self.loaded if issubclass(b.cls, cls)]

    def held(self, cls: type) -> int:
        """The most ``cls`` objects (subclasses included) one session held at once."""
        return max((n for c, n in self.peak_held.items() if issubclass(c, cls)), default=0)

    def batches(self, cls: type) -> list[int]:
        """How many ``cls`` objects each fetch built, in order."""
        sizes: dict[int, int] = {}
        for b in self.of(cls):
            sizes[b.batch] = sizes.get(b.batch, 0) + 1
        return list(sizes.values())

    def left_open(self) -> int:
        """Connections checked out of the pool now that were not before the block.

        Counted without collecting garbage first: a session the cell dropped unclosed still
        holds its connection until the collector happens to run, and that is the leak; one
        the collector already handed back during the block counts too.
        """
        if self.engine is None:
            return 0
        now = checked_out(self.engine) if self.checked_out_after is None \
            else self.checked_out_after
        return max(0, now - self.checked_out_before) + self.collected


@contextmanager
def watch(engine: AsyncEngine, *, keep: bool = True) -> Iterator[Watched]:
    """``capture_sql(engine)``, plus the ORM's, the DDL's and the pool's story, for one cell.

    The ORM listeners sit on the ``Session`` class for the block only, so they see the
    sessions the cell creates (an ``AsyncSession`` runs a ``Session`` inside).
    ``keep=True`` holds each loaded object, to inspect it after the cell and note what is
    loaded on it when the block ends; ``keep=False`` holds none, for a block whose memory
    (what the session holds) is being measured.
    """
    gc.collect()   # an earlier try's dropped connection goes back now, not during the block
    with capture_sql(engine) as log:
        seen = Watched(statements=log.statements,   # the same list: capture_sql appends
                       engine=engine, checked_out_before=checked_out(engine))
        # The greenlet of the current fetch, its number, and the greenlet that executed the
        # last statement: an async stream fetches each batch in a greenlet of its own.
        fetch: list[Any] = [None, 0, None]

        def executed(conn: Any, clause: Any, *args: Any) -> None:
            seen.executed.append(clause)

        def sent(*_args: Any) -> None:
            seen.sent_in_merge.append(_in_merge())

        def orm_execute(state: ORMExecuteState) -> None:
            if not state.is_relationship_load:
                fetch[2] = getcurrent()
            seen.orm.append(OrmRun(state.session.hash_key, state.statement,
                                   state.is_orm_statement, state.parameters,
                                   state.is_relationship_load))

        def began(session: Session, *_args: Any) -> None:
            seen.sessions.add(session.hash_key)

        def loaded(session: Session, obj: Any) -> None:
            state = inspect(obj)
            mapper = state.mapper
            if getcurrent() is not fetch[0]:
                fetch[0], fetch[1] = getcurrent(), fetch[1] + 1
            seen.sessions.add(session.hash_key)
            identity_class = state.key[0] if state.key else mapper.class_
            same_class = sum(1 for key in session.identity_map
                             if key[0] is identity_class)
            seen.peak_held[mapper.class_] = max(seen.peak_held.get(mapper.class_, 0),
                                                same_class)
            seen.loaded.append(Loaded(
                obj if keep else None, mapper.class_, state.identity, session.hash_key,
                len(seen.statements), fetch[1], _in_merge(), getcurrent() is fetch[2],
                frozenset(k for k in state.dict if k in mapper.attrs),
                {p.key: state.dict[p.key] for p in mapper.column_attrs if p.key in state.dict}))

        def flushed(session: Session, _context: Any) -> None:
            if session.new:   # a flush of updates only inserts nothing: not a flush of ours
                seen.flushes.append((session.hash_key, list(session.new)))

        def detached(*_args: Any) -> None:
            seen.collected += 1

        def committed(_conn: Any) -> None:
            seen.commits.append(len(seen.statements))

        hooks: list[tuple[Any, str, Callable[..., None]]] = [
            (engine.sync_engine, "before_execute", executed),
            (engine.sync_engine, "before_cursor_execute", sent),
            (Session, "do_orm_execute", orm_execute),
            (Session, "after_begin", began),
            (Session, "loaded_as_persistent", loaded),
            (Session, "after_flush", flushed),
            (engine.sync_engine.pool, "detach", detached),
            (engine.sync_engine, "commit", committed),
        ]
        for target, name, fn in hooks:
            event.listen(target, name, fn)
        try:
            yield seen
        finally:
            seen.checked_out_after = checked_out(engine)
            for target, name, fn in hooks:
                event.remove(target, name, fn)
            fetch.clear()
            for b in seen.loaded:
                if b.obj is not None:
                    state = inspect(b.obj)
                    b.at_end = frozenset(k for k in state.dict if k in state.mapper.attrs)


_NOT_CODE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\$(\w*)\$.*?\$\1\$", re.S)


def sql_code(sql: str) -> str:
    """``sql`` without its comments and quoted literals: what the server will run as code.

    ``SELECT 'tutorial' -- current_database()`` names the function only in a comment;
    this leaves ``SELECT``, so a check can ask which functions a statement really calls.
    """
    return _NOT_CODE.sub(" ", sql)


def bound_values(params: Any) -> list[Any]:
    """The values bound to one statement's parameters, whatever the driver's shape."""
    if isinstance(params, Mapping):
        return list(params.values())
    if isinstance(params, list | tuple):
        return list(params)
    return [] if params is None else [params]


# --- Rules every lesson shares --------------------------------------------------------------


def plain(number: int, answer: Any) -> Rule:
    """A first rule: an exception object is not an answer (``verdict`` itself names an
    un-awaited coroutine, before any rule runs)."""
    if isinstance(answer, BaseException):
        return (lambda _a: False,
                f"ex{number} is an exception object ({describe(answer)}), not an answer: "
                "assign what your code computes, not the error it caught.")
    return (lambda _a: True, "")


def unrecorded(number: int, log: Any) -> bool:
    """True, with the not-yet line printed, if ``log`` is not what ``watch`` records.

    An older scaffold (or an edited first line) hands the check something else; every
    later rule reads the recording, so this is judged before any of them.
    """
    if isinstance(log, Watched):
        return False
    print(line(number, f"ex{number}_log is not what checks.watch(engine) records: keep "
                       f"the scaffold's first line, with checks.watch(engine) as "
                       f"ex{number}_log:, and run the cell again."))
    return True


def closed(log: Watched, what: str = "session") -> Rule:
    """The block must give back every connection it checked out (the lessons' rule)."""
    return (lambda _a: log.left_open() == 0,
            f"your code left {log.left_open()} connection(s) checked out of the pool: a {what} "
            "opened without async with stays open (with its transaction) until you close it. "
            "Use async with, or await its close(); one left open by an earlier try stays "
            "open until you close it or restart the kernel.")
