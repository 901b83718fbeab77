"""JupyterLab's file manager for the lessons: a notebook opens with nothing to save.

The committed notebooks carry no ``language_info`` (nbstripout drops it: its ``version``
is the Python patch release of whoever saved last). JupyterLab writes the kernel's
``language_info`` into a notebook as soon as the kernel is up, so every lesson opened
marked unsaved: closing its tab asked to save, and saving changed a tracked file.

Served through this manager, a notebook without ``language_info`` gets the one the
kernel will report (ipykernel's ``IPythonKernel.language_info``, which carries this
interpreter's version: the server and its kernels run in one environment), so JupyterLab
finds nothing to change. Installed as the server's ``contents_manager_class`` by
``lab-settings/jupyter_server_config.json`` (``make lab``, Binder's ``postBuild``, the
classroom hub's single-user servers, which run from the same environment).
"""

from __future__ import annotations

import copy
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager


class LessonContentsManager(AsyncLargeFileManager):
    """JupyterLab's default manager, plus the kernel's ``language_info`` on opening."""

    async def get(self, path: str, content: bool = True, type: str | None = None,
                  format: str | None = None, **kwargs: Any) -> dict[str, Any]:
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if model["type"] == "notebook" and model.get("content") is not None:
            model["content"].metadata.setdefault(
                "language_info", copy.deepcopy(IPythonKernel.language_info))
        return model
