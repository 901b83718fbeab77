"""Write student copies of the notebooks: every cell tagged ``solution`` removed.

    python scripts/make_student.py [OUT_DIR]     (default: build/student)

The copies keep the exercise text, the empty scaffold cells and the check
cells, so a learner's check fails with one friendly line until they answer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_runner import REPO, notebook_paths
from strip_notebooks import tidy


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb.cells = [c for c in nb.cells if "solution" not in c.metadata.get("tags", [])]
    return tidy(nb)


def main(out: Path) -> int:
    target = out / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    for path in notebook_paths():
        nb = student_copy(nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        nbformat.write(nb, target / path.name)
    print(f"wrote {len(notebook_paths())} student notebooks to {target} (solutions removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "build" / "student"))
