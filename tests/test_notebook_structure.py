"""Static checks of every notebook: committed clean, the template, the exercises.

And the lesson registry (book/_toc.yml, read by tutorial_harness.lessons): it lists
exactly the notebooks in notebooks/, each notebook's own numbers match its file name,
and the three lesson tables (00's, the README's, the instructor guide's) list exactly
the registered lessons, in order.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from tutorial_harness import REPO
from tutorial_harness.lessons import lessons
from tutorial_harness.runner import notebook_paths
from tutorial_kit.classroom import LESSON_PEAKS
from tutorial_kit.exercises import CHECK_CALL, VERDICT, exercises, line, solution_code

LESSONS = lessons()
NOTEBOOKS = notebook_paths()
IDS = [p.stem for p in NOTEBOOKS]
ASYNCIO_RUN_ALLOWED = {"00_start_here", "09_nest_asyncio", "17_work_outside_the_request",
                       "18_from_sync_to_async"}


def load(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def markdown(nb: nbformat.NotebookNode) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_registry_lists_every_notebook_in_order() -> None:
    """book/_toc.yml lists exactly the notebooks in notebooks/, numbered 00, 01, … in order.

    A notebook missing from it would be run by no test and shown by no outline.
    """
    on_disk = {p.name for p in (REPO / "notebooks").glob("*.ipynb")}
    registered = [p.name for p in NOTEBOOKS]
    assert not on_disk - set(registered), (
        f"add {sorted(on_disk - set(registered))} to book/_toc.yml (the lesson registry)")
    assert not set(registered) - on_disk, (
        f"book/_toc.yml lists {sorted(set(registered) - on_disk)}, which notebooks/ lacks")
    numbers = [lesson.number for lesson in LESSONS]
    assert numbers == [f"{n:02d}" for n in range(len(numbers))], (
        f"book/_toc.yml's lessons are numbered {numbers}: 00, 01, … with no gap, in order")


# The notebook's own schema, `SCHEMA = learner_schema("04")`, and its checks module.
OWN_SCHEMA = re.compile(r"""^\s*\w+\s*=\s*learner_schema\(\s*["'](\d+)["']""", re.M)
CHECKS_MODULE = re.compile(r"^\s*from tutorial_kit\.checks import lesson(\d+)\b", re.M)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_numbers_match_the_file_name(path: Path) -> None:
    """A lesson copied from another keeps its numbers: catch that.

    Two lessons with one schema reset each other's tables; a lesson judged by
    another's checks module says "not yet" to every right answer.
    """
    number = path.name[:2]
    source = "\n".join(c.source for c in code_cells(load(path)))
    schemas = OWN_SCHEMA.findall(source)
    assert set(schemas) <= {number}, (
        f"{path.name} works in learner_schema({schemas[0]!r}): make it learner_schema({number!r})")
    if "reset_schema(" in source:
        assert schemas, f"name the schema it resets: SCHEMA = learner_schema({number!r})"
    modules = CHECKS_MODULE.findall(source)
    assert set(modules) <= {number}, (
        f"{path.name} imports tutorial_kit.checks.lesson{modules[0]}: "
        f"make it lesson{number}")


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
    # JupyterLab writes the running kernel's spec into the notebook; any difference marks
    # a notebook that was only opened as unsaved (tests/test_browser.py checks that too).
    installed = KernelSpecManager().get_kernel_spec("python3")
    assert spec == {"display_name": installed.display_name, "language": installed.language,
                    "name": "python3"}, f"kernelspec should be ipykernel's own: {spec}"


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
    found = exercises(nb.cells)
    if found:
        before = "\n".join(c.source for c in nb.cells[:found[0].prompt + 1]
                           if c.cell_type == "markdown")
        assert re.search(r"^## Exercises\s*$", before, re.M), (
            "the exercises need their '## Exercises' section before the first one")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_imports_cell_loads_the_error_explainer(path: Path) -> None:
    """``%load_ext tutorial_kit`` (tutorial_kit/explain.py) in the cell after ``## Imports``,
    so a learner's own MissingGreenlet in any later cell is explained in a few lines."""
    cells = load(path).cells
    after = next(i for i, c in enumerate(cells) if c.cell_type == "markdown"
                 and re.search(r"^## Imports\s*$", c.source, re.M))
    imports = next(c for c in cells[after + 1:] if c.cell_type == "code")
    assert re.search(r"^%load_ext tutorial_kit$", imports.source, re.M), (
        "the imports cell should start with %load_ext tutorial_kit")


LAST_LESSON = "This is the last lesson."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_whats_next_links_forward(path: Path) -> None:
    text = markdown(load(path))
    nxt = text[text.index("## What's next"):]
    later = NOTEBOOKS[NOTEBOOKS.index(path) + 1:]
    if later:
        assert later[0].name in nxt, f"'What's next' should link to {later[0].name}"
        assert LAST_LESSON not in nxt, (
            f"{path.name} says {LAST_LESSON!r}, but {later[0].name} follows it: "
            "say where to go next instead")
    else:
        assert LAST_LESSON in nxt, f"the last lesson's 'What's next' says {LAST_LESSON!r}"
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


# The lesson tables, each under its heading: the first cell of every row after the
# header is a link "[NN · Title](…/NN_name.ipynb)" to a registered lesson, in order.
OUTLINES = {
    "00's outline": ("notebooks/00_start_here.ipynb", "## The lessons"),
    "README": ("README.md", "## Outline"),
    "instructor guide": ("docs/instructor-guide.md", "## Per notebook"),
}
LINK_CELL = re.compile(r"^\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)$")


def document_text(path: Path) -> str:
    return markdown(load(path)) if path.suffix == ".ipynb" else path.read_text()


def section(text: str, heading: str) -> str:
    """The text under ``heading``, up to the next heading of its level or higher."""
    found = re.search(rf"^{re.escape(heading)}\s*$", text, re.M)
    assert found, f"no {heading!r} heading"
    level = len(heading.split(" ")[0])
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, found.end())
    return text[found.end():end.start() if end else len(text)]


def table_rows(text: str) -> list[list[str]]:
    """The cells of a markdown table's rows, header and separator left out."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


@pytest.mark.parametrize("outline", OUTLINES)
def test_outline_matches_the_registry(outline: str) -> None:
    """Each lesson table lists every registered lesson, in order, by its title, and nothing else.

    "Matches" means: row by row, the first cell is a link whose text is the
    lesson's title in book/_toc.yml (``04 · Eager loading compared``) and whose
    target is that notebook, relative to the document.
    """
    name, heading = OUTLINES[outline]
    document = REPO / name
    rows = table_rows(section(document_text(document), heading))
    found = []
    for cells in rows:
        link = LINK_CELL.match(cells[0])
        assert link, f"{name}, {heading}: a row that is not a link to a lesson: {cells[0]!r}"
        target = (document.parent / link["target"].partition("#")[0]).resolve()
        found.append(f"[{link['text']}]({os.path.relpath(target, document.parent)})")
    expected = [f"[{lesson.title}]({os.path.relpath(lesson.path, document.parent)})"
                for lesson in LESSONS]
    assert found == expected, (
        f"{name}, {heading}: the rows' first cells should be, in this order (from "
        "book/_toc.yml, the lesson registry):\n" + "\n".join(expected)
        + "\nthey are:\n" + "\n".join(found))


TIME_TO_LEARN = re.compile(r"\*\*Time to learn\*\*: (\d+) minutes")
MINUTES = re.compile(r"^(\d+) min$")


def time_to_learn(path: Path) -> int:
    found = TIME_TO_LEARN.search(markdown(load(path)))
    assert found, f"{path.name} has no 'Time to learn'"
    return int(found.group(1))


def test_outline_gives_each_lesson_its_own_minutes() -> None:
    """00's outline gives each lesson the minutes of that notebook's 'Time to learn'."""
    name, heading = OUTLINES["00's outline"]
    rows = table_rows(section(document_text(REPO / name), heading))
    assert len(rows) == len(LESSONS), "00's outline: one row per lesson (see the test above)"
    for lesson, cells in zip(LESSONS, rows, strict=True):
        minutes = MINUTES.match(cells[-1])
        assert minutes, f"00's outline: {lesson.path.name}'s last cell should be 'N min'"
        assert int(minutes[1]) == time_to_learn(lesson.path), (
            f"00's outline gives {lesson.path.name} {minutes[1]} min, the notebook says "
            f"{time_to_learn(lesson.path)}: make 00 match the notebook"
        )


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_checks_module_judges_every_exercise(path: Path) -> None:
    """tutorial_kit/checks/lessonNN.py defines exK for each exercise K, and nothing more."""
    numbers = [ex.number for ex in exercises(load(path).cells)]
    name = f"tutorial_kit.checks.lesson{path.name[:2]}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError:
        pytest.fail(f"{path.name} has exercises {numbers}: write {name.replace('.', '/')}.py "
                    "(CONTRIBUTING.md, *Writing a check*)")
    defined = sorted(int(n[2:]) for n in vars(module) if re.fullmatch(r"ex\d+", n))
    assert defined == numbers, f"{name} defines ex{defined}, the lesson has exercises {numbers}"


def test_instructor_guide_gives_every_exercise_its_minutes() -> None:
    """docs/instructor-guide.md's per-notebook table: `Ex N: M` for each exercise N."""
    guide = (REPO / "docs" / "instructor-guide.md").read_text()
    for path in NOTEBOOKS:
        row = next((ln for ln in guide.splitlines()
                    if ln.startswith("| [") and f"notebooks/{path.name})" in ln), None)
        assert row is not None, f"no row for {path.name} in the instructor guide"
        cell = row.rstrip(" |").rsplit("|", 1)[-1]
        given = {int(n): int(m) for n, m in re.findall(r"Ex (\d+): (\d+)", cell)}
        numbers = [ex.number for ex in exercises(load(path).cells)]
        assert sorted(given) == numbers, f"{path.name}: minutes for {sorted(given)}, " \
                                         f"exercises {numbers} (write 'Ex 1: 5 · Ex 2: 8')"


# A verdict line quoted in prose: "✓ Exercise 1: correct", "✗ Exercise 2: not yet — …".
QUOTED_VERDICT = re.compile(r"[✓✗] Exercise \S+?[^`\n]*")


def test_quoted_verdicts_are_what_a_check_prints() -> None:
    """Docs and lesson 00 quote the verdict line: each quote is one a check would print."""
    texts = {p.relative_to(REPO): p.read_text() for p in
             [REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md")]}
    texts.update({p.relative_to(REPO): markdown(load(p)) for p in NOTEBOOKS})
    examples = {line(1), line(1, "hint")}
    assert all(VERDICT.fullmatch(e) for e in examples)
    wrong = [f"{name}: {quote!r}" for name, text in texts.items()
             for quote in QUOTED_VERDICT.findall(text)
             if not VERDICT.match(quote.replace("N", "1").replace("K", "1"))]
    assert not wrong, f"quotes that no check prints (tutorial_kit.exercises.line): {wrong}"


def test_instructor_guide_gives_every_lesson_its_measured_peak() -> None:
    """The connection budget's table: one row per lesson, its peak as in LESSON_PEAKS.

    tests/test_notebooks.py holds each lesson to its figure in LESSON_PEAKS; the guide is
    what an instructor reads, so it must say the same.
    """
    guide = (REPO / "docs" / "instructor-guide.md").read_text()
    rows = dict(re.findall(r"^\| (\d\d) \| (\d+) \| .*\|$", guide, re.M))
    assert {n: int(p) for n, p in rows.items()} == LESSON_PEAKS
    assert sorted(rows) == [lesson.number for lesson in lessons()]
