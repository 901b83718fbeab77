"""Render executed notebooks to static HTML handouts under build/html/.

    python scripts/build_html.py [NOTEBOOK ...]

Each notebook is executed in a fresh kernel against the embedded PostgreSQL
(DATABASE_URL is ignored here, so handouts never depend on a reader's server),
then exported with nbconvert's HTML exporter, outputs and charts included.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from nbconvert import HTMLExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_runner import REPO, notebook_paths, run_notebook

OUT = REPO / "build" / "html"


def main(paths: list[Path]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    exporter = HTMLExporter(template_name="lab")
    for path in paths or notebook_paths():
        run = asyncio.run(run_notebook(path.resolve(), env=env))
        body, _ = exporter.from_notebook_node(run.nb)
        target = OUT / f"{path.stem}.html"
        target.write_text(body, encoding="utf-8")
        print(f"wrote {target.relative_to(REPO)}")
    index = ["<!doctype html><meta charset='utf-8'><title>Async SQLAlchemy tutorial</title>",
             "<h1>Async SQLAlchemy tutorial: handouts</h1><ul>"]
    for html in sorted(OUT.glob("[0-9][0-9]_*.html")):
        index.append(f"<li><a href='{html.name}'>{html.stem}</a></li>")
    (OUT / "index.html").write_text("\n".join([*index, "</ul>"]), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main([Path(p) for p in sys.argv[1:]]))
