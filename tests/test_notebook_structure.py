"""Static checks of every notebook: committed clean, the template, the exercises."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from tutorial_harness.runner import notebook_paths
from tutorial_kit.exercises import CHECK_CALL, exercises, solution_code

NOTEBOOKS = notebook_paths()
IDS = [p.stem for p in NOTEBOOKS]
ASYNCIO_RUN_ALLOWED = {"00_start_here", "09_nest_asyncio"}


def load(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def markdown(nb: nbformat.NotebookNode) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def tagged(nb: nbformat.NotebookNode, tag: str) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]


def test_numbering_is_contiguous() -> None:
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(len(numbers))), f"gaps or duplicates in {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path: Path) -> None:
    nb = load(path)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"cells {dirty} have outputs or execution counts: run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_kernelspec_python3(path: Path) -> None:
    spec = load(path).metadata.get("kernelspec", {})
    assert spec.get("name") == "python3", "JupyterLab would ask the reader to pick a kernel"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_template_sections(path: Path) -> None:
    nb = load(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.name[:2]} "), (
        "the first cell is the title: '# NN · Title'"
    )
    text = markdown(nb)
    for heading in ("## Overview", "## Prerequisites", "## Imports", "## Summary",
                    "## What's next", "## Resources"):
        assert re.search(rf"^{re.escape(heading)}\s*$", text, re.M), f"missing {heading!r}"
    assert re.search(r"\*\*Time to learn\*\*: \d+ minutes", text), "missing 'Time to learn'"
    assert "docs.sqlalchemy.org" in text, "Resources should link to the SQLAlchemy docs"
    order = [text.index(h) for h in ("## Overview", "## Prerequisites", "## Imports",
                                     "## Summary", "## What's next", "## Resources")]
    assert order == sorted(order), "template sections are out of order"
    exercises = [i for i, c in enumerate(nb.cells) if "exercise" in c.metadata.get("tags", [])]
    if exercises:
        before = "\n".join(c.source for c in nb.cells[:exercises[0] + 1]
                           if c.cell_type == "markdown")
        assert re.search(r"^## Exercises\s*$", before, re.M), (
            "the exercises need their '## Exercises' section before the first one")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_whats_next_links_forward(path: Path) -> None:
    text = markdown(load(path))
    nxt = text[text.index("## What's next"):]
    later = [p for p in NOTEBOOKS if p.name > path.name]
    if later:
        assert later[0].name in nxt, f"'What's next' should link to {later[0].name}"
    for target in re.findall(r"\]\(([0-9]{2}_[^)#]+\.ipynb)", text):
        assert (path.parent / target).exists(), f"link to missing notebook {target}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_ends_by_disposing_the_engine(path: Path) -> None:
    code = code_cells(load(path))
    source = "\n".join(c.source for c in code)
    if "create_async_engine(" in source:
        assert "await engine.dispose()" in code[-1].source, (
            "the last code cell should be `await engine.dispose()`"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_asyncio_run_outside_its_lessons(path: Path) -> None:
    if path.stem in ASYNCIO_RUN_ALLOWED:
        return
    source = "\n".join(c.source for c in code_cells(load(path)))
    assert "asyncio.run(" not in source, "use top-level await, not asyncio.run()"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_cell_magics_that_reject_await(path: Path) -> None:
    for cell in code_cells(load(path)):
        if "await " in cell.source:
            assert not re.search(r"^\s*%%?(time|timeit)\b", cell.source, re.M), (
                "%%time/%timeit reject await; use tutorial_kit.measure.timer()"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exercises(path: Path) -> None:
    """Each exercise: `exercise` prompt, `scaffold` code, collapsed `solution`, `check`."""
    nb = load(path)
    found = exercises(nb.cells)  # raises on a broken four-cell layout
    assert len(found) >= 2, "every lesson, 00 included, has at least 2 exercises"
    assert [ex.number for ex in found] == list(range(1, len(found) + 1)), "number them 1, 2, …"
    for ex in found:
        scaffold = nb.cells[ex.scaffold].source
        assert re.search(rf"^\s*ex{ex.number} = None\b", scaffold, re.M), (
            f"exercise {ex.number}: the scaffold leaves ex{ex.number} = None for the learner"
        )
        solution = nb.cells[ex.solution].source.strip()
        assert solution.startswith("<details><summary>Solution</summary>") and \
            solution.endswith("</details>"), f"exercise {ex.number}: solution not collapsed"
        assert solution_code(nb.cells[ex.solution]).strip(), "empty solution"
        check = nb.cells[ex.check].source.strip()
        call = CHECK_CALL.match(check)
        assert call and int(call.group(1)) == ex.number, (
            f"exercise {ex.number}: the check cell is one call, checks.ex{ex.number}(…)"
        )
        assert len(ast.parse(check.replace("await ", "", 1)).body) == 1, (
            f"exercise {ex.number}: the check cell holds nothing but its one call"
        )
        prompt = nb.cells[ex.prompt].source
        assert "```" not in prompt, f"exercise {ex.number}: the prompt shows code; hint instead"
    for ex in found:
        later = "\n".join(c.source for c in nb.cells[ex.check + 1:] if c.cell_type == "code")
        assert not re.search(rf"\bex{ex.number}\b", later), (
            f"a cell after exercise {ex.number} uses its answer; nothing may depend on it"
        )


TIME_TO_LEARN = re.compile(r"\*\*Time to learn\*\*: (\d+) minutes")
OUTLINE_ROW = re.compile(
    r"^\| \[(\d\d) · [^\]]+\]\((\d\d_[^)]+\.ipynb)\) \| .+ \| (\d+) min \|$", re.M)
OUTLINE_TEXT_ROW = re.compile(r"^\| (\d\d) · [^|\[]+ \| .+ \| coming \|$", re.M)


def time_to_learn(path: Path) -> int:
    found = TIME_TO_LEARN.search(markdown(load(path)))
    assert found, f"{path.name} has no 'Time to learn'"
    return int(found.group(1))


def outline() -> tuple[dict[str, int], set[str]]:
    """00's lesson table: linked file name -> minutes, and the numbers listed as text."""
    text = markdown(load(NOTEBOOKS[0]))
    assert "## The lessons" in text, "00 has no '## The lessons' outline"
    table = text.split("## The lessons", 1)[1]
    linked = {name: int(minutes) for _nn, name, minutes in OUTLINE_ROW.findall(table)}
    return linked, set(OUTLINE_TEXT_ROW.findall(table))


