"""make strip: nbstripout with the project's keys, idempotent, from any folder."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import yaml

from tutorial_harness import strip as strip_notebooks

REPO = Path(__file__).resolve().parent.parent


def messy_notebook(path: Path) -> None:
    """What JupyterLab plus jupytext leave behind after a run."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.update({
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                       "language": "python"},
        "language_info": {"name": "python", "version": "3.12.1"},
        "jupytext": {"formats": "ipynb,py:percent"},
        "widgets": {"application/vnd.jupyter.widget-state+json": {}},
    })
    code = nbformat.v4.new_code_cell("print('hi')", execution_count=3, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="hi\n")])
    code.metadata.update({"lines_to_next_cell": 2, "execution": {"iopub.status.idle": "x"},
                          "tags": ["scaffold"]})
    solution = nbformat.v4.new_markdown_cell("<details><summary>Solution</summary>\n</details>")
    solution.metadata.update({"tags": ["solution"], "jupyter": {"source_hidden": True},
                              "lines_to_next_cell": 0})
    nb.cells = [code, solution]
    nbformat.write(nb, path)


def run_strip(cwd: Path, *files: str) -> None:
    """``python -m tutorial_harness.strip FILE…`` run from ``cwd`` (in-process: fast)."""
    here = Path.cwd()
    os.chdir(cwd)
    try:
        assert strip_notebooks.main(list(files)) == 0
    finally:
        os.chdir(here)


def test_strip_leaves_a_clean_notebook_and_is_idempotent(tmp_path: Path) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    path = work / "99_messy.ipynb"
    messy_notebook(path)
    ids = [c.id for c in nbformat.read(path, as_version=4).cells]
    run_strip(elsewhere, "../work/99_messy.ipynb")  # a relative path from another folder
    nb = nbformat.read(path, as_version=4)
    assert set(nb.metadata) == {"kernelspec"}
    code, solution = nb.cells
    assert code.outputs == [] and code.execution_count is None
    assert dict(code.metadata) == {"tags": ["scaffold"]}
    assert dict(solution.metadata) == {"tags": ["solution"]}
    assert [c.id for c in nb.cells] == ids, "cell ids are kept"
    once = path.read_text()
    run_strip(work, str(path))
    assert path.read_text() == once, "stripping twice changes nothing"


def test_default_targets_are_the_repo_notebooks_wherever_you_are(tmp_path: Path,
                                                                monkeypatch) -> None:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00_other.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)
    found = strip_notebooks.targets([])
    assert found and all(p.parent == REPO / "notebooks" for p in found)


def test_tidy_for_the_builds_matches_the_file_strip(tmp_path: Path) -> None:
    path = tmp_path / "99_messy.ipynb"
    messy_notebook(path)
    in_memory = strip_notebooks.tidy(nbformat.read(path, as_version=4))
    run_strip(tmp_path, str(path))
    assert in_memory == nbformat.read(path, as_version=4)


def test_pre_commit_runs_ruff_and_the_same_strip() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert "ruff" in hooks["ruff"]["entry"]
    assert "tutorial_harness.strip" in hooks["nbstripout"]["entry"]
    assert hooks["nbstripout"]["files"] == r"\.ipynb$"
    contributing = (REPO / "CONTRIBUTING.md").read_text()
    assert "pre-commit install" in contributing


@pytest.mark.slow  # a second interpreter importing nbformat: seconds
def test_the_same_keys_through_the_nbstripout_command(tmp_path: Path) -> None:
    """The pinned nbstripout command, given this project's options, agrees with make strip."""
    import subprocess
    import sys

    by_cli, by_script = tmp_path / "cli.ipynb", tmp_path / "script.ipynb"
    messy_notebook(by_cli)
    by_script.write_text(by_cli.read_text())
    subprocess.run([sys.executable, "-m", "nbstripout", *strip_notebooks.nbstripout_args(),
                    str(by_cli)], check=True)
    run_strip(tmp_path, str(by_script))
    assert by_cli.read_text() == by_script.read_text()
