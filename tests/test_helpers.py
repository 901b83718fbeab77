"""Unit tests for the plumbing: schema safety, SQL capture, seed data, exercises, measuring."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload

from tutorial_kit.database import start_embedded
from tutorial_kit.exercises import check
from tutorial_kit.measure import peak_memory, timer
from tutorial_kit.models import Author, Base
from tutorial_kit.schema import ForeignSchemaError, drop_schema, reset_schema, tutorial_schemas
from tutorial_kit.seed import load_dataset, make_dataset, make_objects
from tutorial_kit.sql_capture import capture_sql

SCHEMA = "tutorial_unit"


def engine_for(url: str, schema: str = SCHEMA) -> AsyncEngine:
    return create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})


@pytest.fixture
def url(embedded_pgdata: Path) -> str:
    return start_embedded(embedded_pgdata)


@pytest.mark.asyncio
async def test_reset_schema_never_drops_a_foreign_schema(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS tutorial_readers CASCADE"))
            await conn.execute(text("CREATE SCHEMA tutorial_readers"))
            await conn.execute(text("CREATE TABLE tutorial_readers.keep (x int)"))
        async with engine.begin() as conn:
            with pytest.raises(ForeignSchemaError, match="not created by this tutorial"):
                await reset_schema(conn, "tutorial_readers")
        async with engine.begin() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM tutorial_readers.keep")) == 0
            await conn.execute(text("DROP SCHEMA tutorial_readers CASCADE"))
            await reset_schema(conn, SCHEMA)
            assert SCHEMA in [s.name for s in await tutorial_schemas(conn)]
            assert await drop_schema(conn, SCHEMA) is True
            assert await drop_schema(conn, SCHEMA) is False
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_schema_names_are_validated() -> None:
    with pytest.raises(ValueError):
        await reset_schema(None, "public; DROP TABLE x")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_capture_sql_counts_statements_and_seed_loads(url: str, capsys) -> None:
    data = make_dataset(20, books_per_author=3, reviews_per_book=2)
    engine = engine_for(url)
    try:
        async with engine.begin() as conn:
            await reset_schema(conn, SCHEMA)
            await conn.run_sync(Base.metadata.create_all)
            await load_dataset(conn, data)
        session_factory = async_sessionmaker(engine, expire_on_commit=False)
        async with session_factory() as session:
            with capture_sql(engine, echo=True) as log:
                authors = (await session.scalars(
                    select(Author).options(selectinload(Author.books)).order_by(Author.id)
                )).all()
            books = sum(len(a.books) for a in authors)
            with capture_sql(engine) as streamed:
                total = 0
                async for _ in await session.stream_scalars(
                    select(Author).order_by(Author.id).execution_options(yield_per=5)
                ):
                    total += 1
            assert total == 20 and streamed.streamed and not log.streamed
            assert len(log.connections()) == 1 and not log.overlapped()
            # ids continue after the COPY-loaded rows
            new = Author(name="n", country="GB", books=[])
            session.add(new)
            await session.commit()
            async with engine.begin() as conn:
                await drop_schema(conn, SCHEMA)
    finally:
        await engine.dispose()
    assert log.count == 2 and books == 60 and new.id == 21
    out = capsys.readouterr().out
    assert "-- [1]" in out and "-- 2 statements" in out


def test_dataset_is_deterministic_and_sized() -> None:
    a, b = make_dataset(10, 4, 3, seed=7), make_dataset(10, 4, 3, seed=7)
    assert a == b and a != make_dataset(10, 4, 3, seed=8)
    assert (len(a.authors), len(a.books), len(a.reviews)) == (10, 40, 120)
    assert a.total_rows == 170
    objects = make_objects(a)
    assert len(objects) == 10 and sum(len(x.books) for x in objects) == 40


def test_check_prints_one_line_and_never_raises(capsys) -> None:
    rules = [(lambda v: v[0] == [1, 2], "Read the titles."),
             (lambda v: v[1] == 2, "Load the books in the same query.")]
    check(1, ([1, 2], 2), *rules)
    check(1, None, *rules)
    check(1, ([1, 2], 7), *rules)
    check(1, 5, *rules)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "✓ Exercise 1: correct"
    assert lines[1] == ("✗ Exercise 1: not yet — ex1 is still None (the scaffold's value, "
                        "or your cell stopped before setting it). "
                        "Read the titles.")
    assert lines[2] == "✗ Exercise 1: not yet — Load the books in the same query."
    assert lines[3].startswith("✗ Exercise 1: not yet — checking it raised TypeError")
    assert len(lines) == 4


@pytest.mark.asyncio
async def test_concurrent_statements_are_seen_overlapping(url: str) -> None:
    engine = engine_for(url)

    async def sleep() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(0.1)"))

    try:
        with capture_sql(engine) as log:
            await asyncio.gather(sleep(), sleep())
    finally:
        await engine.dispose()
    assert len(log.connections()) == 2 and log.overlapped()


def test_timer_and_memory() -> None:
    with timer() as t, peak_memory() as m:
        blob = [bytes(1000) for _ in range(5000)]
    assert t.seconds > 0 and m.mb > 4 and len(blob) == 5000


def test_one_line_drops_the_wrappers_class_names() -> None:
    from sqlalchemy.exc import DBAPIError

    from tutorial_kit.errors import one_line

    # As SQLAlchemy 2.0 words a wrapped asyncpg error; 2.1 leaves out the <class …> part.
    err = DBAPIError("INSERT …", {}, Exception(
        "<class 'asyncpg.exceptions.UndefinedFunctionError'>: function nope() does not exist"))
    assert one_line(err) == "DBAPIError: function nope() does not exist"
    assert one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert one_line(ValueError()) == "ValueError: "
