"""Instructor and student copies of the notebooks, from the one committed source.

    python scripts/exercise_builds.py instructor [OUT]   (default: build/instructor)
    python scripts/exercise_builds.py student [OUT]      (default: build/student)

Every exercise is four cells in a row, tagged ``exercise`` (the prompt),
``scaffold`` (the learner's code cell), ``solution`` (a markdown cell whose
collapsed ``<details>`` block holds the answer as a fenced Python block) and
``check``. The committed notebooks are what a learner opens:

- **instructor**: each scaffold's code is replaced by its solution and the
  solution cell is dropped, so Run All prints ✓ for every exercise;
- **student**: the solution cells are removed, so the copies hold no solution
  text at all, not even collapsed.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_runner import REPO, notebook_paths
from strip_notebooks import tidy

FENCE = re.compile(r"```python\n(.*?)```", re.S)
TITLE = re.compile(r"^###\s+Exercise\s+(\d+)\b", re.M)


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return cell.metadata.get("tags", [])


@dataclass(frozen=True)
class Exercise:
    """Cell indexes of one exercise's four cells, and its number from the prompt's title."""

    number: int
    prompt: int
    scaffold: int
    solution: int
    check: int


def solution_code(cell: nbformat.NotebookNode) -> str:
    """The Python inside a solution cell's collapsed block."""
    blocks = FENCE.findall(cell.source)
    if cell.cell_type != "markdown" or not blocks:
        raise ValueError("a solution cell is markdown with a ```python block inside <details>")
    return "\n".join(block.rstrip("\n") for block in blocks)


def exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """Every exercise in ``nb``, checked for the four-cell layout."""
    found = []
    for i, cell in enumerate(nb.cells):
        if "exercise" not in tags(cell):
            continue
        title = TITLE.search(cell.source)
        if title is None:
            raise ValueError(f"cell {i}: an exercise prompt starts with '### Exercise N: …'")
        expected = [("scaffold", "code"), ("solution", "markdown"), ("check", "code")]
        for offset, (tag, kind) in enumerate(expected, 1):
            j = i + offset
            if j >= len(nb.cells) or tag not in tags(nb.cells[j]) or \
                    nb.cells[j].cell_type != kind:
                raise ValueError(f"cell {j}: expected the {kind} cell tagged {tag!r}")
        found.append(Exercise(int(title.group(1)), i, i + 1, i + 2, i + 3))
    return found


def instructor_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    drop = set()
    for ex in exercises(nb):
        nb.cells[ex.scaffold].source = solution_code(nb.cells[ex.solution])
        drop.add(ex.solution)
    nb.cells = [c for i, c in enumerate(nb.cells) if i not in drop]
    return tidy(nb)


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    exercises(nb)  # refuse a notebook whose layout would leave a solution behind
    nb.cells = [c for c in nb.cells if "solution" not in tags(c)]
    return tidy(nb)


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
