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
import re
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
#: The second key of the lock that orders the learners who ask for slots: the one holding
#: it waits until enough slots are free and takes them; the others wait for it in
#: PostgreSQL's lock queue, which grants a lock to its waiters first come, first served.
_QUEUE = -1
#: How long a cell waits for room before it gives up with one paragraph.
WAIT_LIMIT = 300.0
_POLL = 0.1
#: The line a cell prints when it goes on after waiting (the class load reads it back).
GOT_ROOM = "Got room after {seconds:.1f} s."
GOT_ROOM_LINE = re.compile(r"^Got room after (?P<seconds>\d+\.\d) s\.$", re.M)
#: SQLSTATE lock_not_available: ``lock_timeout`` ran out.
_LOCK_TIMEOUT = "55P03"

_ROOM_SQL = text(
    "SELECT current_setting('max_connections')::int"
    " - current_setting('superuser_reserved_connections')::int"
    " - coalesce(current_setting('reserved_connections', true), '0')::int"
)
#: Slots taken, and cells ahead in the queue (the first holds the queue's lock, the others
#: wait for it; -1 reads as 4294967295 in pg_locks), in this database: advisory locks are
#: per database.
_BUSY_SQL = text(
    "SELECT count(*) FILTER (WHERE granted AND objid::bigint < :slots),"
    " count(*) FILTER (WHERE objid::bigint = 4294967295 AND pid <> pg_backend_pid())"
    " FROM pg_locks WHERE locktype = 'advisory' AND classid = :cls AND objsubid = 2"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
#: The slots nobody holds, lowest first.
_FREE_SQL = text(
    "SELECT k FROM generate_series(0, :slots - 1) AS k WHERE NOT EXISTS ("
    " SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :cls"
    " AND objsubid = 2 AND objid::bigint = k"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    " ORDER BY k"
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
    """``need`` free slots, or none if fewer are free.

    Only the first in the queue takes slots, so the free ones can only grow while
    it does: the free keys found are all taken, in one statement.
    """
    free = list(await conn.scalars(_FREE_SQL, {"cls": LOCK_CLASS, "slots": slots}))
    if len(free) < need:
        return []
    keys = free[:need]
    await conn.execute(text("SELECT pg_advisory_lock(:cls, k) FROM unnest(CAST(:keys AS int[]))"
                            " AS k"), {"cls": LOCK_CLASS, "keys": keys})
    return keys


def _no_room(need: int, slots: int) -> NoRoomError:
    return NoRoomError(problems.NO_ROOM.message(seconds=int(WAIT_LIMIT), need=need, slots=slots))


async def _say_waiting(conn: AsyncConnection, need: int, slots: int) -> None:
    taken, queued = (await conn.execute(_BUSY_SQL, {"cls": LOCK_CLASS, "slots": slots})).one()
    print(f"Waiting for room on the shared server: {taken} of its {slots} connection slots "
          f"are taken and {queued} cell(s) are queued ahead of this one; this cell needs "
          f"{need}.", flush=True)


async def _queue_up(conn: AsyncConnection, need: int, slots: int) -> bool:
    """Become the first in the queue; True if that meant waiting (and saying so)."""
    if await _try(conn, _QUEUE):
        return False
    await _say_waiting(conn, need, slots)
    # Wait in the server's lock queue; lock_timeout bounds the wait (set_config takes
    # milliseconds; SET cannot take a bound parameter).
    await conn.execute(text("SELECT set_config('lock_timeout', :ms, false)"),
                       {"ms": str(int(WAIT_LIMIT * 1000))})
    try:
        await conn.execute(text("SELECT pg_advisory_lock(:cls, :key)"),
                           {"cls": LOCK_CLASS, "key": _QUEUE})
    except DBAPIError as err:
        if getattr(err.orig, "sqlstate", None) == _LOCK_TIMEOUT:
            raise _no_room(need, slots) from None
        raise
    return True


@asynccontextmanager
async def connection_slots(url: str, need: int) -> AsyncIterator[None]:
    """Hold ``need`` of the class's connection slots for the block; wait for them if taken.

    ``need`` is the most connections the learner holds at once inside the block
    (this module's connection included) beyond :data:`PER_LEARNER`. Cells get
    their slots in the order they asked. While it waits, the cell prints one
    line saying how many slots are taken and how many cells are ahead of it,
    and one more when it goes on.
    """
    async with one_off_connection(url) as conn:
        # No transaction: a learner waiting here must not sit "idle in transaction".
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        slots = max(need, capacity(int(await conn.scalar(_ROOM_SQL))))
        started = time.perf_counter()
        waited = await _queue_up(conn, need, slots)
        try:  # first in the queue: wait for enough free slots, then let the next one in
            held = await _take(conn, need, slots)
            while not held:
                if not waited:
                    await _say_waiting(conn, need, slots)
                    waited = True
                if time.perf_counter() - started > WAIT_LIMIT:
                    raise _no_room(need, slots)
                await asyncio.sleep(_POLL)
                held = await _take(conn, need, slots)
        finally:
            await _release(conn, [_QUEUE])
        if waited:
            print(GOT_ROOM.format(seconds=time.perf_counter() - started), flush=True)
        try:
            yield
        finally:
            # Closing the connection would free them too; a lost connection freed them already.
            with suppress(DBAPIError):
                await _release(conn, held)
