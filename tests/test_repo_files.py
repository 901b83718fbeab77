"""The repo's own files: compose, environment.yml, README, Makefile, CI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tutorial_harness import REPO
from tutorial_harness.devtools import environment_yml_lists, read_requirements, requirement_name
from tutorial_kit import database


def requirement_lines(path: Path) -> list[str]:
    return read_requirements(path)


# --- docker-compose.yml -------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.mark.slow  # check-jsonschema's start-up alone takes seconds
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
    _, pip = environment_yml_lists(REPO / "environment.yml")
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


# --- make lab: the learner's packages only; make test: the contributors' tools on top ------

#: Tools only contributors use: none of them may reach a learner's .venv.
CONTRIBUTOR_TOOLS = ("playwright", "jupyterhub", "jupyter-book", "ruff", "pre-commit", "nox",
                     "nbstripout", "pytest-timeout", "check-jsonschema")


def dry_make(target: str, venv: Path) -> str:
    """The commands ``make TARGET`` would run for a .venv at ``venv`` (``make -n``)."""
    return subprocess.run(["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
                          cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_lab_and_test_stamps_never_undo_each_other(tmp_path: Path) -> None:
    """make test after make lab adds requirements-dev.txt only; make lab after make test,
    and either one twice, installs nothing."""
    venv = tmp_path / "venv"
    fresh = dry_make("venv", venv)
    assert "-r requirements.txt" in fresh and "requirements-dev" not in fresh, (
        "make lab installs the learner's list only")
    venv.mkdir()
    (venv / ".installed-lab").touch()
    assert "install" not in dry_make("venv", venv)
    adds = dry_make("dev", venv)
    assert "-r requirements-dev.txt" in adds and "-r requirements.txt" not in adds
    (venv / ".installed-dev").touch()
    assert "install" not in dry_make("venv", venv) + dry_make("dev", venv)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^lab: venv\b", makefile, re.M) and re.search(r"^test: dev\b", makefile, re.M)
    assert "--upgrade pip" not in makefile, "a learner's first make lab waits for no pip upgrade"


def closure_script() -> str:
    """Run by a venv's Python: every installed distribution the learner's pins do not
    require, following Requires-Dist (with extras and markers) from requirements.txt."""
    return """
import json, sys
from importlib.metadata import distributions
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as name
installed = {name(d.metadata["Name"]): d for d in distributions()}
todo = [Requirement(line) for line in json.loads(sys.argv[1])]
seen = set()
while todo:
    req = todo.pop()
    key = name(req.name)
    for extra in req.extras or {""}:
        if (key, extra) in seen or key not in installed:
            continue
        seen.add((key, extra))
        for dep in installed[key].requires or []:
            dep = Requirement(dep)
            if dep.marker is None or dep.marker.evaluate({"extra": extra}):
                todo.append(dep)
