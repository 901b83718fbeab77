"""What a clean run of a lesson is: the bar every notebook run is held to.

A run is clean when, besides raising nothing, it writes nothing a reader would
take for a problem on stderr, every exercise check prints its "not yet" line
(the committed notebooks hold no answers), and every claim listed in
``tests/claims/<notebook>.yml`` is backed by the outputs (tests/claims/README.md
describes the entries). ``tests/test_notebooks.py`` asserts it on every run, and
``classroom_load`` counts a simulated learner's run clean only if it holds.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import yaml

from tutorial_harness import REPO
from tutorial_harness.runner import stderr_problems
from tutorial_kit.exercises import printed_verdicts

CLAIMS = REPO / "tests" / "claims"


def output_text(nb: nbformat.NotebookNode) -> str:
    """Everything the code cells printed or displayed as text, in order."""
    parts = []
    for cell in nb.cells:
        # A cell's prints can arrive as several stream messages, split mid-line:
        # join them as printed, and put a line break only between cells and displays.
        text = ""
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text += out.get("text", "")
            elif "data" in out:
                text += "\n" + out["data"].get("text/plain", "") + "\n"
        parts.append(text)
    return "\n".join(parts)


def claim_problems(path: Path, nb: nbformat.NotebookNode) -> list[str]:
    """Check the claims listed in tests/claims/<notebook>.yml against the outputs.

    Each entry: ``claim`` (the sentence the notebook makes), ``pattern`` (a regex
    with named groups, searched in the outputs), and optionally ``min`` / ``max``
    (group -> number) and ``equal`` (pairs of groups that must match).
    """
    source = CLAIMS / f"{path.stem}.yml"
    if not source.exists():
        return []
    text = output_text(nb)
    problems = []
    for entry in yaml.safe_load(source.read_text()) or []:
        found = re.search(entry["pattern"], text, re.M)
        if found is None:
            problems.append(f"{entry['claim']}: no output matches {entry['pattern']!r}")
            continue
        groups = found.groupdict()
        for name, bound in (entry.get("min") or {}).items():
            if float(groups[name]) < bound:
                problems.append(f"{entry['claim']}: {name}={groups[name]} < {bound}")
        for name, bound in (entry.get("max") or {}).items():
            if float(groups[name]) > bound:
                problems.append(f"{entry['claim']}: {name}={groups[name]} > {bound}")
        for a, b in entry.get("equal") or []:
            if groups[a] != groups[b]:
                problems.append(f"{entry['claim']}: {a}={groups[a]} but {b}={groups[b]}")
    return problems


def run_problems(path: Path, nb: nbformat.NotebookNode) -> list[str]:
    """Why a finished run of ``path`` is not clean, one line each; empty when it is."""
    found = [f"stderr a reader would see: {p}" for p in stderr_problems(nb)]
    found += [f"cell {i}: a check printed {line!r}, not its 'not yet' line"
              for i, line, verdict in printed_verdicts(nb.cells) if verdict != "not yet"]
    found += [f"a claim the outputs no longer back: {p}" for p in claim_problems(path, nb)]
    return found
