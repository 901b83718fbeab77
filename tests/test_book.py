"""The Jupyter Book site, built by `make book`, read in a real browser.

The book is built once for this module against a fresh embedded server, served
from build/book/ on a loopback port, and every page listed in book/_toc.yml is
opened in Chromium. Each page must have its title, at least one executed
output, chart images that load, a Binder link, no console errors, and no
solution open by default. The site's search must find ``expire_on_commit``.
"""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml

from tutorial_harness.book import OUT, SOURCE, toc_notebooks
from tutorial_harness.browser import chromium
from tutorial_harness.runner import REPO, kernel_env, notebook_paths
from tutorial_kit.database import start_embedded
from tutorial_kit.net import LOOPBACK, free_port

PAGES = toc_notebooks()


def test_toc_lists_every_notebook_in_order() -> None:
    assert notebook_paths() == PAGES, "book/_toc.yml and notebooks/ disagree"


def test_config_builds_offline() -> None:
    config = yaml.safe_load((REPO / "book" / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off", "notebooks run before the build"
    requirements = (REPO / "requirements-dev.txt").read_text()
    assert re.search(r"^jupyter-book==1\.0\.\d+$", requirements, re.M), (
        "Jupyter Book 1.0.x, pinned: 2.x fetches its template over the network"
    )


@pytest.fixture(scope="module")
def site(embedded_pgdata: Path) -> Iterator[str]:
    """Build the book, serve build/book/ on loopback, yield its base URL."""
    start_embedded(embedded_pgdata)
    build = subprocess.run([sys.executable, "-m", "tutorial_harness.book"],
                           env=kernel_env(TUTORIAL_PGDATA=str(embedded_pgdata)), cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    handler = functools.partial(_QuietHandler, directory=str(OUT))
    server = http.server.ThreadingHTTPServer((LOOPBACK, free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser(site: str) -> Iterator[object]:
    with chromium() as b:
        yield b


def _title(path: Path) -> str:
    first = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0]
    return first.removeprefix("# ").strip()


PAGE_REPORT_JS = """() => {
  const outputs = document.querySelectorAll('.cell_output .output, .cell_output img');
  const imgs = [...document.querySelectorAll('.cell_output img')];
  const details = [...document.querySelectorAll('details')];
  const binder = [...document.querySelectorAll('a')].some(a => a.href.includes('mybinder.org'));
  return {
    outputs: outputs.length,
    images: imgs.length,
    brokenImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    openDetails: details.filter(d => d.open).map(d => d.innerText.slice(0, 80)),
    solutions: details.filter(d => /Solution/.test(d.querySelector('summary')?.innerText || ''))
      .length,
    binder,
  };
}"""


@pytest.mark.notebooks
@pytest.mark.parametrize("path", PAGES, ids=[p.stem for p in PAGES])
def test_page(path: Path, site: str, browser) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{site}/notebooks/{path.stem}.html", wait_until="load")
        assert page.title().startswith(_title(path)), page.title()
        report = page.evaluate(PAGE_REPORT_JS)
        assert report["outputs"] > 0, "no executed output on the page"
        assert not report["brokenImages"], f"images that did not load: {report['brokenImages']}"
        assert not report["openDetails"], f"open by default: {report['openDetails']}"
        exercises = sum("exercise" in c.metadata.get("tags", [])
                        for c in nbformat.read(path, as_version=4).cells)
        assert report["solutions"] == exercises, "every exercise has one collapsed solution"
        assert report["binder"], "no Open in Binder link"
        assert not errors, f"console errors: {errors}"
    finally:
        page.close()


def test_pages_with_charts_show_them(site: str, browser) -> None:
    """Notebooks that draw charts have loaded <img> outputs on their page."""
    with_charts = [p for p in PAGES if "image/png" in (SOURCE / "notebooks" / p.name).read_text()]
    assert with_charts, "no notebook drew a chart"
    page = browser.new_page()
    try:
        for path in with_charts:
            page.goto(f"{site}/notebooks/{path.stem}.html", wait_until="load")
            report = page.evaluate(PAGE_REPORT_JS)
            assert report["images"] > 0 and not report["brokenImages"], path.name
    finally:
        page.close()


def test_search_finds_expire_on_commit(site: str, browser) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{site}/search.html?q=expire_on_commit", wait_until="load")
        page.wait_for_function(
            "() => document.querySelectorAll('#search-results li').length > 0",
            timeout=30_000)
        hits = page.locator("#search-results li a").all_inner_texts()
        assert any("expire_on_commit" in h for h in hits), hits
    finally:
        page.close()


def test_pages_workflow_validates() -> None:
    """The documented publishing route is a valid GitHub Actions workflow that runs make book."""
    workflow = REPO / ".github" / "workflows" / "book.yml"
    out = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.github-workflows", str(workflow)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    steps = yaml.safe_load(workflow.read_text())["jobs"]["build"]["steps"]
    assert {"run": "make book"} in steps
    assert any(s.get("with", {}).get("path") == "build/book" for s in steps)
