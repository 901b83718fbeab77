"""Which of nest_asyncio and nest_asyncio2 works, on this Python, under ipykernel.

    nox -s nest_asyncio                      # each Python of the matrix (noxfile.py)
    python -m tutorial_harness.nest_asyncio_check   # just the Python running it

For each package, a real ipykernel of this Python (``tutorial_kit.scratch_kernel``)
runs three cells:

1. an ``async_main()`` that opens an engine, runs an ORM query and a stream with
   asyncpg, and disposes the engine; ``asyncio.run()`` of it, unpatched, must raise
   ``RuntimeError`` (checked: otherwise the kernel is not what lesson 09 assumes);
2. ``apply()``, then ``asyncio.run(async_main())``, and on 3.12+ the same with a
   ``loop_factory`` that counts the loops it makes (accepted is not used);
3. ``print("next cell ran")``.

The cells are sent twice: one at a time (as nbclient, nbconvert and ``make test`` run
a notebook) and all at once (as JupyterLab's *Run All* queues them). The result is
printed as Markdown table rows for docs/matrix.md.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform

from tutorial_kit import database_url
from tutorial_kit.scratch_kernel import CellResult, run_cells

PACKAGES = ("nest_asyncio", "nest_asyncio2")

ASYNC_MAIN = '''
import asyncio, os, sys
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

async def async_main() -> str:
    engine = create_async_engine(os.environ["DATABASE_URL"])
    try:
        async with async_sessionmaker(engine)() as session:
            await session.scalar(select(func.now()))
            result = await session.stream_scalars(select(func.generate_series(1, 3)))
            streamed = [n async for n in result]
        return f"ok {streamed}"
    finally:
        await engine.dispose()

coro = async_main()
try:
    asyncio.run(coro)
except RuntimeError as err:
    print("unpatched:", type(err).__name__, err)
finally:
    coro.close()
'''

PATCH_AND_RUN = '''
import {pkg}
{pkg}.apply()
print("asyncio.run:", asyncio.run(async_main()))
if sys.version_info >= (3, 12):
    # Count the loops the factory makes: a run() that accepts the argument may still
    # ignore it and use the kernel's running loop.
    made = []
    def factory():
        made.append(asyncio.new_event_loop())
        return made[-1]
    coro = async_main()
    try:
        asyncio.run(coro, loop_factory=factory)
        print(f"loop_factory: accepted, loops made: {{len(made)}}")
    except Exception as err:
        print("loop_factory:", type(err).__name__, str(err)[:80])
    finally:
        coro.close()  # if run() refused it, it never started
'''

HEADER = ("| Python | ipykernel | SQLAlchemy | package | cells one at a time "
          "(nbclient, `make test`) | cells queued (JupyterLab's Run All) |\n"
          "|---|---|---|---|---|---|")


def verdict(cells: list[CellResult]) -> str:
    """One short phrase for a run of the three cells."""
    _baseline, patched, after = cells
    if not patched.replied:
        return "no reply"
    text = patched.stdout
    parts = ["runs" if "asyncio.run: ok" in text else f"fails: {patched.error or text[:60]}"]
    factory = [ln for ln in text.splitlines() if ln.startswith("loop_factory:")]
    if factory:
        if "accepted" in factory[0]:
            parts.append("`loop_factory` accepted but never called"
                         if factory[0].endswith("loops made: 0") else "`loop_factory` used")
        else:
            parts.append("`loop_factory` " + factory[0].split(":", 1)[1].strip().split(" ")[0])
    parts += [f"stderr: {s}" for s in patched.stderr_summary()]
    parts.append("next cell ran" if after.replied else "**next cell dropped**")
    return "; ".join(parts)


async def row(pkg: str) -> str:
    """The table row for ``pkg``: both ways of sending the cells."""
    cells = [ASYNC_MAIN, PATCH_AND_RUN.format(pkg=pkg), 'print("next cell ran")']
    one_at_a_time = await run_cells(cells, timeout=60, quiet=3.0)
    queued = await run_cells(cells, queued=True, timeout=60, quiet=3.0)
    unpatched = one_at_a_time[0].stdout.strip()
    if not unpatched.startswith("unpatched: RuntimeError"):
        raise SystemExit(f"unpatched asyncio.run() in the kernel did not raise RuntimeError: "
                         f"{unpatched or one_at_a_time[0].error!r}")
    versions = [platform.python_version(), importlib.metadata.version("ipykernel"),
                importlib.metadata.version("sqlalchemy")]
    return "| " + " | ".join([*versions, pkg, verdict(one_at_a_time), verdict(queued)]) + " |"


def main() -> None:
    # The kernels inherit it; resolved once here (DATABASE_URL, compose or embedded).
    os.environ["DATABASE_URL"] = database_url(quiet=True)
    rows = [asyncio.run(row(pkg)) for pkg in PACKAGES]
    print(HEADER, *rows, sep="\n")


if __name__ == "__main__":
    main()
