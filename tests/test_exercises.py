"""The exercises, in the three directions a learner and an instructor meet them.

1. **Committed notebooks** (what a learner opens): Run All prints "not yet"
   for every check. That is asserted in ``test_notebooks.execute``, on every run.
2. **Wrong and valid answers**: in one kernel per notebook, each exercise's
   check is run after the untouched scaffold, after every plausible wrong answer
   listed in ``tests/wrong_answers/NN_name.yml`` ("not yet"), after every other
   valid route in ``tests/valid_answers/NN_name.yml`` ("correct"), and after the
   solution ("correct").
3. **Builds**: ``make instructor`` copies pass every check top to bottom;
   ``make student`` copies contain no line of any solution.

Both files map each exercise number to a list of answers::

    1:
      - why: joinedload where the prompt asks for selectinload
        code: |
          ex1 = ...
      - why: forgets an await, so the cell itself raises
        raises: true
        code: |
          ...

Each ``code`` replaces the scaffold cell's whole source, run after ``exN = None``
(so no earlier try's answer is judged). An answer marked ``raises: true`` raises
in its own cell, as it would for a learner; the check after it must still print
its one line.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from tutorial_harness import REPO
from tutorial_harness.builds import build
from tutorial_harness.pytest_plugin import skip_without_pgbouncer
from tutorial_harness.runner import kernel_env, notebook_paths, run_notebook
from tutorial_kit.database import start_embedded
from tutorial_kit.exercises import (
    CHECK,
    CORRECT,
    EXERCISE,
    NOT_YET_SAID,
    SCAFFOLD,
    SOLUTION,
    exercises,
    printed_verdicts,
    solution_code,
    tags,
)

WRONG_DIR = REPO / "tests" / "wrong_answers"
VALID_DIR = REPO / "tests" / "valid_answers"
LESSONS = [p for p in notebook_paths()
           if exercises(nbformat.read(p, as_version=4).cells)]
IDS = [p.stem for p in LESSONS]


Answers = dict[int, list[dict[str, object]]]


def answers(folder: Path, path: Path, *, required: bool) -> Answers:
    source = folder / f"{path.stem}.yml"
    if not source.exists():
        assert not required, f"{source.relative_to(REPO)} lists no answers"
        return {}
    data = yaml.safe_load(source.read_text()) or {}
    return {int(k): v for k, v in data.items()}


def attempt(number: int, answer: dict[str, object]) -> nbformat.NotebookNode:
    """The cell a try runs: ``exN`` reset, then the answer; tagged if it is meant to raise."""
    cell = nbformat.v4.new_code_cell(f"ex{number} = None\n{answer['code']}")
    if answer.get("raises"):
        cell.metadata["tags"] = ["raises-exception"]   # nbclient runs on past it
    return cell


def trial_notebook(path: Path) -> tuple[nbformat.NotebookNode, list[tuple[str, str]]]:
    """The notebook with each exercise tried several ways before its real check cell.

    Returns the notebook and, for each check cell in it, in order, the
    verdict it must print and what was tried.
    """
    nb = nbformat.read(path, as_version=4)
    wrong = answers(WRONG_DIR, path, required=True)
    valid = answers(VALID_DIR, path, required=False)
    by_scaffold = {ex.scaffold: ex for ex in exercises(nb.cells)}
    numbers = sorted(ex.number for ex in by_scaffold.values())
    assert sorted(wrong) == numbers, f"wrong answers for exercises {sorted(wrong)}, " \
                                     f"the notebook has {numbers}"
    cells, expected = [], []
    for i, cell in enumerate(nb.cells):
        ex = by_scaffold.get(i)
        if ex is None:
            if CHECK not in tags(cell):
                cells.append(cell)
            continue
        check = nb.cells[ex.check]
        tries = [(NOT_YET_SAID, "the untouched scaffold", {"code": cell.source})]
        assert wrong[ex.number], f"exercise {ex.number}: list at least one wrong answer"
        tries += [(NOT_YET_SAID, f"wrong answer: {w['why']}", w) for w in wrong[ex.number]]
        tries += [(CORRECT, f"valid answer: {v['why']}", v) for v in valid.get(ex.number, [])]
        tries.append((CORRECT, "the solution", {"code": solution_code(nb.cells[ex.solution])}))
        for verdict, what, answer in tries:
            cells.append(attempt(ex.number, answer))
            cells.append(nbformat.from_dict({**check, "metadata": {**check.metadata}}))
            expected.append((verdict, f"exercise {ex.number}, {what}"))
    nb.cells = cells
    return nb, expected


@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_each_exercise_has_three_wrong_and_two_valid_answers(path: Path) -> None:
    """The red team's floor: a check is tried on more than the answers its author thought of."""
    numbers = [ex.number for ex in exercises(nbformat.read(path, as_version=4).cells)]
    wrong = answers(WRONG_DIR, path, required=True)
    valid = answers(VALID_DIR, path, required=True)
    short = [f"exercise {n}: {len(wrong.get(n, []))} wrong, {len(valid.get(n, []))} valid"
             for n in numbers if len(wrong.get(n, [])) < 3 or len(valid.get(n, [])) < 2]
    assert not short, f"{path.stem} needs ≥ 3 wrong and ≥ 2 valid answers: {short}"


