"""A class on one server, simulated: N learners run the lessons at the same time.

Each simulated learner is a different ``JUPYTERHUB_USER`` (learner01, learner02,
…) and runs each notebook in a fresh kernel, as a learner doing Run All would,
against ONE PostgreSQL: a fresh embedded server in a temporary folder with
``max_connections = 100`` (removed afterwards), or the server DATABASE_URL names.
Two modes:

``--mode series`` (the default): each learner runs every notebook in reading
order, one after another; the N learners run in parallel, at their own pace.
Before the class, one learner runs the series alone; the class's wall time is
reported as a ratio to that. Goals: peak connections within the class budget
(learners × PER_LEARNER + the class's slots, tutorial_kit.classroom.lockstep_need:
learners at different lessons hold no more than the same learners in step); the
wall time of 6 learners ≤ 4 × one learner's.

``--mode lockstep``: a class following the instructor ("run lesson 13 now").
For each lesson in registry order, N fresh kernels start (a few at a time),
and once all are up the notebook runs in all N at the same moment. Per lesson
it reports the clean runs, the peak client connections against the lesson's
bound (:func:`lockstep_bound`), the wall time from the common start to the last
learner done, and each learner's p50/max. The server must be back to no learner
connections before the next lesson starts. Goal (issue 25): 30 learners, every
run clean, peak ≤ 90 connections.

A run is clean by the bar of ``tutorial_harness.claims`` (the tests' bar: no
error, nothing on stderr, every check's "not yet" line, every claim backed).
``pg_stat_activity`` is sampled every 40 ms throughout. The exit status is 0
only if everything was clean (and, in lockstep, every peak within its bound).

    python -m tutorial_harness.classroom_load [--mode series|lockstep] --learners N \
        [--markdown] [--no-alone] [NOTEBOOK ...]
    make classroom-load LEARNERS=12                 (series)
    make classroom-load LEARNERS=30 MODE=lockstep

Memory: each kernel takes up to ~300 MB, so N learners need N × 300 MB free.
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import sqlalchemy
from sqlalchemy import text

from tutorial_harness.claims import output_text, run_problems
from tutorial_harness.connections import PeakSampler, wait_for_at_most
from tutorial_harness.runner import kernel_env, notebook_paths, run_notebook
from tutorial_kit import embedded
from tutorial_kit.classroom import (
    LESSON_PEAKS,
    ServerLimits,
    drop_each,
    list_schemas,
    lockstep_need,
    server_limits,
)
from tutorial_kit.connection_slots import GOT_ROOM_LINE, PER_LEARNER, capacity
from tutorial_kit.database import normalize_url, one_off_connection, start_embedded
from tutorial_kit.errors import TutorialError

WALL_RATIO_GOAL = 4.0  # series mode, for 6 learners
#: The class server's limit, stated rather than left to initdb's guess: PostgreSQL's default,
#: what a class database usually has.
MAX_CONNECTIONS = 100
#: Lockstep goal (issue 25): the class leaves this many of the 100 for the instructor.
INSTRUCTOR_ROOM = 10
CLASS_PEAK_GOAL = MAX_CONNECTIONS - INSTRUCTOR_ROOM
#: Seconds between two counts of the server's client connections: 40 ms, so that on a busy
#: machine most gaps stay under 50 ms (the report gives the longest).
SAMPLE_EVERY = 0.04
#: Kernels starting at the same moment in lockstep mode: thirty at once on two cores
#: can miss nbclient's 60 s start-up timeout. The notebooks still start together.
START_AT_ONCE = 4
#: A kernel that dies before it is up (a port another process took meanwhile) is started
#: again; the notebook has not run yet, so nothing is repeated.
KERNEL_TRIES = 3
#: Seconds the server gets, after a lesson's last learner is done, to drop every connection.
IDLE_WAIT = 60.0


def lockstep_bound(number: str, learners: int, ordinary: int) -> int:
    """The most client connections ``learners`` in lockstep on lesson ``number`` may hold.

    ``ordinary`` is what the server allows ordinary roles. Each learner holds at most
    the lesson's measured peak alone, and the whole class at most what
    ``tutorial_kit.classroom`` budgets for a class in step (the class-wide slots
    included): the one formula the lockstep run and its test share.
    """
    return min(learners * LESSON_PEAKS[number], lockstep_need(learners, capacity(ordinary)))


@dataclass
class NotebookResult:
    learner: str
    notebook: str
    seconds: float | None  # None when the notebook never started (its kernel did not)
    problem: str | None  # None when the run was clean
    peak: int | None = None  # server connections at most, measured for a learner alone
    waited: float = 0.0  # the longest a cell waited for connection slots (lockstep)


def describe(err: Exception) -> str:
    """One line for the report: the exception's type and its message's last line."""
    return f"{type(err).__name__}: " + (str(err).strip().splitlines() or [""])[-1]


def learner_names(learners: int, first: int = 1) -> list[str]:
    return [f"learner{n:02d}" for n in range(first, first + learners)]


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; one value is its own quantile."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def seconds_of(results: Sequence[NotebookResult]) -> list[float]:
    return sorted(r.seconds for r in results if r.seconds is not None)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> list[str]:
    """Rows under headers: a Markdown table, or terminal columns (text left, figures right)."""
    if markdown:
        return [f"| {' | '.join(headers)} |", "|---" + "|---:" * (len(headers) - 1) + "|",
                *(f"| {' | '.join(row)} |" for row in rows)]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        right = (c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))
        return "  ".join([first.ljust(widths[0]), *right])

    return [line(headers), *map(line, rows)]


def machine(server: str, limit: int) -> str:
    return (f"Python {platform.python_version()} · SQLAlchemy {sqlalchemy.__version__} · "
            f"{os.cpu_count()} cores · {psutil.virtual_memory().total / 2**30:.0f} GB · "
            f"{time.strftime('%Y-%m-%d')} · {server} (max_connections {limit})")


# --------------------------------------------------------------------------- series


@dataclass
class Phase:
    learners: int
    wall: float = 0.0
    peak_connections: int = 0
    load: str = ""  # the machine's load average at the start and end
    results: list[NotebookResult] = field(default_factory=list)

    @property
    def clean(self) -> int:
        return sum(r.problem is None for r in self.results)


async def learner_runs(url: str, learner: str, paths: list[Path], phase: Phase,
                       sampler: PeakSampler) -> None:
    """One learner: every notebook in order, one kernel each, as Run All does."""
    for path in paths:
        start = time.perf_counter()
        sampler.mark()
        try:
            env = kernel_env(DATABASE_URL=url, JUPYTERHUB_USER=learner)
            run = await run_notebook(path, env=env, timeout=600)
            problem = "; ".join(run_problems(path, run.nb)) or None
        except Exception as err:  # the report lists it; the learner goes on to the next lesson
            problem = describe(err)
        alone = phase.learners == 1
        phase.results.append(NotebookResult(learner, path.stem, time.perf_counter() - start,
                                            problem, sampler.since_mark if alone else None))
        mark = "ok" if problem is None else f"PROBLEM {problem[:200]}"
        print(f"  {learner} {path.stem}: {time.perf_counter() - start:.1f} s {mark}",
              file=sys.stderr, flush=True)


async def run_class(url: str, learners: int, paths: list[Path], first: int = 1) -> Phase:
    phase = Phase(learners)
    before = os.getloadavg()[0]
    with PeakSampler(url, SAMPLE_EVERY) as sampler:
        start = time.perf_counter()
        await asyncio.gather(*(learner_runs(url, name, paths, phase, sampler)
                               for name in learner_names(learners, first)))
        phase.wall = time.perf_counter() - start
    phase.peak_connections = sampler.peak
    phase.load = f"{before:.1f} → {os.getloadavg()[0]:.1f}"
    return phase


def report(phase: Phase, alone: Phase | None, paths: list[Path], markdown: bool,
           server: str, limits: ServerLimits) -> str:
    n = phase.learners
    lines = [f"{n} learners × {len(paths)} notebooks ({paths[0].stem[:2]}–{paths[-1].stem[:2]}),"
             f" one server. {machine(server, limits.max_connections)}", ""]
    rows = []
    for path in paths:
        times = seconds_of([r for r in phase.results if r.notebook == path.stem])
        bad = [r for r in phase.results if r.notebook == path.stem and r.problem]
        solo = [r for r in alone.results if r.notebook == path.stem] if alone else []
        rows.append((path.stem, f"{len(times) - len(bad)}/{len(times)}",
                     f"{solo[0].seconds:.1f}" if solo else "–",
                     str(solo[0].peak) if solo else "–", f"{quantile(times, 0.5):.1f}",
                     f"{quantile(times, 0.95):.1f}"))
    lines += table(("Notebook", "Clean", "Alone (s)", "Alone: peak connections", "p50 (s)",
                    "p95 (s)"), rows, markdown)
    total = len(phase.results)
    ok = "goal met" if phase.clean == total else "GOAL MISSED"
    # Learners at different lessons hold no more than the same learners in step.
    peak_goal = lockstep_need(n, capacity(limits.ordinary))
    lines += ["", f"Runs clean: {phase.clean}/{total} ({ok})"
              + (f"; alone: {alone.clean}/{len(alone.results)}." if alone else ".")]
    lines.append(f"Peak server connections: {phase.peak_connections} "
                 f"(goal ≤ the class budget {n} × {PER_LEARNER} + "
                 f"{capacity(limits.ordinary)} slots = {peak_goal}: "
                 f"{'met' if phase.peak_connections <= peak_goal else 'MISSED'}).")
    if alone:
        ratio = phase.wall / alone.wall
        lines.append(f"Wall time: class {phase.wall:.0f} s, one learner alone {alone.wall:.0f} s"
                     f" (peak {alone.peak_connections} connections): {ratio:.1f}× "
                     f"(goal for 6 learners ≤ {WALL_RATIO_GOAL:.0f}×). Load average during "
                     f"the run alone {alone.load}, during the class {phase.load}.")
    else:
        lines.append(f"Wall time: class {phase.wall:.0f} s (no run alone to compare).")
    lines += not_clean([*(alone.results if alone else []), *phase.results])
    return "\n".join(lines)


def not_clean(results: Sequence[NotebookResult]) -> list[str]:
    return [f"  not clean: {r.learner} {r.notebook}: {r.problem[:300]}"
            for r in results if r.problem]


# --------------------------------------------------------------------------- lockstep


class StartLine:
    """Kernels start a few at a time; the notebooks then start all at once, as a class's do."""

    def __init__(self, learners: int) -> None:
        self.starting = asyncio.Semaphore(START_AT_ONCE)
        self.waiting = learners
        self.go = asyncio.Event()
        self.started = 0.0  # perf_counter() when the notebooks started

    def arrive(self) -> None:
        """One learner's kernel is up (or never will be); the last one starts the class."""
        self.waiting -= 1
        if self.waiting == 0:
            self.started = time.perf_counter()
            self.go.set()


