"""Benchmark the notebook series: per notebook wall time, slowest cell, peak kernel RSS.

Not a test: it prints figures against the budgets (series ≤ 60 s, cell ≤ 5 s,
kernel ≤ 400 MB) so a human can see where time goes. Each notebook runs once
in a fresh kernel, against whatever database ``database_url()`` picks
(DATABASE_URL, compose, or the embedded server).

    python scripts/benchmark.py [--markdown] [NOTEBOOK ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

import sqlalchemy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_runner import notebook_paths, run_notebook

SERIES_BUDGET_S, CELL_BUDGET_S, RSS_BUDGET_MB = 60.0, 5.0, 400.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.notebooks] or notebook_paths()

    rows = []
    total = 0.0
    for path in paths:
        start = time.perf_counter()
        run = asyncio.run(run_notebook(path, env=dict(os.environ)))
        wall = time.perf_counter() - start  # includes kernel start-up, as a reader pays it
        total += wall
        slow = run.slowest()
        rows.append((path.stem, wall, slow.seconds, f"cell {slow.index}: {slow.first_line}",
                     run.peak_rss_mb))
        print(f"  ran {path.stem} in {wall:.1f} s", file=sys.stderr, flush=True)

    over = [r for r in rows if r[2] > CELL_BUDGET_S or r[4] > RSS_BUDGET_MB]
    head = (f"{platform.python_version()} · SQLAlchemy {sqlalchemy.__version__} · "
            f"{os.cpu_count()} cores · {time.strftime('%Y-%m-%d')}")
    if args.markdown:
        print(f"Measured with Python {head}\n")
        print("| Notebook | Wall (s) | Slowest cell (s) | Slowest cell | Peak kernel RSS (MB) |")
        print("|---|---:|---:|---|---:|")
        for name, wall, cell_s, cell, rss in rows:
            print(f"| {name} | {wall:.1f} | {cell_s:.2f} | `{cell}` | {rss:.0f} |")
        print(f"| **total** | **{total:.1f}** | | | |")
    else:
        print(f"Python {head}")
        print(f"{'notebook':<28} {'wall s':>7} {'slowest s':>10}  {'RSS MB':>11}  slowest cell")
        for name, wall, cell_s, cell, rss in rows:
            print(f"{name:<28} {wall:>7.1f} {cell_s:>10.2f}  {rss:>11.0f}  {cell}")
        print(f"{'total':<28} {total:>7.1f}")
    print(f"\nBudgets: series {total:.1f}/{SERIES_BUDGET_S:.0f} s; "
          f"cells over {CELL_BUDGET_S:.0f} s or kernels over {RSS_BUDGET_MB:.0f} MB: "
          f"{', '.join(r[0] for r in over) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
