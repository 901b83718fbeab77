"""The Jupyter Book site, built by `make book`, read in a real browser.

The book is built once for this module against a fresh embedded server, served
from build/book/ on a loopback port, and every page listed in book/_toc.yml is
opened in Chromium. Each page must have its title, at least one executed
output, chart images that load, the theme's header buttons (Binder, GitHub,
download) pointing where book/_config.yml says, no console errors, and no
solution open by default. The site's search must find ``expire_on_commit``.
The repository's address is that config's one setting; the last test here keeps
the README's Binder links in step with it.
"""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml
from axe_playwright_python.sync_playwright import Axe
from docutils.nodes import make_id

from tutorial_harness import REPO
from tutorial_harness.book import OUT, SOURCE, repository
from tutorial_harness.browser import chromium
from tutorial_harness.lessons import Lesson, lessons
from tutorial_harness.runner import kernel_env
from tutorial_kit.database import start_embedded
from tutorial_kit.exercises import exercises
from tutorial_kit.net import LOOPBACK, free_port

CONFIG = yaml.safe_load((REPO / "book" / "_config.yml").read_text())
PAGES = lessons()


def launch_url(lesson: Lesson) -> str:
    """Where the Binder button of a lesson's page (and the README's badge, for 00) goes.

    sphinx-book-theme's ``add_launch_buttons`` builds it this way from the config's
    ``launch_buttons`` and ``repository`` for a GitHub repository.
    """
    binder = CONFIG["launch_buttons"]["binderhub_url"].rstrip("/")
    assert CONFIG["launch_buttons"]["notebook_interface"] == "jupyterlab"
    repo = repository()
    slug = repo["url"].rstrip("/").removeprefix("https://github.com/")
    return f"{binder}/v2/gh/{slug}/{repo['branch']}?urlpath=lab/tree/notebooks/{lesson.path.name}"


def test_config_builds_offline() -> None:
    assert CONFIG["execute"]["execute_notebooks"] == "off", "notebooks run before the build"
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
    # A quiet build: the kernels talk over Unix sockets (tutorial_harness/runner.py), so
    # none logs "Kernel is running over TCP without encryption".
    assert "without encryption" not in build.stdout + build.stderr
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


# The header buttons as sphinx-book-theme 1.3 renders them (theme/…/macros/buttons.html):
# the launch group's links, the repository button, and the download group's links.
PAGE_REPORT_JS = r"""() => {
  const outputs = document.querySelectorAll('.cell_output .output, .cell_output img');
  const imgs = [...document.querySelectorAll('.cell_output img')];
  const details = [...document.querySelectorAll('details')];
  const hrefs = sel => [...document.querySelectorAll(sel)].map(a => a.href);
  return {
    outputs: outputs.length,
    images: imgs.length,
    brokenImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    // A chart's text alternative says what it shows, not its file name (MyST-NB's default).
    noAltText: imgs.filter(i => !i.alt || /\.(png|jpe?g|svg)$/.test(i.alt)).map(i => i.src),
    openDetails: details.filter(d => d.open).map(d => d.innerText.slice(0, 80)),
    solutions: details.filter(d => /Solution/.test(d.querySelector('summary')?.innerText || ''))
      .length,
    launch: hrefs('.article-header-buttons .dropdown-launch-buttons a'),
    repository: hrefs('.article-header-buttons a.btn-source-repository-button'),
    download: hrefs('.article-header-buttons .dropdown-download-buttons a[href]'),
    sidebar: document.querySelector('.bd-sidenav a.current')?.innerText.trim(),
    searchBoxes: [...document.querySelectorAll('.search-button__button')]
      .filter(b => b.getClientRects().length > 0).length,
    cutOutputs: [...document.querySelectorAll('div.cell_output pre')]
      .filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.innerText.slice(0, 80)),
  };
}"""