async def lockstep_learner(url: str, learner: str, path: Path, line: StartLine) -> NotebookResult:
    """One learner: a fresh kernel, then Run All when the whole class is ready."""
    ready = False

    async def at_the_line() -> None:
        nonlocal ready
        ready = True
        line.starting.release()
        line.arrive()
        await line.go.wait()

    env = kernel_env(DATABASE_URL=url, JUPYTERHUB_USER=learner)
    problem: str | None = None
    waited = 0.0
    for _ in range(KERNEL_TRIES):
        await line.starting.acquire()
        try:
            run = await run_notebook(path, env=env, timeout=600, kernel_ready=at_the_line)
        except Exception as err:
            problem = describe(err)
            if ready:  # the notebook failed, not its kernel's start
                break
            line.starting.release()
            continue
        problem = "; ".join(run_problems(path, run.nb)) or None
        waited = max((float(m["seconds"]) for m in GOT_ROOM_LINE.finditer(output_text(run.nb))),
                     default=0.0)
        break
    if not ready:
        line.arrive()  # the class goes on without this learner
        return NotebookResult(learner, path.stem, None,
                              f"its kernel did not start in {KERNEL_TRIES} tries: {problem}")
    return NotebookResult(learner, path.stem, time.perf_counter() - line.started, problem,
                          waited=waited)


