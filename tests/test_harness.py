"""The notebook harness itself must be able to fail: prove it on tiny notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from test_notebooks import execute

from tutorial_harness.runner import kernel_env
from tutorial_kit.database import start_embedded

HEADER = (
    "from sqlalchemy import text\n"
    "from sqlalchemy.ext.asyncio import create_async_engine\n"
    "from tutorial_kit import database_url\n"
    "engine = create_async_engine(database_url())\n"
)
QUERY = "async with engine.connect() as c:\n    await c.execute(text('SELECT 1'))"


def notebook(tmp_path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(HEADER), *map(nbformat.v4.new_code_cell, cells)]
    path = tmp_path / "99_probe.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def embedded(embedded_pgdata: Path) -> tuple[dict[str, str], str]:
    url = start_embedded(embedded_pgdata)
    return kernel_env(TUTORIAL_PGDATA=str(embedded_pgdata)), url


@pytest.mark.asyncio
async def test_clean_notebook_passes(tmp_path: Path, embedded) -> None:
    env, url = embedded
    path = notebook(tmp_path, QUERY, "await engine.dispose()")
    await execute(path, env, url)


@pytest.mark.asyncio
async def test_error_output_fails(tmp_path: Path, embedded) -> None:
    env, url = embedded
    path = notebook(tmp_path, "1 / 0", "await engine.dispose()")
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        await execute(path, env, url)


@pytest.mark.asyncio
async def test_open_connection_fails(tmp_path: Path, embedded) -> None:
    env, url = embedded
    path = notebook(tmp_path, QUERY)
    with pytest.raises(AssertionError, match="still open"):
        await execute(path, env, url)


@pytest.mark.asyncio
async def test_stderr_warning_fails(tmp_path: Path, embedded) -> None:
    env, url = embedded
    path = notebook(tmp_path, "import warnings\nwarnings.warn('careful', RuntimeWarning)",
                    "await engine.dispose()")
    with pytest.raises(AssertionError, match="stderr"):
        await execute(path, env, url)


@pytest.mark.asyncio
async def test_not_rerunnable_fails(tmp_path: Path, embedded) -> None:
    env, url = embedded
    path = notebook(tmp_path, "assert 'ran_once' not in globals()\nran_once = True",
                    "await engine.dispose()")
    with pytest.raises(CellExecutionError, match="AssertionError"):
        await execute(path, env, url)


@pytest.mark.asyncio
async def test_kernels_talk_over_unix_sockets(tmp_path: Path) -> None:
    """The runner's kernels use ipc, each in its own folder: thirty starting at once race
    for no TCP port, and none logs "running over TCP without encryption"."""
    from tutorial_harness.runner import run_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from ipykernel.kernelapp import IPKernelApp\n"
        "app = IPKernelApp.instance()\nprint(app.transport, app.ip)")])
    path = tmp_path / "transport.ipynb"
    nbformat.write(nb, path)
    first, second = [await run_notebook(path, env=kernel_env(), nb=nbformat.read(path, 4))
                     for _ in range(2)]
    said = [run.nb.cells[0].outputs[0]["text"].split() for run in (first, second)]
    assert [transport for transport, _ in said] == ["ipc", "ipc"]
    assert said[0][1] != said[1][1], "two kernels share one socket path"
    assert all(not Path(ip).parent.exists() for _, ip in said), "socket folder left behind"