def test_outline_lists_every_notebook_with_its_own_minutes() -> None:
    """00's outline links every notebook, with the minutes of that notebook's 'Time to learn'."""
    linked, coming = outline()
    for path in NOTEBOOKS:
        assert path.name in linked, f"00's outline does not link {path.name}"
        assert linked[path.name] == time_to_learn(path), (
            f"00's outline gives {path.name} {linked[path.name]} min, the notebook says "
            f"{time_to_learn(path)}: make 00 match the notebook"
        )
        assert path.name[:2] not in coming, f"{path.name} exists: link it in 00's outline"
    for name in linked:
        assert (NOTEBOOKS[0].parent / name).exists(), f"00's outline links a missing {name}"


def test_outline_lists_lessons_00_to_15_in_order() -> None:
    text = markdown(load(NOTEBOOKS[0])).split("## The lessons", 1)[1]
    numbers = re.findall(r"^\| \[?(\d\d) · ", text, re.M)
    assert numbers == [f"{n:02d}" for n in range(16)], f"00's outline lists {numbers}"


# "[NN · Title](NN_name.ipynb), section *Heading*": the house form of a cross-link.
SECTION_LINK = re.compile(
    r"\]\(([0-9]{2}_[a-z0-9_]+\.ipynb)(?:#[^)]*)?\),?\s+sections?\s+\*([^*]+)\*")


def headings(nb: nbformat.NotebookNode) -> set[str]:
    return {" ".join(m.group(1).split())
            for m in re.finditer(r"^#+\s+(.+?)\s*$", markdown(nb), re.M)}


def test_section_links_name_real_headings() -> None:
    """A link that names a section of another lesson names a heading that exists there.

    Sections get renamed as lessons are corrected; this catches the links left behind.
    """
    found = {p.name: headings(load(p)) for p in NOTEBOOKS}
    broken = [f"{p.name} -> {target}, section *{section}*"
              for p in NOTEBOOKS
              for target, raw in SECTION_LINK.findall(markdown(load(p)))
              if (section := " ".join(raw.split())) not in found.get(target, set())]
    assert not broken, "links to sections that do not exist:\n" + "\n".join(broken)