@dataclass
class LessonRun:
    path: Path
    learners: int
    bound: int  # lockstep_bound() on this server
    results: list[NotebookResult]
    peak: int
    longest_gap: float  # seconds between two connection counts, at most
    load: str  # the machine's 1-minute load average at the lesson's start and end
    left_open: int  # learner connections still open IDLE_WAIT s after the last learner

    @property
    def clean(self) -> int:
        return sum(r.problem is None for r in self.results)

    @property
    def wall(self) -> float:
        """From the common start to the last learner done."""
        return max(seconds_of(self.results), default=0.0)

    @property
    def ok(self) -> bool:
        return self.clean == self.learners and self.peak <= self.bound and not self.left_open


async def run_lesson(url: str, path: Path, learners: int) -> LessonRun:
    """``learners`` fresh kernels run ``path`` at the same moment; then the server goes idle."""
    limits = await server_limits(url)
    idle, before = limits.in_use, os.getloadavg()[0]
    line = StartLine(learners)
    with PeakSampler(url, SAMPLE_EVERY) as sampler:
        results = await asyncio.gather(*(lockstep_learner(url, name, path, line)
                                         for name in learner_names(learners)))
    left = await wait_for_at_most(url, idle, timeout=IDLE_WAIT)
    bound = lockstep_bound(path.name[:2], learners, limits.ordinary)
    return LessonRun(path, learners, bound, list(results), sampler.peak, sampler.longest_gap,
                     f"{before:.1f} → {os.getloadavg()[0]:.1f}", max(0, left - idle))


