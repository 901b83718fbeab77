"""The repo's own files: compose, environment.yml, README, Makefile, CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tutorial_kit import database

REPO = Path(__file__).resolve().parent.parent


def requirement_lines(path: Path) -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("-r")]


# --- docker-compose.yml -------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_validates_against_compose_spec() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.compose-spec", str(REPO / "docker-compose.yml")],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_follows_the_postgres_18_rules() -> None:
    service = compose()["services"]["postgres"]
    assert service["image"] == "postgres:18"
    volume, _, target = service["volumes"][0].partition(":")
    assert target == "/var/lib/postgresql", "PostgreSQL 18 images mount at /var/lib/postgresql"
    assert volume in compose()["volumes"], "use a named volume"
    assert service["ports"] == ["127.0.0.1:5432:5432"], "publish on loopback only"
    test = " ".join(service["healthcheck"]["test"])
    assert "pg_isready" in test and "-h 127.0.0.1" in test


def test_compose_credentials_match_the_helper() -> None:
    env = compose()["services"]["postgres"]["environment"]
    assert env["POSTGRES_USER"] == database.COMPOSE_USER
    assert env["POSTGRES_PASSWORD"] == database.COMPOSE_PASSWORD
    assert env["POSTGRES_DB"] == database.COMPOSE_DB
    port = compose()["services"]["postgres"]["ports"][0].rsplit(":", 2)[1]
    assert int(port) == database.COMPOSE_PORT
    assert database.COMPOSE_URL.startswith("postgresql+asyncpg://tutorial:tutorial@localhost:5432/")


# --- environment.yml vs requirements.txt -----------------------------------------------

def test_environment_yml_matches_requirements() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    deps = env["dependencies"]
    assert "python=3.12" in deps, "pin Python for Binder (its default is older)"
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == sorted(requirement_lines(REPO / "requirements.txt")), (
        "environment.yml's pip list and requirements.txt have drifted apart"
    )


def test_requirements_are_pinned_and_bring_greenlet() -> None:
    for path in ("requirements.txt", "requirements-dev.txt"):
        for line in requirement_lines(REPO / path):
            assert "==" in line, f"{path}: pin {line!r} exactly"
    runtime = requirement_lines(REPO / "requirements.txt")
    assert any(ln.startswith("sqlalchemy[asyncio]==") for ln in runtime), (
        "SQLAlchemy 2.1 installs greenlet only with the [asyncio] extra"
    )


def test_no_binder_folder_hides_environment_yml() -> None:
    assert not (REPO / "binder").exists() and not (REPO / ".binder").exists()


# --- README and Makefile ----------------------------------------------------------------

def test_readme_quick_start_is_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S)
    assert block, "README needs a Quick start code block"
    commands = [ln.split("#")[0].strip() for ln in block.group(1).splitlines() if ln.strip()]
    assert commands == ["make lab", "make test"]
    first_section = re.search(r"^## .*$", readme, re.M).group(0)
    assert first_section == "## Quick start", "the quick start must come first"


def test_readme_make_commands_exist() -> None:
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    used = set(re.findall(r"`make ([a-z][a-z-]*)", readme)) | set(
        re.findall(r"^make ([a-z][a-z-]*)", readme, re.M))
    assert used and used <= targets, f"README names missing targets: {used - targets}"


def test_binder_links_open_an_existing_notebook() -> None:
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"https://mybinder\.org/v2/gh/[^)\s]+", readme)
    assert links, "README should carry a Binder badge"
    for link in links:
        target = re.search(r"urlpath=lab/tree/([^&)\s]+)", link)
        assert target, f"{link} should open JupyterLab (urlpath=lab/tree/...)"
        assert (REPO / target.group(1)).is_file(), f"{link} points at a missing notebook"
        assert target.group(1).startswith("notebooks/00_")


def test_readme_outline_lists_every_notebook() -> None:
    readme = (REPO / "README.md").read_text()
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"(notebooks/{nb.name})" in readme, f"README outline is missing {nb.name}"


def test_ci_installs_then_runs_make_test() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci


def test_ruff_is_clean_on_code_and_notebooks() -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", str(REPO)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr


def test_instructor_guide_covers_every_notebook_and_faq() -> None:
    guide = (REPO / "docs" / "instructor-guide.md").read_text()
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"(../notebooks/{nb.name})" in guide, f"instructor guide misses {nb.name}"
    for item in ("5432", "PostgreSQL 17", "culled", "Kernel Restarting", "skipped a notebook",
                 "DATABASE_URL", "proxy", "make reset-db", "2 hours", "4 hours",
                 "docker compose pull", "make test"):
        assert item in guide, f"instructor guide lacks {item!r}"
