"""A small class in lockstep: 4 learners run the heaviest lesson at the same moment.

The lockstep run of 30 learners over every lesson is a benchmark (``make
classroom-load LEARNERS=30 MODE=lockstep``, docs/benchmark.md); this is its
smallest case, run by ``make test``: lesson 13 (clients with and without
PgBouncer, the most connections one learner opens) in 4 fresh kernels that
press Run All together, on a fresh server with ``max_connections = 100``.
"""

from __future__ import annotations

import asyncio

import pytest

from tutorial_harness.classroom_load import fresh_class_server, run_lesson
from tutorial_harness.pytest_plugin import skip_without_pgbouncer
from tutorial_harness.runner import notebook_paths

LEARNERS = 4
HEAVIEST = "13"


@pytest.mark.notebooks
def test_four_learners_in_lockstep_on_the_heaviest_lesson() -> None:
    path = next(p for p in notebook_paths() if p.name.startswith(f"{HEAVIEST}_"))
    skip_without_pgbouncer(path)
    with fresh_class_server() as url:
        run = asyncio.run(run_lesson(url, path, LEARNERS))
    problems = [f"{r.learner}: {r.problem}" for r in run.results if r.problem]
    assert not problems, "not clean in lockstep:\n" + "\n".join(problems)
    assert run.peak <= run.bound, (
        f"{LEARNERS} learners in lockstep held {run.peak} client connections at once; "
        f"the bound from tutorial_kit.classroom is {run.bound}")
    assert not run.left_open, f"{run.left_open} connection(s) still open after the lesson"
