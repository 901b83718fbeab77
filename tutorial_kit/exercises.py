"""The exercise format, in one place: the cell layout, the verdict line, and reading both back.

Each exercise is four cells in a row, tagged ``exercise`` (the prompt, a markdown
cell titled ``### Exercise N: …``), ``scaffold`` (the learner's code cell, which
sets ``exN`` to ``None``), ``solution`` (a markdown cell with the answer in a
collapsed ``<details>`` block, so it can never run by itself) and ``check`` (one
call, ``checks.exN(...)`` or ``await checks.exN(...)``, into the lesson's module in
``tutorial_kit.checks``, so no check cell shows the technique it tests).

A check prints ``✓ Exercise N: correct`` or ``✗ Exercise N: not yet — hint``
and returns nothing, so *Run All* always reaches the end of the notebook.
Each rule pairs a test with the hint shown when it fails: the first rules
usually test the value, the later ones the technique (which statements ran,
whether the rows were streamed, whether tasks overlapped), so a right number
reached the wrong way is still "not yet".
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: ``(test, hint)``: ``test(answer)`` is truthy when the answer passes this rule.
Rule = tuple[Callable[[Any], object], str]

PASS = "✓"
NOT_YET = "✗"
CORRECT, NOT_YET_SAID = "correct", "not yet"
#: One printed verdict: its mark, the exercise number, and "correct" or "not yet".
VERDICT = re.compile(
    rf"^([{PASS}{NOT_YET}]) Exercise (\d+): ({CORRECT}|{NOT_YET_SAID})\b.*$", re.M)

#: The four cells' tags, in order.
EXERCISE, SCAFFOLD, SOLUTION, CHECK = "exercise", "scaffold", "solution", "check"
#: The four cells of an exercise, in order, with the cell type each must have.
LAYOUT = ((EXERCISE, "markdown"), (SCAFFOLD, "code"), (SOLUTION, "markdown"), (CHECK, "code"))
TITLE = re.compile(r"^###\s+Exercise\s+(\d+)\b", re.M)
SOLUTION_OPEN = "<details><summary>Solution</summary>"
SOLUTION_CLOSE = "</details>"
#: The check cell: one call into the lesson's check module, nothing else.
CHECK_CALL = re.compile(r"^(?:await )?checks\.ex(\d+)\(")
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")
_FENCE = re.compile(r"```python\n(.*?)```", re.S)

Cell = Mapping[str, Any]   # an nbformat cell (a dict), so this module needs no nbformat


def describe(err: BaseException) -> str:
    """An error in a verdict line: its type and the start of its message, on one line."""
    # The first line only: SQLAlchemy appends "[SQL: …]" on the next lines, and a
    # "(Background on this error at: …)" link that says nothing here.
    message = (str(err).strip().splitlines() or [""])[0]
    message = _BACKGROUND.sub("", message).strip()
    if len(message) > 200:   # whole words, and say that it was shortened
        message = message[:200].rsplit(" ", 1)[0] + " …"
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def line(number: int, hint: str | None = None) -> str:
    """The verdict line: ``✓ Exercise N: correct``, or ``✗ Exercise N: not yet — hint``."""
    if hint is None:
        return f"{PASS} Exercise {number}: {CORRECT}"
    return f"{NOT_YET} Exercise {number}: {NOT_YET_SAID} — {hint}"


def verdict(number: int, answer: Any, *rules: Rule) -> tuple[bool, str]:
    """The check's result and the one line it prints (``check`` without printing)."""
    if not rules:
        raise ValueError("check() needs at least one (test, hint) rule")
    if answer is None:
        # None is the scaffold's value, and also what a cell that raised before its last
        # line leaves (each try starts from it): say both, never guess which.
        return False, line(number, f"ex{number} is still None (the scaffold's value, or your "
                                   f"cell stopped before setting it). {rules[0][1]}")
    unawaited = _unawaited(answer)
    if unawaited:
        return False, line(number, f"ex{number} {unawaited}: calling an async def returns a "
                                   f"coroutine and runs nothing until it is awaited. "
                                   f"{rules[0][1]}")
    for test, hint in rules:
        try:
            # bool() inside the try: an answer whose truth value raises (a NumPy array
            # compared with ==) deserves the hint too.
            ok = bool(test(answer))
        except Exception as err:  # a wrongly shaped answer deserves the hint, not a traceback
            return False, line(number, f"checking it raised {describe(err)}. {hint}")
        if not ok:
            return False, line(number, hint)
    return True, line(number)


