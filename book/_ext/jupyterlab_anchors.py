"""Small Sphinx fixes for the book, loaded through ``local_extensions`` in _config.yml.

- Heading anchors the way JupyterLab makes them, so in-notebook links work on the
  site too. JupyterLab turns a heading's text into its anchor by replacing spaces
  with ``-`` and keeping case (``## Insert with `add_all` `` → ``#Insert-with-add_all``);
  MyST's default anchors are lower-cased, so the same links would break.
- The search scorer, ``search_scorer.js`` next to this file: an error message searched
  for lists its "Find your error" entry first (the file says why). Sphinx opens
  ``html_search_scorer`` relative to the working directory, so it is set here, from this
  file's own place, rather than in _config.yml.
- Each script once per page. With Jupyter Book 1.0.4, sphinx-thebe's inline
  configuration script lands twice in every page, and the second copy fails
  (``Identifier 'THEBE_JS_URL' has already been declared``) in the console.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def slug(text: str) -> str:
    return "-".join(text.strip().split(" "))


def _one_script_each(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                     doctree: Any) -> None:
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in context.get("script_files", []):
        # The copies differ only in how "no file" is spelled (None or "").
        key = (str(getattr(script, "filename", script) or ""),
               repr(getattr(script, "attributes", {})))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _search_scorer(app: Any, config: Any) -> None:
    config.html_search_scorer = str(Path(__file__).with_name("search_scorer.js"))


def setup(app: Any) -> dict[str, bool]:
    app.connect("config-inited", _search_scorer)
    app.connect("html-page-context", _one_script_each)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