@pytest.mark.notebooks
@pytest.mark.asyncio
@pytest.mark.parametrize("path", LESSONS, ids=IDS)
async def test_checks_reject_wrong_answers_and_accept_the_solution(path: Path,
                                                                  embedded_pgdata: Path) -> None:
    skip_without_pgbouncer(path)
    start_embedded(embedded_pgdata)
    nb, expected = trial_notebook(path)
    run = await run_notebook(path, nb=nb, env=kernel_env(TUTORIAL_PGDATA=str(embedded_pgdata)))
    got = printed_verdicts(run.nb.cells)
    assert len(got) == len(expected)
    wrong = [f"{what}: expected {verdict!r}, printed {line!r}"
             for (verdict, what), (_, line, seen) in zip(expected, got, strict=True)
             if seen != verdict]
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="module")
def instructor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("instructor")
    build("instructor", out)
    return out


@pytest.mark.notebooks
@pytest.mark.asyncio
@pytest.mark.parametrize("path", LESSONS, ids=IDS)
async def test_instructor_copy_passes_every_check(path: Path, instructor_dir: Path,
                                                  embedded_pgdata: Path) -> None:
    skip_without_pgbouncer(path)
    start_embedded(embedded_pgdata)
    copy = instructor_dir / path.name
    run = await run_notebook(copy, env=kernel_env(TUTORIAL_PGDATA=str(embedded_pgdata)))
    verdicts = printed_verdicts(run.nb.cells)
    assert len(verdicts) == len(exercises(nbformat.read(path, as_version=4).cells))
    failing = [line for _, line, verdict in verdicts if verdict != CORRECT]
    assert not failing, failing


def distinctive_lines(code: str) -> list[str]:
    """Solution lines long and specific enough that finding one means a leak."""
    return [ln.strip() for ln in code.splitlines()
            if len(ln.strip()) >= 20 and not ln.strip().startswith("#")]


def test_student_copies_contain_no_solution_text(tmp_path: Path) -> None:
    written = build("student", tmp_path)
    assert [p.name for p in written] == [p.name for p in notebook_paths()]
    for path in LESSONS:
        original = nbformat.read(path, as_version=4)
        copy_text = (tmp_path / path.name).read_text()
        copy = nbformat.reads(copy_text, as_version=4)
        visible = "\n".join(c.source for c in copy.cells)
        for ex in exercises(original.cells):
            lines = [ln for ln in distinctive_lines(solution_code(original.cells[ex.solution]))
                     if not _elsewhere(original, ex.solution, ln)]
            assert lines, f"{path.name} exercise {ex.number}: no solution line to trace"
            leaked = [ln for ln in lines if ln in visible]
            assert not leaked, f"{path.name} exercise {ex.number} leaks: {leaked}"
        assert "<details>" not in visible.split("## Exercises", 1)[-1], \
            f"{path.name}: a collapsed block survived in the student copy"
        for tag in (EXERCISE, SCAFFOLD, CHECK):
            assert sum(tag in tags(c) for c in copy.cells) == \
                sum(tag in tags(c) for c in original.cells)


def _elsewhere(nb: nbformat.NotebookNode, solution: int, line: str) -> bool:
    """True if ``line`` also appears in a non-solution cell (a line the lesson teaches)."""
    return any(line in c.source for i, c in enumerate(nb.cells)
               if i != solution and SOLUTION not in tags(c))


@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_solution_summary_is_visible(path: Path) -> None:
    """JupyterLab hides a source_hidden markdown cell whole, "Solution" summary included."""
    nb = nbformat.read(path, as_version=4)
    hidden = [ex.number for ex in exercises(nb.cells)
              if nb.cells[ex.solution].metadata.get("jupyter", {}).get("source_hidden")]
    assert not hidden, f"exercises {hidden}: solution cells must not be source_hidden"
