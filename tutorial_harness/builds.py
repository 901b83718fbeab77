"""Instructor and student copies of the notebooks, from the one committed source.

    python -m tutorial_harness.builds instructor [OUT]   (default: build/instructor)
    python -m tutorial_harness.builds student [OUT]      (default: build/student)

Every exercise is four cells in a row, tagged ``exercise`` (the prompt),
``scaffold`` (the learner's code cell), ``solution`` (a markdown cell whose
collapsed ``<details>`` block holds the answer as a fenced Python block) and
``check``. The committed notebooks are what a learner opens:

- **instructor**: each scaffold's code is replaced by its solution and the
  solution cell is dropped, so Run All prints ✓ for every exercise;
- **student**: the solution cells are removed (nbconvert's ``TagRemovePreprocessor``),
  so the copies hold no solution text at all, not even collapsed.

Both start from the committed files, which are already stripped (``make strip``;
``tests/test_notebook_structure.py`` checks it), so the copies need no stripping.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import TagRemovePreprocessor

from tutorial_harness import REPO
from tutorial_harness.runner import notebook_paths
from tutorial_kit.exercises import SOLUTION, exercises, solution_code

#: Drops every cell tagged ``solution``; nothing else is touched.
WITHOUT_SOLUTIONS = TagRemovePreprocessor(remove_cell_tags={SOLUTION})


def without_solutions(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return WITHOUT_SOLUTIONS.preprocess(nb, {})[0]


def instructor_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for ex in exercises(nb.cells):
        nb.cells[ex.scaffold].source = solution_code(nb.cells[ex.solution])
    return without_solutions(nb)


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    exercises(nb.cells)  # refuse a notebook whose layout would leave a solution behind
    return without_solutions(nb)


BUILDS = {"instructor": instructor_copy, "student": student_copy}


def build(kind: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebook_paths():
        nb = BUILDS[kind](nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        nbformat.write(nb, out / path.name)
        written.append(out / path.name)
    return written


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BUILDS:
        print(__doc__)
        return 2
    kind = argv[0]
    out = Path(argv[1]) if len(argv) > 1 else REPO / "build" / kind
    written = build(kind, out)
    what = "scaffolds filled with the solutions" if kind == "instructor" else "solutions removed"
    print(f"wrote {len(written)} {kind} notebooks to {out} ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
