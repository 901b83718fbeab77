"""Make notebooks commit-ready: no outputs, no execution counts, python3 kernelspec.

Also drops editor-specific metadata (jupytext, widget state). Solution cells
are collapsed by their own ``<details>`` block, so no ``source_hidden`` on them.
Usage: python scripts/strip_notebooks.py [NOTEBOOK ...]  (default: notebooks/*.ipynb)
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
KEEP_NOTEBOOK_METADATA = {"kernelspec", "language_info"}


def tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb.metadata = nbformat.from_dict(
        {k: v for k, v in nb.metadata.items() if k in KEEP_NOTEBOOK_METADATA}
    )
    nb.metadata["kernelspec"] = KERNELSPEC
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if "solution" in cell.metadata.get("tags", []) and cell.cell_type == "markdown":
            # The <details> block already collapses it; a hidden source would hide
            # the "Solution" summary too, behind JupyterLab's ellipsis.
            cell.metadata.get("jupyter", {}).pop("source_hidden", None)
            if not cell.metadata.get("jupyter", True):
                del cell.metadata["jupyter"]
    return nb


def main(paths: list[str]) -> int:
    files = [Path(p) for p in paths] or sorted(Path("notebooks").glob("*.ipynb"))
    for path in files:
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        after = nbformat.writes(tidy(nb))
        if after != before:
            path.write_text(after + ("\n" if not after.endswith("\n") else ""))
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
