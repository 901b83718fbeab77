"""Which of nest_asyncio and nest_asyncio2 works, on which Python, under ipykernel.

    python scripts/nest_asyncio_matrix.py [--python PATH ...] [--ipykernel VERSION] [--keep]

For each interpreter (default: pyenv's 3.11, 3.12 and 3.13) a throwaway venv in
a temporary folder gets the tutorial's pins (SQLAlchemy, asyncpg, ipykernel or
the ``--ipykernel`` given, nest-asyncio, nest-asyncio2). Then, for each package,
a real ipykernel of that Python (``tutorial_kit.scratch_kernel``) runs three cells:

1. an ``async_main()`` that opens an engine, runs an ORM query and a stream
   with asyncpg, and disposes the engine; ``asyncio.run()`` of it, unpatched;
2. ``apply()``, then ``asyncio.run(async_main())``, and on 3.12+ the same
   with a ``loop_factory`` that counts the loops it makes (accepted is not used);
3. ``print("next cell ran")``.

The cells are sent twice: one at a time (as nbclient, nbconvert and ``make
test`` run a notebook) and all at once (as JupyterLab's *Run All* queues them).
The result is printed as a Markdown table for docs/matrix.md. The venvs are
removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYENV = Path.home() / ".pyenv" / "versions"
PINS = ["nest-asyncio==1.6.0", "nest-asyncio2==1.7.4"]
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

PROBE = '''
import asyncio, json, sys
from tutorial_kit.scratch_kernel import run_cells
cells = json.loads(sys.argv[1])
async def main():
    out = {}
    for mode in ("one at a time", "queued"):
        results = await run_cells(cells, queued=mode == "queued", timeout=60, quiet=3.0)
        out[mode] = [{"stdout": r.stdout, "error": r.error, "replied": r.replied,
                      "stderr": r.stderr_summary()} for r in results]
    print(json.dumps(out))
asyncio.run(main())
'''


def pythons(given: list[str]) -> list[str]:
    if given:
        return given
    found = []
    for minor in ("3.11", "3.12", "3.13"):
        cands = sorted(PYENV.glob(f"{minor}.*/bin/python{minor}"))
        if cands:
            found.append(str(cands[-1]))
    return found


def requirement(name: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.lower().startswith(name):
            return line.split("#")[0].strip()
    raise SystemExit(f"{name} is not pinned in requirements.txt")


def make_venv(python: str, where: Path, ipykernel: str) -> Path:
    subprocess.run([python, "-m", "venv", str(where)], check=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    pins = [requirement("sqlalchemy"), requirement("asyncpg"), f"ipykernel=={ipykernel}", *PINS]
    subprocess.run([*pip, *pins], check=True)
    return where / "bin" / "python"


def verdict(cells: list[dict]) -> str:
    """One short phrase for a run of the three cells."""
    _baseline, patched, after = cells
    if not patched["replied"]:
        return "no reply"
    text = patched["stdout"]
    parts = ["runs" if "asyncio.run: ok" in text else f"fails: {patched['error'] or text[:60]}"]
    if "loop_factory:" in text:
        line = next(ln for ln in text.splitlines() if ln.startswith("loop_factory:"))
        if "accepted" in line:
            used = not line.endswith("loops made: 0")
            parts.append("`loop_factory` used" if used else
                         "`loop_factory` accepted but never called")
        else:
            parts.append("`loop_factory` " + line.split(":", 1)[1].strip().split(" ")[0])
    parts += [f"stderr: {s}" for s in patched["stderr"]]
    parts.append("next cell ran" if after["replied"] else "**next cell dropped**")
    return "; ".join(parts)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=[])
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--ipykernel", default=requirement("ipykernel").split("==")[1],
                        help="ipykernel version to install (default: the pin)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tutorial_kit import database_url

    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONPATH": str(REPO)}
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="nest-matrix-"))
    try:
        for python in pythons(args.python):
            t0 = time.perf_counter()
            venv_python = make_venv(python, tmp / Path(python).name, args.ipykernel)
            versions = subprocess.run(
                [str(venv_python), "-c", "import sys, importlib.metadata as m; "
                 "print(sys.version.split()[0], m.version('ipykernel'), m.version('sqlalchemy'))"],
                capture_output=True, text=True, check=True).stdout.split()
            for pkg in PACKAGES:
                cells = [ASYNC_MAIN, PATCH_AND_RUN.format(pkg=pkg), 'print("next cell ran")']
                done = subprocess.run([str(venv_python), "-c", PROBE, json.dumps(cells)],
                                      env=env, capture_output=True, text=True, timeout=300,
                                      cwd=tmp)
                if done.returncode != 0:
                    rows.append((*versions, pkg, f"probe failed: {done.stderr[-300:]}", ""))
                    continue
                out = json.loads(done.stdout.strip().splitlines()[-1])
                unpatched = out["one at a time"][0]["stdout"].strip()
                assert unpatched.startswith("unpatched: RuntimeError"), unpatched
                rows.append((*versions, pkg, verdict(out["one at a time"]),
                             verdict(out["queued"])))
            print(f"{python}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    finally:
        if args.keep:
            print(f"venvs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("| Python | ipykernel | SQLAlchemy | package | cells one at a time "
          "(nbclient, `make test`) | cells queued (JupyterLab's Run All) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