@pytest.mark.notebooks
@pytest.mark.parametrize("lesson", PAGES, ids=[lesson.path.stem for lesson in PAGES])
def test_page(lesson: Lesson, site: str, browser) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{site}/notebooks/{lesson.path.stem}.html", wait_until="load")
        assert page.title().startswith(_title(lesson.path)), page.title()
        report = page.evaluate(PAGE_REPORT_JS)
        assert report["sidebar"] == lesson.title, f"the sidebar says {report['sidebar']!r}"
        assert report["outputs"] > 0, "no executed output on the page"
        assert not report["brokenImages"], f"images that did not load: {report['brokenImages']}"
        assert not report["noAltText"], (
            f"charts without a text alternative (mystnb.image.alt): {report['noAltText']}")
        assert not report["openDetails"], f"open by default: {report['openDetails']}"
        assert report["searchBoxes"] == 1, f"{report['searchBoxes']} search boxes shown"
        assert not report["cutOutputs"], f"outputs cut at the edge: {report['cutOutputs']}"
        count = len(exercises(nbformat.read(lesson.path, as_version=4).cells))
        assert report["solutions"] == count, "every exercise has one collapsed solution"
        assert report["launch"] == [launch_url(lesson)], f"Binder button: {report['launch']}"
        assert report["repository"] == [repository()["url"]], (
            f"GitHub button: {report['repository']}")
        download = f"{site}/_sources/notebooks/{lesson.path.name}"
        assert download in report["download"], f"download buttons: {report['download']}"
        got = page.request.get(download)
        assert got.ok, f"{download}: HTTP {got.status}"
        outputs = [o for c in nbformat.reads(got.text(), as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs]
        assert outputs, "the downloaded notebook should be the executed one, with outputs"
        assert not errors, f"console errors: {errors}"
    finally:
        page.close()


def test_pages_with_charts_show_them(site: str, browser) -> None:
    """Notebooks that draw charts have loaded <img> outputs on their page."""
    with_charts = [lesson.path for lesson in PAGES
                   if "image/png" in (SOURCE / "notebooks" / lesson.path.name).read_text()]
    assert with_charts, "no notebook drew a chart"
    page = browser.new_page()
    try:
        for path in with_charts:
            page.goto(f"{site}/notebooks/{path.stem}.html", wait_until="load")
            report = page.evaluate(PAGE_REPORT_JS)
            assert report["images"] > 0 and not report["brokenImages"], path.name
    finally:
        page.close()


#: axe-core's rules as it ships them, plus label-content-name-mismatch (an "experimental"
#: rule, off by default): the icon buttons' names must include their visible text.
AXE_OPTIONS = {"resultTypes": ["violations"],
               "rules": {"label-content-name-mismatch": {"enabled": True}}}


@pytest.mark.parametrize("name", ["intro", "search", "errors", *(f"notebooks/{lesson.path.stem}"
                                                       for lesson in PAGES)])
def test_page_has_no_serious_accessibility_violation(name: str, site: str, browser) -> None:
    """An axe-core audit of every page in Chromium: nothing serious or critical."""
    page = browser.new_page()
    try:
        page.goto(f"{site}/{name}.html", wait_until="load")
        found = Axe().run(page, options=AXE_OPTIONS).response["violations"]
        bad = [f"{v['id']} ({v['impact']}, {len(v['nodes'])}×): {v['help']}; e.g. "
               f"{v['nodes'][0]['html'][:160]}"
               for v in found if v["impact"] in ("serious", "critical")]
        assert not bad, "\n".join(bad)
    finally:
        page.close()


def search(browser, site: str, query: str) -> list[tuple[str, str]]:
    """The site's search results for ``query``, in order: (text, href) of each."""
    page = browser.new_page()
    try:
        page.goto(f"{site}/search.html?q={urllib.parse.quote(query)}", wait_until="load")
        page.wait_for_function(
            "() => document.querySelectorAll('#search-results li').length > 0",
            timeout=30_000)
        links = page.locator("#search-results li a")
        return [(link.inner_text(), link.get_attribute("href") or "") for link in links.all()]
    finally:
        page.close()


def test_search_finds_expire_on_commit(site: str, browser) -> None:
    hits = search(browser, site, "expire_on_commit")
    assert any("expire_on_commit" in text for text, _ in hits), hits


ERROR_INDEX = REPO / "book" / "errors.md"
ENTRY = re.compile(r"^## (?P<title>.+?)\n(?P<body>.*?)(?=^## |\Z)", re.M | re.S)
MESSAGE = re.compile(r"^\*\*Message:\*\* `(?P<message>[^`]+)`", re.M)
WHERE = re.compile(r"^\*\*(?P<kind>Reproduced|Source quoted) in:\*\* \[[^\]]+\]"
                   r"\(\.\./notebooks/(?P<file>[^)#]+)#(?P<anchor>(?:[^()\s]|\([^()\s]*\))+)\)",
                   re.M)   # an anchor may hold balanced parentheses: #…-asyncio.run()-per-job


def error_index() -> list[dict[str, str]]:
    """book/errors.md's entries: title, message, where (Reproduced/Source quoted), file, anchor."""
    entries = []
    for entry in ENTRY.finditer(ERROR_INDEX.read_text()):
        message, where = MESSAGE.search(entry["body"]), WHERE.search(entry["body"])
        assert message and where, f"book/errors.md, {entry['title']}: needs **Message:** and a link"
        entries.append({"title": entry["title"].strip(), "message": message["message"],
                        **where.groupdict()})
    return entries


def _output_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out:
                parts.append(str(out.data.get("text/plain", "")))
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))


