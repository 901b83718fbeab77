"""Every notebook in real JupyterLab, in a real browser, the way a reader runs it.

JupyterLab is started from this venv on a free loopback port with a token, on a
copy of notebooks/ (Run All would otherwise save outputs into the repo).
Debian's Chromium is driven by Playwright: for each notebook it opens the
page, fails on a kernel-selection dialog, clicks Run → Run All Cells, waits
for the kernel to go idle with every code cell executed, fails on any error
output, and saves a screenshot under build/screenshots/.

Chromium comes from tutorial_harness/browser.py: without it the tests skip, unless
TUTORIAL_BROWSER_TESTS=required (set by .ci/run), where a missing browser fails.
Each Run All must also leave every exercise check at "not yet": the committed
notebooks are the learner's, with no answers in them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tutorial_harness import REPO
from tutorial_harness.browser import chromium, require_chromium, server_process
from tutorial_harness.runner import kernel_env, notebook_paths
from tutorial_kit.database import start_embedded
from tutorial_kit.exercises import CHECK, NOT_YET_SAID, VERDICT
from tutorial_kit.net import free_port

SHOTS = REPO / "build" / "screenshots"
NOTEBOOKS = notebook_paths()

VISIBLE_CELL = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell"
# JavaScript run in the page; `jupyterapp` is exposed by --LabApp.expose_app_in_browser.
KERNEL_STATE_JS = """() => {
  if (document.querySelector('.jp-Dialog')) return 'dialog';
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k && k.status === 'idle' ? 'idle' : false;
}"""
RUN_STATE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const kernel = w.sessionContext.session.kernel;
  const cells = w.content.model.cells;
  let pending = 0, errors = 0;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    if (c.executionCount === null) pending++;
    for (let j = 0; j < c.outputs.length; j++) if (c.outputs.get(j).type === 'error') errors++;
  }
  if (errors) return 'error';
  return pending === 0 && kernel.status === 'idle' ? 'done' : false;
}"""
REPORT_JS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const out = {unexecuted: [], errors: [], codeCells: 0, checks: []};
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    out.codeCells++;
    if (c.executionCount === null) out.unexecuted.push(i);
    for (let j = 0; j < c.outputs.length; j++) {
      const o = c.outputs.get(j).toJSON();
      if (o.output_type === 'error') out.errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
    }
    if ((c.getMetadata('tags') || []).includes(CHECK_TAG)) {
      let text = '';
      for (let j = 0; j < c.outputs.length; j++) {
        const o = c.outputs.get(j).toJSON();
        if (o.output_type === 'stream') text += [].concat(o.text).join('');
      }
      out.checks.push(text);
    }
  }
  return out;
}""".replace("CHECK_TAG", json.dumps(CHECK))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, embedded_pgdata: Path) -> Iterator[str]:
    """A JupyterLab server with a token on a copy of the notebooks; yields its base URL."""
    require_chromium()
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    start_embedded(embedded_pgdata)
    token, port = secrets.token_hex(16), free_port()
    env = kernel_env(
        TUTORIAL_PGDATA=str(embedded_pgdata),
        JUPYTER_CONFIG_DIR=str(root / "config"),
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(root / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(root / "workspaces"),
    )
    env.pop("MPLBACKEND", None)
    # No "get notified about Jupyter news?" toast over the screenshots.
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
            return r.status == 200

    with server_process(cmd, name="JupyterLab", log_path=root / "lab.log", ready=ready,
                        env=env):
        yield f"{base}|{token}"


@pytest.fixture(scope="module")
def browser(lab: str) -> Iterator[object]:
    with chromium() as browser:
        yield browser


def binder_notebook() -> str:
    """The notebook path the README's Binder badge opens (urlpath=lab/tree/...)."""
    readme = (REPO / "README.md").read_text()
    return re.search(r"urlpath=lab/tree/([^&)\s]+)", readme).group(1)


def test_binder_link_opens_in_lab(lab: str, browser) -> None:
    """The README's deep link, served by a real JupyterLab, opens that notebook."""
    base, token = lab.split("|")
    target = binder_notebook()
    assert (REPO / target).is_file()
    page = browser.new_page()
    try:
        page.goto(f"{base}/lab/tree/{target}?token={token}")
        page.wait_for_selector(VISIBLE_CELL, timeout=60_000)
        title = page.evaluate("() => window.jupyterapp.shell.currentWidget.title.label")
        assert title == Path(target).name
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    finally:
        page.close()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_run_all_in_jupyterlab(path: Path, lab: str, browser) -> None:
    base, token = lab.split("|")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # A workspace of its own, so JupyterLab does not restore earlier notebooks' tabs.
        page.goto(f"{base}/lab/workspaces/{path.stem}/tree/notebooks/{path.name}?token={token}")
        try:
            page.wait_for_selector(VISIBLE_CELL, timeout=60_000)
        except Exception:
            page.screenshot(path=SHOTS / f"{path.stem}-not-opened.png")
            raise
        state = page.wait_for_function(KERNEL_STATE_JS, timeout=60_000).json_value()
        if state == "dialog":
            page.screenshot(path=SHOTS / f"{path.stem}-dialog.png")
            text = page.locator(".jp-Dialog").inner_text()
            pytest.fail(f"a dialog appeared on opening {path.name}: {text[:300]}")
        # Opened and not touched, the notebook has nothing to save: closing its tab asks
        # nothing, and git sees no change (its metadata is what JupyterLab would write).
        page.wait_for_timeout(500)
        dirty = page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty")
        assert not dirty, f"{path.name} opens marked unsaved: its metadata differs from lab's"

        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

        try:
            page.wait_for_function(RUN_STATE_JS, timeout=180_000, polling=250)
        finally:
            report = page.evaluate(REPORT_JS)
            page.screenshot(path=SHOTS / f"{path.stem}.png")
        assert report["codeCells"] > 0
        assert not report["errors"], "error output in JupyterLab:\n" + "\n".join(report["errors"])
        assert not report["unexecuted"], f"cells left unexecuted: {report['unexecuted']}"
        verdicts = [VERDICT.search(text) for text in report["checks"]]
        answered = [text for text, v in zip(report["checks"], verdicts, strict=True)
                    if v is None or v.group(3) != NOT_YET_SAID]
        assert not answered, f"checks that did not print 'not yet': {answered}"
        dialogs = page.locator(".jp-Dialog").count()
        assert dialogs == 0, json.dumps(page.locator(".jp-Dialog").all_inner_texts())
    finally:
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        page.close()
