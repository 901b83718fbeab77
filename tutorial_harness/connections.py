"""Client connections on a PostgreSQL server: count them, sample their peak, wait for none.

``pg_stat_activity`` lists every backend; a *client connection* is a ``client
backend`` other than the one asking. The tests count them after each pass (a
notebook must leave none open) and check a lesson's peak against
``tutorial_kit.classroom.LESSON_PEAKS``; ``classroom_load`` reports a class's
peak per lesson. Every count runs on a connection of its own without a pool
(``one_off_connection``), which the count leaves out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType

from sqlalchemy import text

from tutorial_kit.connection_slots import LOCK_CLASS
from tutorial_kit.database import one_off_connection

CLIENTS_SQL = text("SELECT count(*) FROM pg_stat_activity "
                   "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
#: One snapshot: the client connections, and the class's connection slots held
#: (tutorial_kit/connection_slots.py; the lock that guards taking them is not a slot).
SAMPLE_SQL = text(
    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    " AND pid <> pg_backend_pid()),"
    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND classid = :cls AND objsubid = 2 AND objid::bigint < 2147483648)"
).bindparams(cls=LOCK_CLASS)


async def client_connections(url: str) -> int:
    """The client connections on the server now, this count's own left out."""
    async with one_off_connection(url) as conn:
        return int(await conn.scalar(CLIENTS_SQL))


async def wait_for_at_most(url: str, count: int, timeout: float) -> int:
    """Wait until the server holds at most ``count`` client connections; return the last count.

    A client that has just closed its socket still shows for a moment, until its
    backend notices: so this polls instead of counting once.
    """
    deadline = time.monotonic() + timeout
    while (now := await client_connections(url)) > count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return now


class PeakSampler:
    """Counts the server's client connections every ``every`` seconds while in the block.

    The sampling runs in a thread with an event loop of its own, so it keeps its
    pace while the caller's loop is busy with many kernels' messages; the longest
    gap between two samples is kept to say how fine the sampling really was.
    ``peak`` is the most seen since the start, ``since_mark`` since :meth:`mark`;
    ``beyond_slots`` is the most connections seen beyond the class's connection
    slots held at that moment, in two samples in a row (one learner alone: what must stay within
    ``connection_slots.PER_LEARNER``).
    """

    def __init__(self, url: str, every: float) -> None:
        self.url = url
        self.every = every
        self.peak = 0
        self.since_mark = 0
        self.beyond_slots = 0
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._first = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)

    def mark(self) -> None:
        """Start a new window for ``since_mark`` (for example, the next notebook)."""
        self.since_mark = 0

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        self._first.wait(timeout=30)  # counting starts before the block does
        self._raise()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sampling (the block's end does too); raise what stopped the sampler early."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the connection sampler failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._sample())
        except BaseException as err:  # handed to the caller's thread by stop()
            self._error = err
        finally:
            self._first.set()

    async def _sample(self) -> None:
        async with one_off_connection(self.url) as conn:
            # Autocommit: each count sees a fresh pg_stat_activity, not a transaction's snapshot.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            last: float | None = None
            previous_beyond = 0
            while not self._stop.is_set():
                began = time.perf_counter()
                now, slots = (await conn.execute(SAMPLE_SQL)).one()
                self.peak = max(self.peak, now)
                # Two samples in a row: a backend whose client has just closed shows in
                # pg_stat_activity for a few ms more, also right after its slots went back.
                # Every cell holds its connections far longer than two samples.
                beyond = now - slots
                self.beyond_slots = max(self.beyond_slots, min(beyond, previous_beyond))
                previous_beyond = beyond
                self.since_mark = max(self.since_mark, now)
                self._first.set()
                if last is not None:
                    self.longest_gap = max(self.longest_gap, began - last)
                last = began
                await asyncio.sleep(max(0.0, self.every - (time.perf_counter() - began)))
