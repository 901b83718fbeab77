"""make strip: nbstripout's own command with the project's options, idempotent; the
pre-commit hook runs the same target, and the committed notebooks are already stripped."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

from tutorial_harness import REPO

#: The nbstripout next to the interpreter running the tests, and no venv refresh first
#: (make strip only needs nbstripout present: its dev stamp is an order-only prerequisite).
MAKE_STRIP = ["make", "--no-print-directory", "-s", "-C", str(REPO), "-o", ".venv/.installed-dev",
              f"BIN={Path(sys.executable).parent}", "strip"]


def messy_notebook(path: Path) -> None:
    """What JupyterLab plus jupytext leave behind after a run."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.update({
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                       "language": "python"},
        "language_info": {"name": "python", "version": "3.12.1"},
        "jupytext": {"formats": "ipynb,py:percent"},
        "vscode": {"interpreter": {"hash": "0123"}},
        "widgets": {"application/vnd.jupyter.widget-state+json": {}},
    })
    code = nbformat.v4.new_code_cell("print('hi')", execution_count=3, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="hi\n")])
    code.metadata.update({"lines_to_next_cell": 2, "execution": {"iopub.status.idle": "x"},
                          "collapsed": False, "scrolled": True, "tags": ["scaffold"]})
    solution = nbformat.v4.new_markdown_cell("<details><summary>Solution</summary>\n</details>")
    solution.metadata.update({"tags": ["solution"], "jupyter": {"source_hidden": True},
                              "lines_to_next_cell": 0})
    nb.cells = [code, solution]
    nbformat.write(nb, path)


def make_strip(*paths: Path) -> None:
    subprocess.run([*MAKE_STRIP, f"NOTEBOOKS={' '.join(map(str, paths))}"], check=True)


def test_make_strip_leaves_a_clean_notebook_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "99_messy.ipynb"
    messy_notebook(path)
    ids = [c.id for c in nbformat.read(path, as_version=4).cells]
    make_strip(path)
    nb = nbformat.read(path, as_version=4)
    assert set(nb.metadata) == {"kernelspec"}, "kernelspec is kept, editor metadata goes"
    code, solution = nb.cells
    assert code.outputs == [] and code.execution_count is None
    assert dict(code.metadata) == {"tags": ["scaffold"]}
    assert dict(solution.metadata) == {"tags": ["solution"]}
    assert [c.id for c in nb.cells] == ids, "cell ids are kept"
    once = path.read_text()
    make_strip(path)
    assert path.read_text() == once, "stripping twice changes nothing"


def test_committed_notebooks_are_already_stripped(tmp_path: Path) -> None:
    """So the student / instructor builds, which copy them, need no stripping of their own."""
    originals = sorted((REPO / "notebooks").glob("*.ipynb"))
    copies = [Path(shutil.copy2(p, tmp_path / p.name)) for p in originals]
    make_strip(*copies)
    changed = [p.name for p, c in zip(originals, copies, strict=True)
               if c.read_text() != p.read_text()]
    assert not changed, f"run `make strip`: {changed}"


def test_pre_commit_hook_is_make_strip(tmp_path: Path) -> None:
    """The hook is make strip on the files pre-commit appends to its command."""
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert "ruff" in hooks["ruff"]["entry"]
    hook = hooks["nbstripout"]
    assert hook["files"] == r"\.ipynb$"
    entry = shlex.split(hook["entry"])
    assert "make" in entry[-2] and " strip " in entry[-2]
    assert "extra-keys" not in hook["entry"], "the options live in the Makefile only"
    path = tmp_path / "99_messy.ipynb"
    messy_notebook(path)
    # The hook's own make line, pointed at the test's nbstripout as make_strip is.
    command = entry[-2].replace("make ", " ".join(map(shlex.quote, MAKE_STRIP[:-1])) + " ", 1)
    subprocess.run([*entry[:-2], command, entry[-1], str(path)], check=True, cwd=REPO)
    nb = nbformat.read(path, as_version=4)
    assert set(nb.metadata) == {"kernelspec"} and nb.cells[0].outputs == []
    assert "pre-commit install" in (REPO / "CONTRIBUTING.md").read_text()
