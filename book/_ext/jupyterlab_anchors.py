"""Heading anchors the way JupyterLab makes them, so in-notebook links work on the site too.

JupyterLab turns a heading's text into its anchor by replacing spaces with ``-``
and keeping case (``## Insert with `add_all` `` → ``#Insert-with-add_all``). The
notebooks link to their own sections that way; MyST's default anchors are
lower-cased, so the same links would break in the book.
"""

from __future__ import annotations

from typing import Any


def slug(text: str) -> str:
    return "-".join(text.strip().split(" "))


def setup(app: Any) -> dict[str, bool]:  # a Sphinx extension only to be importable
    return {"parallel_read_safe": True, "parallel_write_safe": True}
