"""Build the tutorial's static site with Jupyter Book 1.0.x into build/book/.

    python -m tutorial_harness.book [--jobs N]

1. Every notebook in book/_toc.yml is executed in a fresh kernel against the
   tutorial's PostgreSQL, found the usual way (DATABASE_URL, else compose, else
   the embedded server). A notebook with an error output fails the build.
2. The pages in book/ (``intro.md``, ``errors.md``) link the lessons as
   ``../notebooks/…``, which is right in a clone; in the book's source the executed
   notebooks sit beside them, so the copies link ``notebooks/…``.
   In each executed copy, links to repository files outside the book
   (``../docs/…``) point at the repository instead. The committed notebooks are
   not touched. Launching on Binder, the repository and downloading the notebook
   are the theme's own header buttons, configured in book/_config.yml.
3. ``jupyter-book build`` renders book/ plus the executed copies, offline
   (``execute_notebooks: off``: they already ran), and the HTML is copied to
   build/book/. Any Sphinx warning fails the build, so a broken link shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

from tutorial_harness import REPO
from tutorial_harness.runner import notebook_paths, run_notebook

BOOK = REPO / "book"
SOURCE = REPO / "build" / "book-src"
OUT = REPO / "build" / "book"


def repository() -> dict[str, str]:
    """book/_config.yml's ``repository``: the one setting that names the repository.

    ``url`` (the GitHub address) and ``branch``. The theme's header buttons and the
    links below are built from it; tests/test_book.py checks that the README's
    Binder links agree with it.
    """
    return yaml.safe_load((BOOK / "_config.yml").read_text())["repository"]


OUTSIDE_LINK = re.compile(r"\]\(\.\./([^)#\s]+)")


def site_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The executed notebook as the site shows it: links outside the book go to GitHub.

    ``../docs/x.md`` is a file next to the notebooks in a clone, but not a page of
    the site, so the site links to it on the repository instead.
    """
    repo = repository()
    blob = f"{repo['url'].rstrip('/')}/blob/{repo['branch']}/"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = OUTSIDE_LINK.sub(lambda m: f"]({blob}{m.group(1)}", cell.source)
    return nb


async def execute_all(paths: list[Path], jobs: int) -> None:
    """Execute every notebook (``jobs`` at a time) into SOURCE/notebooks/."""
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    gate = asyncio.Semaphore(jobs)
    target = SOURCE / "notebooks"
    target.mkdir(parents=True, exist_ok=True)

    async def one(path: Path) -> None:
        async with gate:
            start = time.perf_counter()
            run = await run_notebook(path, env=env, timeout=300)
            nbformat.write(site_copy(run.nb), target / path.name)
            print(f"  executed {path.name} in {time.perf_counter() - start:.1f} s", flush=True)

    await asyncio.gather(*(one(p) for p in paths))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    shutil.rmtree(SOURCE, ignore_errors=True)
    shutil.copytree(BOOK, SOURCE)
    for page in SOURCE.glob("*.md"):
        # book/*.md link lessons as ../notebooks/…, right in a clone (and on GitHub); in
        # the book's source the executed notebooks sit beside the pages.
        page.write_text(page.read_text().replace("](../notebooks/", "](notebooks/"))
    paths = notebook_paths()
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        print(f"book/_toc.yml lists notebooks that do not exist: {missing}", file=sys.stderr)
        return 2
    print(f"Executing {len(paths)} notebooks ({args.jobs} at a time)…", flush=True)
    asyncio.run(execute_all(paths, args.jobs))
    executed = time.perf_counter() - start

    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    build = subprocess.run(
        [str(jupyter_book), "build", str(SOURCE), "--builder", "html", "--warningiserror",
         "--keep-going", "--quiet"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if build.returncode != 0:
        print(build.stdout[-4000:], build.stderr[-4000:], sep="\n", file=sys.stderr)
        return build.returncode
    shutil.rmtree(OUT, ignore_errors=True)
    shutil.copytree(SOURCE / "_build" / "html", OUT)
    total = time.perf_counter() - start
    print(f"Built {OUT.relative_to(REPO)}/index.html: executing {executed:.0f} s, "
          f"total {total:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