async def run_lockstep(url: str, paths: list[Path], learners: int) -> list[LessonRun]:
    runs = []
    for path in paths:
        run = await run_lesson(url, path, learners)
        runs.append(run)
        print(f"  {path.stem}: {run.clean}/{learners} clean, peak {run.peak} connections "
              f"(bound {run.bound}), {run.wall:.1f} s", file=sys.stderr, flush=True)
    return runs


def report_lockstep(runs: list[LessonRun], markdown: bool, server: str, limit: int) -> str:
    n = runs[0].learners
    numbers = [r.path.stem[:2] for r in runs]
    span = (f"{len(runs)} lessons ({numbers[0]}–{numbers[-1]})" if len(runs) > 1
            else f"lesson {numbers[0]}")
    lines = [f"{n} learners in lockstep × {span}, one server. {machine(server, limit)}", ""]
    rows = []
    for run in runs:
        times = seconds_of(run.results)
        rows.append((run.path.stem, f"{run.clean}/{n}", str(run.peak), str(run.bound),
                     f"{run.wall:.1f}", f"{quantile(times, 0.5):.1f}" if times else "–",
                     f"{times[-1]:.1f}" if times else "–",
                     f"{max(r.waited for r in run.results):.1f}", run.load))
    lines += table(("Lesson", "Clean", "Peak connections", "Bound", "Wall (s)", "p50 (s)",
                    "max (s)", "Longest wait for slots (s)", "Load average"), rows, markdown)
    clean = sum(r.clean for r in runs)
    top = max(runs, key=lambda r: r.peak)
    over = [r.path.stem[:2] for r in runs if r.peak > r.bound]
    lines += [
        "",
        f"Runs clean: {clean}/{n * len(runs)} ({'all' if clean == n * len(runs) else 'NOT ALL'}).",
        f"Peak client connections: {top.peak}, lesson {top.path.stem[:2]} (goal ≤ "
        f"{CLASS_PEAK_GOAL}: {'met' if top.peak <= CLASS_PEAK_GOAL else 'MISSED'}). A lesson's "
        f"bound: min({n} × its peak alone, the class's lockstep budget; "
        "tutorial_kit.classroom): " + (f"OVER in {', '.join(over)}." if over else "all within."),
        f"Connections counted every {SAMPLE_EVERY * 1000:.0f} ms (longest gap "
        f"{max(r.longest_gap for r in runs) * 1000:.0f} ms); wall time from the common start "
        "to the last learner done; load average (1 min) at each lesson's start → end.",
    ]
    lines += [f"  {r.path.stem}: {r.left_open} connection(s) still open {IDLE_WAIT:.0f} s after "
              "the last learner was done" for r in runs if r.left_open]
    lines += not_clean([res for r in runs for res in r.results])
    return "\n".join(lines)


