"""Benchmark the notebook series: per notebook kernel time, slowest cell, peak kernel RSS.

Not a test: it prints figures against the budgets (on average ≤ 6 s of kernel
time per notebook, no cell over 3 s, every kernel under 350 MB) so a human can
see where time goes. Each notebook runs once in a fresh kernel, against
whatever database ``database_url()`` picks (DATABASE_URL, compose, or the
embedded server). "Kernel time" is the time spent executing cells; "wall"
adds the kernel's start-up, as a reader pays it. ``--book`` also times
``make book`` (its own budget: 3 minutes). ``--server-start`` times the embedded
PostgreSQL's first start in a new data directory (initdb, then start) and its restart
over existing data, five runs each, in throwaway directories (the README quotes it).

    python -m tutorial_harness.benchmark [--markdown] [--book] [--server-start] [NOTEBOOK ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy

from tutorial_harness.runner import notebook_paths, run_notebook
from tutorial_kit import embedded

MEAN_KERNEL_BUDGET_S, CELL_BUDGET_S, RSS_BUDGET_MB, BOOK_BUDGET_S = 6.0, 3.0, 350.0, 180.0
SERVER_START_RUNS = 5


def spread(seconds: list[float]) -> str:
    return (f"median {statistics.median(seconds):.1f} s "
            f"(min {min(seconds):.1f}, max {max(seconds):.1f}) over {len(seconds)} runs")


def server_start_times() -> tuple[list[float], list[float]]:
    """First start (initdb + start) and restart of the embedded server, in fresh dirs."""
    first, again = [], []
    for _ in range(SERVER_START_RUNS):
        pgdata = Path(tempfile.mkdtemp(prefix="tutorial-benchmark-"))
        try:
            start = time.perf_counter()
            embedded.start(pgdata)
            first.append(time.perf_counter() - start)
            embedded.stop(pgdata, mode="fast")
            start = time.perf_counter()
            embedded.start(pgdata)
            again.append(time.perf_counter() - start)
        finally:
            embedded.stop(pgdata, mode="fast")
            shutil.rmtree(pgdata, ignore_errors=True)
    return first, again


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--book", action="store_true", help="also time tutorial_harness/book.py")
    parser.add_argument("--server-start", action="store_true",
                        help="time the embedded server's first start and restart, then stop")
    args = parser.parse_args()
    if args.server_start:
        first, again = server_start_times()
        print(f"embedded PostgreSQL, first start (initdb + start): {spread(first)}")
        print(f"embedded PostgreSQL, restart over existing data:   {spread(again)}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        return 0
    paths = [p.resolve() for p in args.notebooks] or notebook_paths()

    rows = []
    total = kernel_total = 0.0
    for path in paths:
        start = time.perf_counter()
        run = asyncio.run(run_notebook(path, env=dict(os.environ)))
        wall = time.perf_counter() - start  # includes kernel start-up, as a reader pays it
        kernel = run.pass_seconds[0]
        total += wall
        kernel_total += kernel
        slow = run.slowest()
        rows.append((path.stem, wall, kernel, slow.seconds,
                     f"cell {slow.index}: {slow.first_line}", run.peak_rss_mb))
        print(f"  ran {path.stem} in {wall:.1f} s", file=sys.stderr, flush=True)
    mean_kernel = kernel_total / len(rows)

    book_s = None
    if args.book:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tutorial_harness.book"],
                       check=True, stdout=subprocess.DEVNULL)
        book_s = time.perf_counter() - start

    over = [r for r in rows if r[3] > CELL_BUDGET_S or r[5] > RSS_BUDGET_MB]
    head = (f"{platform.python_version()} · SQLAlchemy {sqlalchemy.__version__} · "
            f"{os.cpu_count()} cores · {time.strftime('%Y-%m-%d')}")
    if args.markdown:
        print(f"Measured with Python {head}\n")
        print("| Notebook | Kernel time (s) | Wall (s) | Slowest cell (s) | Slowest cell "
              "| Peak kernel RSS (MB) |")
        print("|---|---:|---:|---:|---|---:|")
        for name, wall, kernel, cell_s, cell, rss in rows:
            print(f"| {name} | {kernel:.1f} | {wall:.1f} | {cell_s:.2f} | `{cell}` | {rss:.0f} |")
        print(f"| **total** | **{kernel_total:.1f}** | **{total:.1f}** | | | |")
    else:
        print(f"Python {head}")
        print(f"{'notebook':<30} {'kernel s':>8} {'wall s':>7} {'slowest s':>10} {'RSS MB':>7}"
              "  slowest cell")
        for name, wall, kernel, cell_s, cell, rss in rows:
            print(f"{name:<30} {kernel:>8.1f} {wall:>7.1f} {cell_s:>10.2f} {rss:>7.0f}  {cell}")
        print(f"{'total':<30} {kernel_total:>8.1f} {total:>7.1f}")
    print(f"\nBudgets: mean kernel time per notebook "
          f"{mean_kernel:.1f}/{MEAN_KERNEL_BUDGET_S:.0f} s; "
          f"cells over {CELL_BUDGET_S:.0f} s or kernels over {RSS_BUDGET_MB:.0f} MB: "
          f"{', '.join(r[0] for r in over) or 'none'}")
    if book_s is not None:
        print(f"make book: {book_s:.0f}/{BOOK_BUDGET_S:.0f} s (execution and Sphinx build)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
