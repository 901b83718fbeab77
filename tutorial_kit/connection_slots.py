"""Room on a shared PostgreSQL for the cells that open many connections at once.

A class runs in lockstep: the instructor says "run lesson 13 now" and thirty
learners press Run All within the same minute, against one server whose
``max_connections`` is PostgreSQL's default, 100. Most cells hold at most
:data:`PER_LEARNER` connections per learner. A few demonstrations open many
connections on purpose (sessions under ``asyncio.gather``, a web app under
load, clients with and without PgBouncer). Thirty of those at once would need
hundreds, and the server would refuse them ("too many clients already").

So such a cell first asks for room::

    async with connection_slots(DATABASE_URL, 10):
        ...   # the demonstration: 10 connections beyond the learner's 2

The class shares :func:`capacity` connection *slots* (a quarter of what the
server allows ordinary roles). Every learner may hold :data:`PER_LEARNER`
connections at any moment, this module's own connection included; a cell
takes one slot for each connection beyond those, waits while other learners
hold the slots (saying so), and gives them back on the way out, also on an
error or an interrupt. Alone on a server, it waits for nothing. So a whole
class in step holds at most ``learners × PER_LEARNER + capacity()``
connections (``tutorial_kit.classroom.lockstep_need``).

The slots are PostgreSQL advisory locks, one per slot, held on one
connection of this module's own: the server releases them when that
connection ends, so a kernel that dies can never keep them. They live in the
database the notebooks use and are visible in ``pg_locks`` (``locktype =
'advisory'``, ``classid =`` :data:`LOCK_CLASS`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from tutorial_kit import setup_problems as problems
from tutorial_kit.database import one_off_connection
from tutorial_kit.errors import TutorialError

#: Client connections one learner's kernel holds at most outside a slot, in every lesson
#: (checked for each lesson by tests/test_notebooks.py on one learner's run).
PER_LEARNER = 2
#: The slots are this share of the connections ordinary roles may open.
SHARE = 4
#: The first key of every slot's advisory lock ("tuto" in ASCII): the tutorial's own
#: key space, so no other application's advisory locks are ever taken or waited on.
LOCK_CLASS = 0x7475_746F
#: The second key of the lock that one learner at a time holds while taking slots,
#: so two learners never each take half of what both need.
_TAKING = -1
#: How long a cell waits for room before it gives up with one paragraph.
WAIT_LIMIT = 300.0
_POLL = 0.2

_ROOM_SQL = text(
    "SELECT current_setting('max_connections')::int"
    " - current_setting('superuser_reserved_connections')::int"
    " - coalesce(current_setting('reserved_connections', true), '0')::int"
)
_HELD_SQL = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND classid = :cls AND objsubid = 2 AND objid::bigint < :capacity"
)


class NoRoomError(TutorialError):
    """No slots came free within :data:`WAIT_LIMIT`; the message says what to do."""


def capacity(ordinary_connections: int) -> int:
    """Slots a class shares on a server that allows ``ordinary_connections`` to learners."""
    return max(1, ordinary_connections // SHARE)


async def _try(conn: AsyncConnection, key: int) -> bool:
    return bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:cls, :key)"),
                                  {"cls": LOCK_CLASS, "key": key}))


async def _release(conn: AsyncConnection, keys: list[int]) -> None:
    for key in keys:
        await conn.execute(text("SELECT pg_advisory_unlock(:cls, :key)"),
                           {"cls": LOCK_CLASS, "key": key})
    keys.clear()


async def _take(conn: AsyncConnection, need: int, slots: int) -> list[int]:
    """All ``need`` slots or none: scan for free ones while holding the taking lock.

    Another learner holds the taking lock for a few milliseconds at most, so
    that case is retried at once; an empty list means the slots are taken.
    """
    while not await _try(conn, _TAKING):
        await asyncio.sleep(0.01)
    held: list[int] = []
    try:
        for key in range(slots):
            if len(held) == need:
                break
            if await _try(conn, key):
                held.append(key)
        if len(held) < need:
            await _release(conn, held)
    finally:
        await _release(conn, [_TAKING])
    return held


@asynccontextmanager
async def connection_slots(url: str, need: int) -> AsyncIterator[None]:
    """Hold ``need`` of the class's connection slots for the block; wait for them if taken.

    ``need`` is the most connections the learner holds at once inside the block
    (this module's connection included) beyond :data:`PER_LEARNER`. While it waits,
    the cell prints one line saying that other learners hold the slots, and
    one more when it goes on.
    """
    async with one_off_connection(url) as conn:
        # No transaction: a learner waiting here must not sit "idle in transaction".
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        slots = max(need, capacity(int(await conn.scalar(_ROOM_SQL))))
        started = time.perf_counter()
        held = await _take(conn, need, slots)
        waited = not held
        if waited:
            busy = await conn.scalar(_HELD_SQL, {"cls": LOCK_CLASS, "capacity": slots})
            print(f"Waiting for room on the shared server: other learners' cells hold {busy} "
                  f"of its {slots} connection slots; this cell needs {need}.", flush=True)
        while not held:
            if time.perf_counter() - started > WAIT_LIMIT:
                raise NoRoomError(problems.NO_ROOM.message(
                    seconds=int(WAIT_LIMIT), need=need, slots=slots))
            # A little jitter, so thirty waiting kernels don't ask in the same millisecond.
            await asyncio.sleep(_POLL * (0.5 + random.random()))
            held = await _take(conn, need, slots)
        if waited:
            print(f"Got room after {time.perf_counter() - started:.1f} s.", flush=True)
        try:
            yield
        finally:
            # Closing the connection would free them too; a lost connection freed them already.
            with suppress(DBAPIError):
                await _release(conn, held)
