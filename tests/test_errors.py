"""A tutorial error in a notebook cell shows its message, not a traceback."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tutorial_harness.runner import kernel_env, run_notebook
from tutorial_kit.database import DatabaseConfigError
from tutorial_kit.errors import TutorialError
from tutorial_kit.schema import ForeignSchemaError

CELL = """\
import os
os.environ["DATABASE_URL"] = "postgresql+psycopg2://learner:s3cret@localhost/app"
from tutorial_kit import database_url
database_url()
"""


@pytest.mark.asyncio
async def test_database_config_error_renders_as_its_message_in_a_kernel(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    run = await run_notebook(path, env=kernel_env(), allow_errors=True)
    [error] = [o for o in run.nb.cells[0].outputs if o.output_type == "error"]
    assert error.ename == "DatabaseConfigError"
    shown = "\n".join(error.traceback)
    assert len(shown.splitlines()) <= 3, shown  # a traceback here was 33-79 lines
    assert "Traceback" not in shown and "File " not in shown and ".py" not in shown
    assert "synchronous driver" in shown and "postgresql+asyncpg://" in shown
    assert "s3cret" not in shown


def test_every_tutorial_error_shares_the_base() -> None:
    assert issubclass(DatabaseConfigError, TutorialError)
    assert issubclass(ForeignSchemaError, TutorialError)
    lines = DatabaseConfigError("first line\nsecond line")._render_traceback_()
    assert lines == ["\x1b[0;31mDatabaseConfigError\x1b[0m: first line", "second line"]
