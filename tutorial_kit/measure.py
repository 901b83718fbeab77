"""Time and memory measurement that works with ``await``.

``%%time`` and ``%timeit`` reject top-level ``await``, so the notebooks time
with ``time.perf_counter()`` through these small context managers.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Timing:
    seconds: float = 0.0

    @property
    def ms(self) -> float:
        return self.seconds * 1000


@contextmanager
def timer() -> Iterator[Timing]:
    """``with timer() as t: await ...`` then read ``t.seconds``."""
    t = Timing()
    start = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - start


@dataclass
class MemoryPeak:
    """Peak Python heap allocation inside a block, from ``tracemalloc``.

    tracemalloc counts the bytes Python objects allocate (rows, ORM objects),
    not the process RSS, so it isolates what a query pattern costs.
    """

    peak_bytes: int = 0

    @property
    def mb(self) -> float:
        return self.peak_bytes / 1_000_000


@contextmanager
def peak_memory() -> Iterator[MemoryPeak]:
    """``with peak_memory() as m: ...`` then read ``m.mb``."""
    gc.collect()
    result = MemoryPeak()
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        yield result
    finally:
        _, peak = tracemalloc.get_traced_memory()
        result.peak_bytes = max(0, peak - base)
        if not already:
            tracemalloc.stop()

