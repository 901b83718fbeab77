"""Checks for the exercises, printed as one line and never raised.

Each exercise is four cells in a row, tagged ``exercise`` (the prompt),
``scaffold`` (the learner's code cell, which sets ``exN`` to ``None``),
``solution`` (a markdown cell with the answer in a collapsed ``<details>``
block, so it can never run by itself) and ``check`` (a call to ``check``).

A check prints ``✓ Exercise N: correct`` or ``✗ Exercise N: not yet — hint``
and returns nothing, so *Run All* always reaches the end of the notebook.
Each rule pairs a test with the hint shown when it fails: the first rules
usually test the value, the later ones the technique (which statements ran,
whether the rows were streamed, whether tasks overlapped), so a right number
reached the wrong way is still "not yet".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: ``(test, hint)``: ``test(answer)`` is truthy when the answer passes this rule.
Rule = tuple[Callable[[Any], object], str]

PASS = "✓"
NOT_YET = "✗"


def verdict(number: int, answer: Any, *rules: Rule) -> tuple[bool, str]:
    """The check's result and the one line it prints (``check`` without printing)."""
    if not rules:
        raise ValueError("check() needs at least one (test, hint) rule")
    if answer is None:
        hint = f"the scaffold still sets ex{number} to None. {rules[0][1]}"
        return False, f"{NOT_YET} Exercise {number}: not yet — {hint}"
    for test, hint in rules:
        try:
            ok = test(answer)
        except Exception as err:  # a wrongly shaped answer deserves the hint, not a traceback
            detail = f"checking it raised {type(err).__name__}: {str(err)[:120]}. "
            return False, f"{NOT_YET} Exercise {number}: not yet — {detail}{hint}"
        if not ok:
            return False, f"{NOT_YET} Exercise {number}: not yet — {hint}"
    return True, f"{PASS} Exercise {number}: correct"


def check(number: int, answer: Any, *rules: Rule) -> None:
    """Print whether exercise ``number`` is answered, and how to get there if not.

    ``answer`` is the value the scaffold sets (``None`` until the learner
    answers). Every rule must pass; the first one that fails gives the hint.
    """
    print(verdict(number, answer, *rules)[1])
