"""Execute a notebook headless with nbclient, the way the tests and the benchmark need.

One kernel per call; the notebook can be run several times in it (``passes``)
to prove it is re-runnable, with a hook between passes (the tests count the
server connections left open there). The kernel's RSS is sampled throughout.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient
from traitlets.config import Config

from tutorial_harness.lessons import lessons


def kernel_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TUTORIAL_PGDATA")}
    env.update(extra)
    # Keep matplotlib off any display and quiet about caches.
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return env


def notebook_paths() -> list[Path]:
    """Every lesson notebook, in reading order: the registry, book/_toc.yml."""
    return [lesson.path for lesson in lessons()]


@dataclass
class CellTiming:
    index: int
    seconds: float
    first_line: str


@dataclass
class NotebookRun:
    path: Path
    nb: nbformat.NotebookNode
    passes: list[list[CellTiming]] = field(default_factory=list)
    pass_seconds: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    def slowest(self) -> CellTiming:
        return max((c for p in self.passes for c in p), key=lambda c: c.seconds)


async def run_notebook(
    path: Path,
    *,
    env: dict[str, str],
    passes: int = 1,
    after_pass: Callable[[int], Awaitable[None]] | None = None,
    timeout: int = 120,
    nb: nbformat.NotebookNode | None = None,
    allow_errors: bool = False,
    kernel_ready: Callable[[], Awaitable[None]] | None = None,
) -> NotebookRun:
    """Execute ``path`` ``passes`` times in one fresh kernel; raise on any error output.

    ``kernel_ready`` is awaited once the kernel is up, before the first cell: a class
    in lockstep waits there until every learner's kernel is up, then all run at once.
    """
    nb = nb if nb is not None else nbformat.read(path, as_version=4)
    run = NotebookRun(path, nb)
    # iopub_timeout: after a cell's reply nbclient waits this long for its outputs, then, by
    # default, drops what has not arrived. On a busy machine (30 kernels on 2 cores) they
    # can take longer than the default 4 s: wait up to 60 s (the wait ends at the kernel's
    # idle message, so it costs nothing when they come), and fail rather than lose them.
    # The kernel talks over Unix sockets in a folder of its own: no TCP port to race for
    # when 30 kernels start at once, and no "running over TCP without encryption" warning
    # from each. (jupyter_client's default ipc path is relative to the working directory,
    # which every kernel shares; hence the folder. Its path stays short: a socket's must
    # fit in 107 bytes.)
    sockets = tempfile.TemporaryDirectory(prefix="nbk-")
    config = Config({"KernelManager": {"transport": "ipc", "ip": f"{sockets.name}/kernel"}})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", config=config,
                            iopub_timeout=60, raise_on_iopub_timeout=True,
                            allow_errors=allow_errors,
                            resources={"metadata": {"path": str(path.parent)}})
    with sockets:
        await _execute(client, nb, run, passes, after_pass, kernel_ready, env)
    # The kernel is already shut down; nbclient's own exit hook would try again and fail.
    atexit.unregister(client._cleanup_kernel)
    return run


async def _execute(client: NotebookClient, nb: nbformat.NotebookNode, run: NotebookRun,
                   passes: int, after_pass: Callable[[int], Awaitable[None]] | None,
                   kernel_ready: Callable[[], Awaitable[None]] | None,
                   env: dict[str, str]) -> None:
    async with client.async_setup_kernel(env=env):
        assert client.kc is not None and client.km is not None
        pid = client.km.provisioner.pid  # type: ignore[union-attr]
        sampler = asyncio.create_task(_sample_rss(pid, run))
        try:
            if kernel_ready is not None:
                await kernel_ready()
            for n in range(passes):
                client.reset_execution_trackers()
                timings: list[CellTiming] = []
                start = time.perf_counter()
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    t0 = time.perf_counter()
                    await client.async_execute_cell(cell, index,
                                                    execution_count=client.code_cells_executed + 1)
                    first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                    timings.append(CellTiming(index, time.perf_counter() - t0, first[:60]))
                run.pass_seconds.append(time.perf_counter() - start)
                run.passes.append(timings)
                if after_pass is not None:
                    await after_pass(n)
        finally:
            sampler.cancel()
            _sample_once(pid, run)


def _sample_once(pid: int, run: NotebookRun) -> None:
    try:
        rss = psutil.Process(pid).memory_info().rss / 1_000_000
    except psutil.Error:
        return
    run.peak_rss_mb = max(run.peak_rss_mb, rss)


async def _sample_rss(pid: int, run: NotebookRun) -> None:
    while True:
        _sample_once(pid, run)
        await asyncio.sleep(0.05)


def stderr_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Warnings or tracebacks a reader would see on stderr (progress bars are fine)."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out.get("text", "")
                if any(w in text for w in ("Warning", "Traceback", "Error")):
                    found.append(f"cell {i}: {text.strip()[:300]}")
    return found
