"""Friendly checks for the exercises.

Each exercise has a scaffold cell that sets the answer variable to ``None``,
a hidden solution cell, and a check cell that calls ``check(...)``. A missing
or wrong answer raises ``ExerciseNotDone``, which IPython renders as one
line of advice instead of a traceback (the ``_render_traceback_`` hook).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ExerciseNotDone(AssertionError):
    """The exercise's check failed; the message says what to look at."""

    def _render_traceback_(self) -> list[str]:  # IPython hook: show just the advice
        return [f"✗ {self}"]


def check(name: str, answer: Any, predicate: Callable[[Any], object], hint: str) -> None:
    """Print a tick if ``predicate(answer)`` holds, else raise ``ExerciseNotDone``."""
    if answer is None:
        raise ExerciseNotDone(
            f"{name}: no answer yet; the scaffold cell above still holds None. {hint}"
        )
    try:
        ok = predicate(answer)
    except Exception as err:  # a wrong type of answer deserves advice, not a traceback
        raise ExerciseNotDone(
            f"{name}: checking your answer raised {type(err).__name__}: {err}. {hint}"
        ) from None
    if not ok:
        raise ExerciseNotDone(f"{name}: not quite. {hint}")
    print(f"✓ {name}: correct")
