"""The class's connection slots (tutorial_kit/connection_slots.py) on a real server.

Many-connection cells share :func:`capacity` slots: never more at once, all of a
cell's slots or none, first come first served, a line while waiting, and nothing
held after the block, after an error, after a cancellation, or after the kernel's
connection is gone.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy import text

from tutorial_kit import connection_slots as slots_module
from tutorial_kit.connection_slots import LOCK_CLASS, NoRoomError, capacity, connection_slots
from tutorial_kit.database import one_off_connection, start_embedded

#: Slots taken (granted locks on keys 0, 1, …; the queue's key -1 reads as 4294967295).
HELD_SQL = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :cls"
                " AND granted AND objsubid = 2 AND objid::bigint < 2147483648")
QUEUE_SQL = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :cls"
                 " AND objid::bigint = 4294967295")


@pytest.fixture
def url(embedded_pgdata: Path) -> str:
    return start_embedded(embedded_pgdata)


async def held(url: str) -> int:
    async with one_off_connection(url) as conn:
        return int(await conn.scalar(HELD_SQL, {"cls": LOCK_CLASS}))


async def slots_on(url: str) -> int:
    async with one_off_connection(url) as conn:
        ordinary = await conn.scalar(text(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - coalesce(current_setting('reserved_connections', true), '0')::int"))
    return capacity(int(ordinary))


def test_capacity_is_a_quarter_of_the_ordinary_connections() -> None:
    assert capacity(97) == 24 and capacity(400) == 100 and capacity(3) == 1


@pytest.mark.asyncio
async def test_never_more_than_the_capacity_at_once(url: str, capsys) -> None:
    total = await slots_on(url)
    need = total // 2 + 1  # two such cells never fit together
    inside, most = 0, 0

    async def cell() -> None:
        nonlocal inside, most
        async with connection_slots(url, need):
            inside += 1
            most = max(most, inside)
            assert await held(url) == need * inside  # all of a cell's slots, never a part
            await asyncio.sleep(0.3)
            inside -= 1

    await asyncio.gather(*(cell() for _ in range(3)))
    assert most == 1
    out = capsys.readouterr().out
    assert out.count("Waiting for room on the shared server") == 2
    # The first may still be taking its slots when the others look: any count is true then.
    assert re.search(rf"\d+ of its {total} connection slots are taken and \d cell", out)
    assert "cell(s) are queued ahead of this one; this cell needs" in out
    assert out.count("Got room after") == 2
    assert await held(url) == 0


@pytest.mark.asyncio
async def test_cells_get_their_slots_in_the_order_they_asked(url: str, capsys) -> None:
    """A queue, not a race: PostgreSQL grants a waited-for lock first come, first served."""
    total = await slots_on(url)
    order: list[int] = []

    async def cell(n: int) -> None:
        await asyncio.sleep(0.2 * n)  # they ask in the order 0, 1, 2, 3
        async with connection_slots(url, total):
            order.append(n)
            await asyncio.sleep(1.0)  # cells 1, 2 and 3 all ask while cell 0 holds them

    await asyncio.gather(*(cell(n) for n in reversed(range(4))))
    assert order == [0, 1, 2, 3]
    out = capsys.readouterr().out
    assert "are taken and 1 cell(s) are queued ahead" in out  # cell 1, first in the queue
    assert "are taken and 2 cell(s) are queued ahead" in out  # cells 1 and 2
    assert await held(url) == 0
    async with one_off_connection(url) as conn:
        assert await conn.scalar(QUEUE_SQL, {"cls": LOCK_CLASS}) == 0


@pytest.mark.asyncio
async def test_alone_it_says_nothing_and_holds_nothing_after(url: str, capsys) -> None:
    async with connection_slots(url, 3):
        assert await held(url) == 3
    assert capsys.readouterr().out == ""
    assert await held(url) == 0


@pytest.mark.asyncio
async def test_a_cell_that_needs_more_than_the_capacity_still_runs_alone(url: str) -> None:
    need = await slots_on(url) + 5
    async with connection_slots(url, need):
        assert await held(url) == need
    assert await held(url) == 0


@pytest.mark.asyncio
async def test_an_error_or_a_cancellation_gives_the_slots_back(url: str) -> None:
    with pytest.raises(LookupError):
        async with connection_slots(url, 4):
            raise LookupError("the demonstration failed")
    assert await held(url) == 0

    async def interrupted() -> None:
        async with connection_slots(url, 4):
            await asyncio.sleep(60)

    task = asyncio.create_task(interrupted())
    await asyncio.sleep(0.5)
    task.cancel()  # an enclosing timeout or TaskGroup cancels the block like this
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await held(url) == 0


@pytest.mark.asyncio
async def test_a_dead_kernel_frees_its_slots(url: str) -> None:
    """The slots are session locks: when their connection ends, the server frees them."""
    total = await slots_on(url)
    async with connection_slots(url, total):
        async with one_off_connection(url) as conn:
            await conn.execute(text(
                "SELECT pg_terminate_backend(pid, 2000) FROM pg_locks"
                " WHERE locktype = 'advisory' AND classid = :cls"), {"cls": LOCK_CLASS})
        assert await held(url) == 0
        async with connection_slots(url, total):  # a second learner gets them at once
            assert await held(url) == total


@pytest.mark.asyncio
async def test_no_room_in_time_is_one_paragraph(url: str, monkeypatch) -> None:
    monkeypatch.setattr(slots_module, "WAIT_LIMIT", 0.5)
    total = await slots_on(url)
    async with connection_slots(url, total):
        with pytest.raises(NoRoomError) as caught:
            async with connection_slots(url, 1):
                pass
    message = str(caught.value)
    assert "\n" not in message and "No room on the shared server after 0 s" in message
    assert "did not come free in time" in message
    assert f"1 of the class's {total} connection slots" in message
    assert await held(url) == 0
