"""Build the tutorial's static site with Jupyter Book 1.0.x into build/book/.

    python -m tutorial_harness.book [--jobs N]

1. Every notebook in book/_toc.yml is executed in a fresh kernel against the
   tutorial's PostgreSQL, found the usual way (DATABASE_URL, else compose, else
   the embedded server). A notebook with an error output fails the build.
2. Each executed copy gets one line under its title: open it on Binder, run it
   locally, download it. Links to repository files outside the book
   (``../docs/…``) point at the repository instead. The committed notebooks are
   not touched.
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

from tutorial_harness.runner import REPO, run_notebook

BOOK = REPO / "book"
SOURCE = REPO / "build" / "book-src"
OUT = REPO / "build" / "book"


def toc_notebooks() -> list[Path]:
    """The notebooks book/_toc.yml lists, in reading order."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    return [REPO / f"{f}.ipynb" for f in files]


def repository() -> str:
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


def launch_line(path: Path) -> str:
    """Markdown links to run this notebook: Binder, a local clone, the raw file."""
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    repo = repository()
    slug = repo.removeprefix("https://github.com/")
    binder = config["launch_buttons"]["binderhub_url"].rstrip("/")
    rel = f"notebooks/{path.name}"
    return (
        f"[Open in Binder]({binder}/v2/gh/{slug}/HEAD?urlpath=lab/tree/{rel}) · "
        f"[Run it locally]({repo}#quick-start) · "
        f"[Download the notebook]({repo}/raw/HEAD/{rel})"
    )


OUTSIDE_LINK = re.compile(r"\]\(\.\./([^)#\s]+)")


def site_copy(nb: nbformat.NotebookNode, path: Path) -> nbformat.NotebookNode:
    """The executed notebook as the site shows it: launch links, repository links."""
    first = nb.cells[0]
    title, _, rest = first.source.partition("\n")
    first.source = f"{title}\n\n{launch_line(path)}\n{rest}"
    blob = f"{repository()}/blob/HEAD/"
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
            nbformat.write(site_copy(run.nb, path), target / path.name)
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
    paths = toc_notebooks()
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
