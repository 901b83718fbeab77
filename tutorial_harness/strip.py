"""Make notebooks commit-ready with nbstripout: no outputs, no execution counts, no editor noise.

nbstripout (pinned in requirements-dev.txt) does the work, through its
``strip_output``; this file holds the configuration, so ``make strip``, the
pre-commit hook and the student / instructor builds (``tidy``) strip exactly the
same keys (``nbstripout $(python -m tutorial_harness.strip --args)`` would too):

- nbstripout's defaults: outputs, execution counts, ``metadata.widgets``,
  ``cell.metadata.execution``, ``collapsed``, ``scrolled``, …;
- jupytext's leftovers (``metadata.jupytext``, ``cell.metadata.lines_to_next_cell``);
- ``cell.metadata.jupyter`` (``source_hidden``/``outputs_hidden``: a solution is
  collapsed by its own ``<details>`` block, which a hidden source would hide too);
- ``metadata.language_info`` and ``metadata.vscode`` (they name the editor's Python).

``metadata.kernelspec`` and cell ids are kept.

Usage: python -m tutorial_harness.strip [NOTEBOOK ...]   (default: every notebook in
the repo's notebooks/, wherever you run it from)
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbstripout import strip_output

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"

#: nbstripout's own defaults (its CLI adds these; its Python API does not).
DEFAULT_KEYS = (
    "metadata.signature", "metadata.widgets", "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime", "cell.metadata.execution", "cell.metadata.heading_collapsed",
    "cell.metadata.hidden", "cell.metadata.scrolled",
)
#: What this project strips on top of them.
EXTRA_KEYS = (
    "metadata.jupytext", "metadata.language_info", "metadata.vscode",
    "cell.metadata.lines_to_next_cell", "cell.metadata.jupyter",
)


def nbstripout_args() -> list[str]:
    """The same configuration as ``nbstripout`` command-line options, for running it by hand."""
    return ["--keep-id", "--extra-keys", " ".join(EXTRA_KEYS)]


def tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` stripped in memory, as ``make strip`` would strip the file."""
    return strip_output(nb, keep_output=False, keep_count=False, keep_id=True,
                        extra_keys=[*DEFAULT_KEYS, *EXTRA_KEYS])


def targets(paths: list[str]) -> list[Path]:
    """The files to strip: those given, else the repo's notebooks (not the current folder's)."""
    return [Path(p).resolve() for p in paths] or sorted(NOTEBOOKS.glob("*.ipynb"))


def main(paths: list[str]) -> int:
    for path in targets(paths):
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        before = nbformat.writes(nb)
        if nbformat.writes(tidy(nb)) != before:
            nbformat.write(nb, path)  # as nbstripout writes it
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--args"]:
        print(" ".join(f"'{a}'" for a in nbstripout_args()))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
