"""``%load_ext tutorial_kit`` in a real kernel: each error a learner makes, explained.

The notebook below defines models of its own (not the tutorial's), in a schema of its
own, and makes every mistake the explainer knows once, one per cell. Each error output
must be at most MAX_LINES lines and name the attribute, the kind of load, the line of
the cell and the lesson section; an error it does not know keeps IPython's traceback;
``%tb`` after an explained error shows the full one.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import nbformat
import pytest

from tutorial_harness import REPO
from tutorial_harness.lessons import lessons
from tutorial_harness.runner import kernel_env, run_notebook
from tutorial_kit import explain
from tutorial_kit.database import start_embedded

SETUP = '''\
%load_ext tutorial_kit
import asyncio, datetime, os, threading
from sqlalchemy import ForeignKey, String, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.orm import (DeclarativeBase, Mapped, load_only, mapped_column, relationship,
                            selectinload)

class Base(DeclarativeBase):
    pass

class Shelf(Base):
    __tablename__ = "shelf"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(40))
    notes: Mapped[str] = mapped_column(String(200), deferred=True, default="")
    touched: Mapped[datetime.datetime] = mapped_column(
        server_default=func.now(), onupdate=func.now())
    jars: Mapped[list["Jar"]] = relationship(back_populates="shelf")

class Jar(Base):
    __tablename__ = "jar"
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelf.id"))
    shelf: Mapped[Shelf] = relationship(back_populates="jars")

SCHEMA = "SCHEMA_NAME"
engine = create_async_engine(os.environ["DATABASE_URL"],
                             connect_args={"server_settings": {"search_path": SCHEMA}})
Session = async_sessionmaker(engine)
async with engine.begin() as conn:
    await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    await conn.run_sync(Base.metadata.create_all)
async with Session.begin() as s:
    s.add(Shelf(id=1, label="top", jars=[Jar(id=1), Jar(id=2)]))
'''

#: (name, cell, what each must say). The pattern for "Where" is checked for all.
CASES = [
    ("lazy", '''async with Session() as s:
    shelf = await s.get(Shelf, 1)
    print(len(shelf.jars))''',
     ["MissingGreenlet", "Shelf.jars, a lazy load of a relationship", str(explain.LAZY),
      "line 3 of In[", "print(len(shelf.jars))"]),
    ("expired", '''async with Session() as s:
    shelf = await s.get(Shelf, 1)
    await s.commit()
    shelf.label''',
     ["MissingGreenlet", "Shelf.label, an expired attribute: the whole object was expired",
      "expire_on_commit=False", str(explain.EXPIRED_ON_COMMIT), "shelf.label"]),
    ("deferred", '''async with Session() as s:
    shelf = await s.get(Shelf, 1)
    shelf.notes''',
     ["Shelf.notes, a deferred column", str(explain.DEFERRED)]),
    ("load_only", '''async with Session() as s:
    shelf = await s.scalar(select(Shelf).options(load_only(Shelf.label)))
    shelf.touched''',
     ["Shelf.touched, a column the query did not load", str(explain.DEFERRED)]),
    ("server value", '''async with Session() as s:
    shelf = await s.get(Shelf, 1)
    shelf.label = "middle"
    await s.flush()
    print(shelf.touched)''',
     ["Shelf.touched, a value the database computes", "eager_defaults=True",
      str(explain.SERVER_VALUE)]),
    ("detached", '''async with Session() as s:
    shelf = await s.get(Shelf, 1)
shelf.jars''',
     ["DetachedInstanceError", "Shelf.jars, a lazy load", "session is closed",
      str(explain.DETACHED)]),
    ("sync call", '''async with Session() as s:
    s.sync_session.execute(text("SELECT 1"))''',
     ["MissingGreenlet", "synchronous SQLAlchemy code", str(explain.SYNC_CODE)]),
    # A session that must open a connection (NullPool: no warm one to hand out) is the
    # case that fails every time; with a warm pool SQLAlchemy may serialise the two.
    ("shared session", '''cold = async_sessionmaker(create_async_engine(
    os.environ["DATABASE_URL"], poolclass=NullPool))
async with cold() as s:
    await asyncio.gather(s.execute(text("SELECT 1")), s.execute(text("SELECT 2")))''',
     ["one AsyncSession (or one connection) used by two tasks", str(explain.SHARED_SESSION)]),
    ("driver busy", '''busy = create_async_engine(os.environ["DATABASE_URL"], poolclass=NullPool)
async with busy.connect() as conn:
    raw = (await conn.get_raw_connection()).driver_connection
    await asyncio.gather(raw.fetch("SELECT pg_sleep(0.1)"), raw.fetch("SELECT 1"))''',
     ["another operation is in progress", str(explain.SHARED_SESSION)]),
    ("pending rollback", '''async with Session() as s:
    s.add(Shelf(id=1, label="again"))
    try:
        await s.flush()
    except IntegrityError:
        pass
    await s.scalar(select(Shelf.label))''',
     ["PendingRollbackError", "an earlier statement or flush in it failed",
      "await session.rollback()", str(explain.PENDING_ROLLBACK)]),
    ("other loop", '''looped = create_async_engine(os.environ["DATABASE_URL"])
def job():
    async def use():
        async with looped.connect() as conn:
            await conn.execute(text("SELECT 1"))
    asyncio.run(use())
async with looped.connect() as conn:   # a pooled connection of this kernel's loop
    await conn.execute(text("SELECT 1"))
await asyncio.to_thread(job)''',
     ["RuntimeError", "a connection made on one event loop, used on another",
      str(explain.OTHER_LOOP)]),
    ("lost connection", '''lost = create_async_engine(os.environ["DATABASE_URL"],
                           poolclass=NullPool)
async with lost.connect() as victim, engine.connect() as killer:
    pid = await victim.scalar(text("SELECT pg_backend_pid()"))
    await killer.execute(text(f"SELECT pg_terminate_backend({pid})"))
    await asyncio.sleep(0.2)
    await victim.execute(text("SELECT 1"))''',
     ["the connection to PostgreSQL", "make db", str(explain.LOST_CONNECTION)]),
    # Loaded by the query, then unloaded by commit(): not a lazy load to fix with a loader.
    ("unloaded by commit", '''async with Session() as s:
    shelf = await s.scalar(select(Shelf).options(selectinload(Shelf.jars)))
    await s.commit()
    len(shelf.jars)''',
     ["Shelf.jars, a relationship unloaded when its object was expired as a whole",
      "expire_on_commit=False", str(explain.EXPIRED_ON_COMMIT)]),
    # A stopped server removes its socket file: connecting is a bare FileNotFoundError.
    ("server gone", '''gone = create_async_engine("postgresql+asyncpg://postgres@/postgres"
                           "?host=/tmp/tutorial-explain-no-server")
async with gone.connect() as conn:
    await conn.execute(text("SELECT 1"))''',
     ["FileNotFoundError", "the connection to PostgreSQL", "make db",
      str(explain.LOST_CONNECTION)]),
]


@pytest.fixture(scope="module")
def explained(embedded_pgdata: Path) -> nbformat.NotebookNode:
    url = start_embedded(embedded_pgdata)
    schema = f"explain_{uuid.uuid4().hex[:8]}"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP.replace("SCHEMA_NAME", schema)),
                *(nbformat.v4.new_code_cell(cell) for _, cell, _ in CASES),
                nbformat.v4.new_code_cell("%tb"),
                nbformat.v4.new_code_cell("1 / 0"),
                # asyncpg's command_timeout is a TimeoutError (an OSError): not a lost server.
                nbformat.v4.new_code_cell(
                    'timed = create_async_engine(os.environ["DATABASE_URL"], poolclass=NullPool,\n'
                    '                            connect_args={"command_timeout": 0.1})\n'
                    'async with timed.connect() as conn:\n'
                    '    await conn.execute(text("SELECT pg_sleep(1)"))'),
                nbformat.v4.new_code_cell(
                    f'async with engine.begin() as conn:\n'
                    f'    await conn.execute(text("DROP SCHEMA {schema} CASCADE"))\n'
                    f'await engine.dispose()\n'
                    f'for other in (busy, looped, lost, gone, timed):\n'
                    f'    await other.dispose()')]
    path = REPO / "build" / "explain-test.ipynb"
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)
    run = asyncio.run(run_notebook(path, env=kernel_env(DATABASE_URL=url), nb=nb,
                                   allow_errors=True))
    return run.nb


def _error(cell: nbformat.NotebookNode) -> list[str]:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1, f"expected one error output: {cell.outputs}"
    return [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in errors[0].traceback]


def test_setup_runs_clean(explained: nbformat.NotebookNode) -> None:
    assert not [o for o in explained.cells[0].outputs if o.output_type == "error"]


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES, start=1)),
                         ids=[name for name, _, _ in CASES])
def test_each_error_is_explained(explained: nbformat.NotebookNode, index: int,
                                 case: tuple[str, str, list[str]]) -> None:
    _, _, expected = case
    lines = _error(explained.cells[index])
    text = "\n".join(lines)
    assert len(lines) <= explain.MAX_LINES, text
    assert "Traceback" not in text and "site-packages" not in text, text
    for words in expected:
        assert words in text, f"{words!r} not in:\n{text}"
    assert re.search(r"^Where: line \d+ of In\[\d+\]: \S", text, re.M), text
    assert text.rstrip().endswith("run %tb in the next cell."), text


def test_tb_shows_the_full_traceback(explained: nbformat.NotebookNode) -> None:
    tb_cell = explained.cells[len(CASES) + 1]
    text = "\n".join(_error(tb_cell)) if any(
        o.output_type == "error" for o in tb_cell.outputs) else "".join(
        o.get("text", "") for o in tb_cell.outputs)
    assert "RuntimeError" in text or "InterfaceError" in text or "Error" in text
    assert len(text.splitlines()) > explain.MAX_LINES, text


def test_other_errors_keep_their_traceback(explained: nbformat.NotebookNode) -> None:
    text = "\n".join(_error(explained.cells[len(CASES) + 2]))
    assert "ZeroDivisionError" in text and "What:" not in text
    timeout = "\n".join(_error(explained.cells[len(CASES) + 3]))
    assert "Timeout" in timeout and "What:" not in timeout, timeout


def test_cleanup_ran(explained: nbformat.NotebookNode) -> None:
    assert not [o for o in explained.cells[-1].outputs if o.output_type == "error"]


def test_every_section_is_a_lesson_heading() -> None:
    """Each 'Shown in' names a registered lesson by its title and one of its headings."""
    by_file = {lesson.path.name: lesson for lesson in lessons()}
    for section in explain.SECTIONS:
        lesson = by_file.get(section.notebook)
        assert lesson is not None and lesson.title == section.title, section
        nb = nbformat.read(lesson.path, as_version=4)
        headings = {line.lstrip("#").strip() for cell in nb.cells
                    if cell.cell_type == "markdown" for line in cell.source.splitlines()
                    if line.startswith("#")}
        assert section.heading in headings, f"{section.notebook} has no heading {section.heading!r}"
