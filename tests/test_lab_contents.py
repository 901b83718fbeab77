"""tutorial_kit/lab_contents.py: a lesson opens in JupyterLab with nothing to save.

The browser test (tests/test_browser.py) checks the result in real JupyterLab; these
check the manager and that the settings make lab installs name it.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from ipykernel.ipkernel import IPythonKernel
from traitlets import import_item

from tutorial_harness import REPO
from tutorial_kit.lab_contents import LessonContentsManager


@pytest.mark.asyncio
async def test_a_notebook_gets_the_kernels_language_info(tmp_path: Path) -> None:
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "bare.ipynb")
    own = nbformat.v4.new_notebook(metadata={"language_info": {"name": "python",
                                                               "version": "3.0.1"}})
    nbformat.write(own, tmp_path / "own.ipynb")
    manager = LessonContentsManager(root_dir=str(tmp_path))
    bare = await manager.get("bare.ipynb")
    assert bare["content"]["metadata"]["language_info"] == IPythonKernel.language_info
    kept = await manager.get("own.ipynb")
    assert kept["content"]["metadata"]["language_info"]["version"] == "3.0.1"
    listing = await manager.get("bare.ipynb", content=False)
    assert listing["content"] is None
    # Opening changes nothing on disk: git sees no change until the learner saves.
    assert "language_info" not in (tmp_path / "bare.ipynb").read_text()


def test_the_server_settings_name_the_manager() -> None:
    config = json.loads((REPO / "lab-settings" / "jupyter_server_config.json").read_text())
    named = config["ServerApp"]["contents_manager_class"]
    assert import_item(named) is LessonContentsManager