def _unawaited(answer: Any) -> str:
    """What in ``answer`` is an un-awaited coroutine, in words; "" if nothing is."""
    if inspect.iscoroutine(answer):
        return "is a coroutine object"
    if isinstance(answer, list | tuple) and any(inspect.iscoroutine(a) for a in answer):
        return "holds coroutine objects"
    return ""


def unanswered(number: int, answer: Any, hint: str) -> bool:
    """True, with the not-yet line printed, while the scaffold still sets ``exN`` to None.

    A check calls it before gathering any evidence, so an untouched scaffold costs
    no IO (and a Run All of the committed notebook stays fast).
    """
    if answer is not None:
        return False
    print(verdict(number, None, (bool, hint))[1])
    return True


def unavailable(doing: str, err: BaseException, hint: str) -> Rule:
    """The failing rule for evidence the check could not gather: what raised, then the hint.

    ``doing`` says what the check was doing ("reading the tables"), so the line
    tells the learner whether their code or the server was the trouble.
    """
    return (lambda _answer: False, f"{doing} raised {describe(err)}. {hint}")


def check(number: int, answer: Any, *rules: Rule) -> None:
    """Print whether exercise ``number`` is answered, and how to get there if not.

    ``answer`` is the value the scaffold sets (``None`` until the learner
    answers). Every rule must pass; the first one that fails gives the hint.
    """
    print(verdict(number, answer, *rules)[1])


@dataclass(frozen=True)
class Exercise:
    """Cell indexes of one exercise's four cells, and its number from the prompt's title."""

    number: int
    prompt: int
    scaffold: int
    solution: int
    check: int


def tags(cell: Cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def source(cell: Cell) -> str:
    text = cell.get("source", "")
    return text if isinstance(text, str) else "".join(text)


def exercises(cells: Sequence[Cell]) -> list[Exercise]:
    """Every exercise in a notebook's ``cells``; ``ValueError`` on a broken layout."""
    found = []
    for i, cell in enumerate(cells):
        if EXERCISE not in tags(cell):
            continue
        title = TITLE.search(source(cell))
        if title is None:
            raise ValueError(f"cell {i}: an exercise prompt starts with '### Exercise N: …'")
        for offset, (tag, kind) in enumerate(LAYOUT):
            j = i + offset
            if j >= len(cells) or tag not in tags(cells[j]) or cells[j]["cell_type"] != kind:
                raise ValueError(f"cell {j}: expected the {kind} cell tagged {tag!r}")
        found.append(Exercise(int(title.group(1)), i, i + 1, i + 2, i + 3))
    return found


def solution_code(cell: Cell) -> str:
    """The Python inside a solution cell's collapsed block."""
    blocks = _FENCE.findall(source(cell))
    if cell["cell_type"] != "markdown" or not blocks:
        raise ValueError("a solution cell is markdown with a ```python block inside <details>")
    return "\n".join(block.rstrip("\n") for block in blocks)


def printed_verdicts(cells: Sequence[Cell]) -> list[tuple[int, str, str]]:
    """``(cell index, line, "correct" | "not yet")`` for every executed ``check`` cell.

    A check cell must print exactly one verdict line; a cell that printed none
    (or an error) is reported with the verdict ``"missing"``.
    """
    found = []
    for i, cell in enumerate(cells):
        if CHECK not in tags(cell):
            continue
        text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                       if o.get("output_type") == "stream")
        lines = VERDICT.findall(text)
        if len(lines) != 1:
            found.append((i, text.strip()[:200], "missing"))
            continue
        mark, _number, said = lines[0]
        printed = next(ln for ln in text.splitlines() if ln.startswith(mark))
        found.append((i, printed, said))
    return found