def test_error_index_lists_25_errors_each_reproduced(site: str) -> None:
    """Every entry's message (its parts between "…") is in the executed output of the lesson it
    links, and the link goes to a heading of that lesson's page. A source-quoted entry (the
    Windows-only one) is checked against the source the lesson prints."""
    entries = error_index()
    assert len(entries) == 25, [e["title"] for e in entries]
    assert sum(e["kind"] == "Reproduced" for e in entries) >= 24
    registered = {lesson.path.name for lesson in PAGES}
    index = (OUT / "errors.html").read_text()
    for entry in entries:
        assert entry["file"] in registered, entry
        executed = SOURCE / "notebooks" / entry["file"]
        text = _output_text(nbformat.read(executed, as_version=4))
        message = entry["message"]
        if entry["kind"] == "Source quoted":
            text = re.sub(r'"\s*\n\s*"', "", text)          # Python's implicit concatenation
            message = message.split(": ", 1)[1]               # the source has no class name
        for part in filter(None, (p.strip() for p in message.split("…"))):
            assert part in text, f"{entry['title']}: {part!r} not in {entry['file']}'s outputs"
        # Sphinx writes the heading's anchor as a docutils id (lower case, hyphens), and
        # the link as it resolved it.
        page = entry["file"].replace(".ipynb", ".html")
        anchor = make_id(entry["anchor"])
        html = (OUT / "notebooks" / page).read_text()
        assert f'id="{anchor}"' in html, f"{entry['title']}: {page} has no #{anchor}"
        assert f'href="notebooks/{page}#{anchor}"' in index, f"{entry['title']}: link"


@pytest.mark.parametrize("entry", error_index()[:5], ids=lambda e: e["title"][:40])
def test_search_lists_the_index_or_the_lesson_first(entry: dict[str, str], site: str,
                                                     browser) -> None:
    """The site's search for one of the five most reported messages: its first result is
    the error index or the lesson that reproduces the error."""
    query = entry["title"].strip("`")
    _, first = search(browser, site, query)[0]
    lesson = entry["file"].replace(".ipynb", ".html")
    assert first.split("#")[0].endswith(("errors.html", lesson)), (query, first)


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


# A Binder launch link, on any BinderHub: <hub>/v2/gh/<owner>/<name>/<ref>?urlpath=…
BINDER_LINK = re.compile(r"https?://[\w.-]+(?::\d+)?/v2/gh/[^\s()\"'<>\]]+")


def test_repository_url_is_one_setting() -> None:
    """book/_config.yml's ``repository.url`` is the only place the repository's address is set.

    The book's buttons are built from it. The README is static markdown, so its Binder
    badge spells the address out; this test keeps every Binder link in the repository
    pointing at the configured repository and branch, and keeps the address itself
    from being written anywhere else (link to files in the repository relatively).
    """
    config = REPO / "book" / "_config.yml"
    url = repository()["url"].rstrip("/")
    start = launch_url(PAGES[0])
    start_prefix = start.removesuffix(f"notebooks/{PAGES[0].path.name}")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    stale, restated = [], []
    for name in files:
        path = REPO / name
        if path == config or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        stale += [f"{name}: {link}" for link in BINDER_LINK.findall(text)
                  if not link.startswith(start_prefix)]
        if url.removeprefix("https://") in text:
            restated.append(name)
    assert not stale, (
        f"Binder links that do not launch {url} at {repository()['branch']} "
        f"(book/_config.yml's repository setting); each should start {start_prefix}:\n"
        + "\n".join(stale))
    assert not restated, f"{url} is written outside book/_config.yml in {restated}"
    badge = f"[![Binder](https://mybinder.org/badge_logo.svg)]({start})"
    assert badge in (REPO / "README.md").read_text(), f"README.md's badge should be {badge}"


def test_where_to_start_links_each_lesson_it_names() -> None:
    """The home page's *Where to start* names lessons as links, by their registry titles,
    to notebooks the registry lists (a bare "lesson 04" is a dead end on the site)."""
    intro = (REPO / "book" / "intro.md").read_text()
    section = intro.split("## Where to start", 1)[1].split("\n## ", 1)[0]
    by_file = {f"../notebooks/{lesson.path.name}": lesson.title for lesson in PAGES}
    by_file["errors.md"] = "Find your error"
    links = re.findall(r"\[([^\]]+)\]\(([^)]+)\)", section)
    assert links, "book/intro.md's Where to start links no lesson"
    for text, target in links:
        assert by_file.get(target) == text, (
            f"book/intro.md: [{text}]({target}) should be a registered lesson's title and file")
    assert not re.search(r"\blessons? \d\d", section), "a lesson named without its link"