# --------------------------------------------------------------------------- the server


async def state_max_connections(url: str) -> bool:
    """``ALTER SYSTEM SET max_connections``; True if the server must restart to apply it."""
    async with one_off_connection(url) as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")  # ALTER SYSTEM needs it
        await conn.execute(text(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}"))
        return int(await conn.scalar(text("SHOW max_connections"))) != MAX_CONNECTIONS


@contextmanager
def fresh_class_server() -> Iterator[str]:
    """A fresh embedded PostgreSQL in a temp folder, ``max_connections = 100``; removed after."""
    pgdata = Path(tempfile.mkdtemp(prefix="tutorial-class-"))
    try:
        url = start_embedded(pgdata)
        if asyncio.run(state_max_connections(url)):
            embedded.stop(pgdata)
            url = start_embedded(pgdata)
        yield url
    finally:
        with suppress(TutorialError):
            embedded.stop(pgdata)
        shutil.rmtree(pgdata, ignore_errors=True)


@contextmanager
def class_server() -> Iterator[tuple[str, str]]:
    """DATABASE_URL's server, else a fresh embedded one; yields (url, what it is)."""
    if os.environ.get("DATABASE_URL", "").strip():
        url, _notes = normalize_url(os.environ["DATABASE_URL"].strip())
        try:
            yield url, "DATABASE_URL"
        finally:  # the simulated learners' schemas only; a real learner's stay
            asyncio.run(drop_simulated(url))
        return
    with fresh_class_server() as url:
        yield url, "a fresh embedded PostgreSQL"


async def drop_simulated(url: str) -> None:
    names = [s.name for s in await list_schemas(url)
             if re.fullmatch(r"learner\d\d", s.learner or "")]
    await drop_each(url, names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--mode", choices=("series", "lockstep"), default="series",
                        help="series: each learner runs the whole series at their own pace; "
                             "lockstep: every lesson in all N kernels at the same moment")
    parser.add_argument("--learners", type=int, default=6)
    parser.add_argument("--no-alone", action="store_true",
                        help="series mode: skip the run of one learner alone (no wall-time ratio)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.notebooks] or notebook_paths()
    need_gb = args.learners * 0.3
    free_gb = psutil.virtual_memory().available / 2**30
    if need_gb > free_gb:
        print(f"warning: {args.learners} kernels may need {need_gb:.1f} GB; "
              f"{free_gb:.1f} GB is available", file=sys.stderr)
    with class_server() as (url, server):
        limits = asyncio.run(server_limits(url))
        limit = limits.max_connections
        if args.mode == "lockstep":
            print(f"{args.learners} learners in lockstep:", file=sys.stderr, flush=True)
            runs = asyncio.run(run_lockstep(url, paths, args.learners))
            print(report_lockstep(runs, args.markdown, server, limit))
            return 0 if all(r.ok for r in runs) else 1
        alone = None
        if not args.no_alone:
            print("One learner alone:", file=sys.stderr, flush=True)
            alone = asyncio.run(run_class(url, 1, paths, first=0))
        print(f"{args.learners} learners at once:", file=sys.stderr, flush=True)
        phase = asyncio.run(run_class(url, args.learners, paths))
    print(report(phase, alone, paths, args.markdown, server, limits))
    clean = phase.clean == len(phase.results) and (alone is None or alone.clean == len(paths))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
