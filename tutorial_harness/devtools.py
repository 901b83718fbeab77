"""Plumbing shared by noxfile.py, the harness and the tests: requirement files, PostgreSQL.

Interpreters for the version matrix are nox's to find (``pythonX.Y`` on PATH). What is
left here is found the ordinary way, never from one machine's paths:

- Python ``X.Y`` candidates for binder_like.py: the one running this (if it is X.Y),
  ``pythonX.Y`` on PATH, then pyenv's (``pyenv root``/versions/X.Y.*);
- PostgreSQL ``N``'s server programs: ``PG_BIN``, then ``pg_config --bindir``, then
  ``postgres`` on PATH, then the sibling ``N/bin`` of a versioned layout such as
  Debian's (``…/postgresql/15/bin`` next to the ``…/postgresql/16/bin`` pg_config names).

When PostgreSQL ``N`` is not found, ``Missing`` says so and how to install it. The rest
of the shared plumbing lives in the package, because the lessons need it too:
``tutorial_kit.net.free_port``, ``tutorial_kit.accounts.ensure_user`` (the
unprivileged user for root) and ``tutorial_kit.embedded.stop`` (stop a server
without signalling anything that is not it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


class Missing(SystemExit):
    """A tool the run needs is not installed; the message names it and the fix."""


# --- requirement files ---------------------------------------------------------------------

def read_requirements(path: Path) -> list[str]:
    """The requirement lines of ``path``, with ``-r`` includes inlined and comments dropped."""
    lines: list[str] = []
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            lines += read_requirements(Path(path).parent / line[2:].strip())
        elif line:
            lines.append(line)
    return lines


def requirement_name(line: str) -> str:
    """``sqlalchemy`` for ``SQLAlchemy[asyncio]==2.1.9`` (normalised as pip does)."""
    name = re.split(r"[\[=<>!~;\s]", line, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_version(lines: list[str], name: str) -> str | None:
    """The ``==`` version of ``name`` in ``lines``, or None."""
    for line in lines:
        if requirement_name(line) == requirement_name(name) and "==" in line:
            return line.split("==", 1)[1].strip()
    return None


def replace_pin(lines: list[str], name: str, new_line: str) -> list[str]:
    """``lines`` with the one requirement for ``name`` replaced by ``new_line``."""
    hits = [i for i, ln in enumerate(lines) if requirement_name(ln) == requirement_name(name)]
    if len(hits) != 1:
        raise ValueError(f"expected one {name} requirement, found {len(hits)}")
    return [new_line if i == hits[0] else ln for i, ln in enumerate(lines)]


def environment_yml_lists(path: Path) -> tuple[list[str], list[str]]:
    """``(conda dependencies, pip list)`` from an ``environment.yml``."""
    env = yaml.safe_load(Path(path).read_text())
    conda, pip = [], []
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict) and "pip" in dep:
            pip += [str(x) for x in dep["pip"]]
        else:
            conda.append(str(dep))
    return conda, pip


# --- interpreters --------------------------------------------------------------------------

def python_candidates(version: str) -> list[str]:
    """Interpreters that may be Python ``version``, in the order they are tried."""
    found: list[str] = []
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        # The interpreter this venv was made from (sys.base_prefix is public; a venv's own
        # python would carry the venv's packages into the new one).
        found.append(str(Path(sys.base_prefix) / "bin" / f"python{version}"))
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(on_path)
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        versions = Path(root.stdout.strip()) / "versions"
        if root.returncode == 0 and versions.is_dir():
            def key(p: Path) -> tuple[int, ...]:
                return tuple(int(x) for x in re.findall(r"\d+", p.name))
            for home in sorted(versions.glob(f"{version}.*"), key=key, reverse=True):
                if re.fullmatch(rf"{re.escape(version)}\.\d+", home.name):
                    found.append(str(home / "bin" / f"python{version}"))
    return found


# --- PostgreSQL ------------------------------------------------------------------------------

def postgres_major(bin_dir: Path) -> int | None:
    """The major version of the ``postgres`` server program in ``bin_dir``, or None."""
    exe = Path(bin_dir) / "postgres"
    if not os.access(exe, os.X_OK):
        return None
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    return int(found.group(1)) if found else None


def find_pg_bin(major: int) -> Path:
    """The folder holding PostgreSQL ``major``'s initdb/pg_ctl/postgres/psql, or ``Missing``."""
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            bindir = Path(out.stdout.strip())
            candidates.append(bindir)
            # A versioned layout (…/postgresql/16/bin): the wanted major sits beside it.
            if bindir.parent.name.isdigit():
                candidates.append(bindir.parent.parent / str(major) / "bin")
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bin_dir in candidates:
        if postgres_major(bin_dir) == major and (bin_dir / "initdb").exists():
            return bin_dir
    raise Missing(
        f"PostgreSQL {major}'s server programs (initdb, pg_ctl, postgres) were not found "
        f"(looked in: {', '.join(map(str, candidates)) or 'no PG_BIN, pg_config or postgres'}). "
        f"Install them (Debian/Ubuntu: apt-get install postgresql-{major}) or set "
        f"PG_BIN to their folder.")