print(json.dumps(sorted(set(installed) - {key for key, _ in seen})))
"""


@pytest.mark.slow  # a real `make venv` into a temporary folder: ~20 s with uv's cache
def test_make_lab_installs_the_learner_list_and_nothing_else(tmp_path: Path) -> None:
    """The packages a make lab .venv holds are requirements.txt and what it requires:
    no contributor tool (Playwright, JupyterHub, Jupyter Book, ruff, ...) rides along."""
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    subprocess.run(["make", "-s", "venv", f"VENV={venv}", f"PYTHON={sys.executable}"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    learner = requirement_lines(REPO / "requirements.txt")
    extra = json.loads(subprocess.run(
        [str(venv / "bin" / "python"), "-c", closure_script(), json.dumps(learner)],
        capture_output=True, text=True, check=True).stdout)
    # The only additions: what `python -m venv` seeds (pip; setuptools before Python 3.12),
    # uv, which installs the list, and the tutorial's own editable package.
    assert {"uv", "async-orm-tutorial"} <= set(extra) <= {"pip", "setuptools", "uv",
                                                         "async-orm-tutorial"}, extra
    listed = json.loads(subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True, env=env).stdout)
    versions = {requirement_name(d["name"]): d["version"] for d in listed}
    for line in learner:
        assert versions.get(requirement_name(line)) == line.split("==")[1], line
    assert not set(CONTRIBUTOR_TOOLS) & set(versions)


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


def test_ci_installs_then_runs_make_test() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci


def test_ruff_is_clean_on_code_and_notebooks() -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", str(REPO)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr


def test_instructor_guide_answers_the_faq() -> None:
    # Its lesson table is checked against the registry in tests/test_notebook_structure.py.
    guide = (REPO / "docs" / "instructor-guide.md").read_text()
    for item in ("5432", "PostgreSQL 17", "culled", "Kernel Restarting", "skipped a notebook",
                 "DATABASE_URL", "proxy", "make reset-db", "2 hours", "4 hours",
                 "docker compose pull", "make test"):
        assert item in guide, f"instructor guide lacks {item!r}"


# --- honest files ------------------------------------------------------------------------

def repo_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    skip = (".ipynb", ".png", ".svg", ".lock")
    return [REPO / p for p in listed.splitlines()
            if not p.endswith(skip) and (REPO / p).is_file()]


def test_every_cited_test_file_and_test_exists() -> None:
    """A file that names the test keeping it in step names a real file and test."""
    cited = []
    for path in repo_text_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for ref, name in re.findall(r"\b(tests/[\w/]+\.py)(?:::(\w+))?", text):
            cited.append((path.relative_to(REPO), ref, name))
            assert (REPO / ref).is_file(), f"{path.relative_to(REPO)} cites missing {ref}"
            if name:
                assert re.search(rf"^def {name}\b", (REPO / ref).read_text(), re.M), (
                    f"{path.relative_to(REPO)} cites {ref}::{name}, which does not exist")
    assert any(ref == "tests/test_repo_files.py" for _, ref, _ in cited)


def test_license_is_mit_as_readme_and_pyproject_say() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "async-orm-tutorial contributors" in text
    assert 'license = "MIT"' in (REPO / "pyproject.toml").read_text()
    assert "[LICENSE](LICENSE)" in (REPO / "README.md").read_text()


def test_matrix_doc_describes_the_matrix_not_history() -> None:
    doc = (REPO / "docs" / "matrix.md").read_text()
    assert not re.search(r"\bissue\s*#?\d+", doc, re.I), "describe the matrix, not its history"
    for session in ("notebooks(3.11, sa20, pg15)", "notebooks(3.12, sa21, pg18)", "nest_asyncio"):
        assert f"`{session}" in doc, f"docs/matrix.md does not describe nox's {session}"


def test_jupyterlab_news_popup_is_off_for_lab_and_binder() -> None:
    """overrides.json sets fetchNews to "false" (Never); make lab and Binder install it."""
    overrides = json.loads((REPO / "lab-settings" / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^lab: .*\blab-settings\b", makefile, re.M), "make lab installs it"
    assert "lab-settings/overrides.json" in (REPO / "postBuild").read_text(), "Binder installs it"


def test_make_lab_settings_reach_jupyterlab(tmp_path: Path) -> None:
    """What make lab installs is what JupyterLab's settings API then reports as the default."""
    from jupyterlab_server.settings_utils import get_settings

    subprocess.run(["make", "-s", "lab-settings", f"VENV={tmp_path}"], cwd=REPO, check=True,
                   capture_output=True)
    settings_dir = tmp_path / "share" / "jupyter" / "lab" / "settings"
    schemas = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"
    result, _ = get_settings(str(settings_dir), str(schemas), str(tmp_path / "user"),
                             "@jupyterlab/apputils-extension:notification")
    assert result["schema"]["properties"]["fetchNews"]["default"] == "false"


def test_make_check_is_the_documented_fast_loop() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^check:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "make check is missing"
    body = recipe.group(1) + makefile
    assert "ruff check" in recipe.group(1) and "tests/test_notebooks.py" in recipe.group(1)
    assert 'CHECK_NOTEBOOKS ?= 00_ or 01_ or 02_' in body
    for test_file in re.search(r"CHECK_TESTS \?= ((?:.*\\\n)*.*)", makefile).group(1).split():
        if test_file != "\\":
            assert (REPO / test_file).is_file(), test_file
    assert "make check" in (REPO / "CONTRIBUTING.md").read_text()
    assert re.search(r"^test: .*\n\t\$\(BIN\)/python -m pytest$", makefile, re.M), (
        "make test stays the full suite")


def docker_only_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"\*\*Docker only for PostgreSQL\.\*\*.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README lost its Docker-only route"
    return [ln.split("  #")[0].strip() for ln in block.group(1).splitlines() if ln.strip()]


@pytest.mark.slow  # a fresh venv with requirements.txt: about a minute with pip's cache
def test_docker_only_route_without_docker(tmp_path: Path, password_server) -> None:
    """The route's own commands, in a copy of the repo: only the docker lines are skipped,
    and the DATABASE_URL line points at the tests' password server instead of compose."""
    commands = docker_only_commands()
    assert commands[0].startswith("docker compose up") and commands[-1].startswith("docker")
    copy = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file() and not rel.startswith("notebooks/"):
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, copy / rel)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    for command in commands[1:-1]:
        if command.startswith("export DATABASE_URL="):
            env["DATABASE_URL"] = password_server.url
            continue
        if command.startswith(".venv/bin/jupyter lab"):
            # Not started (it would wait for a browser): the app must be installed, and
            # tutorial_kit importable from elsewhere, which is checked below.
            command = "test -x .venv/bin/jupyter-lab && .venv/bin/python -c 'import jupyterlab'"
        subprocess.run(command.replace("python3 ", f"{sys.executable} ", 1)
                       if command.startswith("python3 ") else command,
                       shell=True, cwd=copy, env=env, check=True, capture_output=True,
                       timeout=600)
    out = subprocess.run([str(copy / ".venv" / "bin" / "python"), "-c",
                          "from tutorial_kit import database_url; database_url()"],
                         cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("Database: DATABASE_URL")
