"""A real JupyterHub for a class: three learners log in at once and Run All notebook 04.

The hub runs classroom/jupyterhub/jupyterhub_config.py unchanged (through a
test config that loads it and only exposes JupyterLab's app object to the page),
with configurable-http-proxy from npm in classroom/jupyterhub/node_modules,
on free loopback ports, against the password-auth test server as the class
DATABASE_URL (it holds a reader's own tables, which must stay untouched).

Debian's Chromium (Playwright) logs in as alice, bob and carol in three
browser contexts, opens notebook 04 in each, and starts Run All in all three
before waiting for any: the three kernels run at the same time. Asserted: no
error output, three distinct schemas tutorial_04_<learner>, and every
learner's server (and its kernels) stopped at the end.

Without Chromium the test skips, unless TUTORIAL_BROWSER_TESTS=required (CI).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from test_browser import KERNEL_STATE_JS, REPORT_JS, RUN_STATE_JS, VISIBLE_CELL

from tutorial_harness import REPO
from tutorial_harness.browser import REQUIRED, chromium, require_chromium, server_process
from tutorial_harness.pg_server import READER_SNAPSHOT_SQL
from tutorial_harness.runner import kernel_env
from tutorial_kit.net import free_port

HUB_DIR = REPO / "classroom" / "jupyterhub"
PROXY = HUB_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
JUPYTERHUB = Path(sys.executable).parent / "jupyterhub"  # from requirements-dev.txt
LEARNERS = ("alice", "bob", "carol")
NOTEBOOK = "notebooks/04_eager_loading.ipynb"
SHOTS = REPO / "build" / "screenshots"
PASSWORD = "class-" + secrets.token_hex(8)
TOKEN = secrets.token_hex(24)

TEST_CONFIG = """\
# The class configuration exactly as shipped, plus what the test needs to read the page.
load_subconfig({config!r})
c.Spawner.args = [*c.Spawner.args, "--LabApp.expose_app_in_browser=True"]
"""


def ensure_proxy() -> None:
    """configurable-http-proxy from npm, installed locally (what .ci/run does)."""
    if PROXY.exists():
        return
    if shutil.which("npm") is None:
        message = "npm is missing, so configurable-http-proxy cannot be installed"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(HUB_DIR)],
                   check=True, capture_output=True, timeout=300)


def api(base: str, path: str, method: str = "GET") -> tuple[int, object]:
    request = urllib.request.Request(f"{base}/hub/api{path}", method=method,
                                     headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
        return response.status, json.loads(body) if body else None


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, password_server) -> Iterator[tuple[str, int]]:
    """A running hub; yields its public URL and the hub's pid."""
    require_chromium()
    ensure_proxy()
    state = tmp_path_factory.mktemp("hub")
    config = state / "test_config.py"
    config.write_text(TEST_CONFIG.format(config=str(HUB_DIR / "jupyterhub_config.py")))
    port = free_port()
    env = kernel_env(
        DATABASE_URL=password_server.url, TUTORIAL_HUB_DIR=str(state),
        TUTORIAL_HUB_PORT=str(port), TUTORIAL_HUB_API_PORT=str(free_port()),
        TUTORIAL_PROXY_API_PORT=str(free_port()), TUTORIAL_CLASS_PASSWORD=PASSWORD,
        TUTORIAL_HUB_ADMIN_TOKEN=TOKEN,
    )
    env.pop("MPLBACKEND", None)
    base = f"http://127.0.0.1:{port}"
    with server_process([str(JUPYTERHUB), "-f", str(config)], name="JupyterHub",
                        log_path=state / "hub.log", ready=lambda: api(base, "/")[0] == 200,
                        timeout=120, cwd=state, env=env) as proc:
        yield base, proc.pid


def servers_running(base: str) -> dict[str, list[str]]:
    _, users = api(base, "/users?state=active")
    return {u["name"]: list(u.get("servers") or {}) for u in users if u.get("servers")}


def learner_processes(hub_pid: int) -> list[psutil.Process]:
    """The hub's descendants except the proxy: learners' servers and their kernels."""
    found = []
    for proc in psutil.Process(hub_pid).children(recursive=True):
        try:
            if "configurable-http-proxy" not in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def kernel_connection_files(hub_pid: int) -> list[Path]:
    """The connection file (``-f``) of every kernel the hub's learners run."""
    files = []
    for proc in learner_processes(hub_pid):
        with contextlib.suppress(psutil.Error):
            args = proc.cmdline()
            if "ipykernel_launcher" in " ".join(args) and "-f" in args:
                files.append(Path(args[args.index("-f") + 1]))
    return files


def test_three_learners_run_notebook_04_on_the_hub(hub: tuple[str, int], password_server,
                                                    reader_snapshot: str) -> None:
    base, hub_pid = hub
    SHOTS.mkdir(parents=True, exist_ok=True)
    target = "/hub/user-redirect/lab/workspaces/hubtest/tree/" + NOTEBOOK
    login = f"{base}/hub/login?next={urllib.parse.quote(target)}"
    with chromium() as browser:
        pages = {}
        for name in LEARNERS:  # all three log in before anyone waits: the spawns overlap
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(login)
            page.fill("#username_input", name)
            page.fill("#password_input", PASSWORD)
            page.click("#login_submit", no_wait_after=True)
            pages[name] = page
        for name, page in pages.items():
            try:
                page.wait_for_selector(VISIBLE_CELL, timeout=150_000)
                state = page.wait_for_function(KERNEL_STATE_JS, timeout=90_000).json_value()
            except Exception:
                page.screenshot(path=SHOTS / f"hub-{name}-not-opened.png")
                raise
            assert state != "dialog", page.locator(".jp-Dialog").inner_text()[:300]
            assert page.url.startswith(f"{base}/user/{name}/lab"), page.url
        for page in pages.values():  # Run All in every browser, then wait for all
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        reports = {}
        for name, page in pages.items():
            try:
                page.wait_for_function(RUN_STATE_JS, timeout=150_000, polling=500)
            finally:
                reports[name] = page.evaluate(REPORT_JS)
                page.screenshot(path=SHOTS / f"hub-{name}.png")
        for name, report in reports.items():
            assert report["codeCells"] > 0
            assert not report["errors"], f"{name}: error output:\n" + "\n".join(report["errors"])
            assert not report["unexecuted"], f"{name}: cells not run: {report['unexecuted']}"
        # Kernels talk over Unix sockets in a folder per learner, never over TCP ports that
        # thirty servers could pick twice (jupyterhub_config.py, "Unix sockets").
        connection_files = kernel_connection_files(hub_pid)
        assert len(connection_files) == len(LEARNERS), connection_files
        for path in connection_files:
            info = json.loads(path.read_text())
            assert info["transport"] == "ipc", info
            assert len(f"{info['ip']}-{info['shell_port']}") <= 107
        assert len({path.parent for path in connection_files}) == len(LEARNERS)
        for page in pages.values():
            page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")

    schemas = password_server.psql(
        "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace "
        "WHERE nspname LIKE 'tutorial_04_%'")
    assert schemas.split(",") == [f"tutorial_04_{name}" for name in LEARNERS]

    running = servers_running(base)
    assert sorted(running) == sorted(LEARNERS), running
    processes = learner_processes(hub_pid)
    assert processes, "expected the learners' servers to be the hub's child processes"
    for name in LEARNERS:  # what an instructor (or a culler) does at the end of class
        status, _ = api(base, f"/users/{name}/server", method="DELETE")
        assert status in (202, 204)
    deadline = time.monotonic() + 60
    while servers_running(base) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert servers_running(base) == {}, "a learner's server is still running"
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, f"processes left running: {[p.pid for p in alive]}"
    assert not any(path.parent.exists() for path in connection_files), "socket folders left"

    password_server.psql("; ".join(f"DROP SCHEMA tutorial_04_{n} CASCADE" for n in LEARNERS))
    assert password_server.psql(READER_SNAPSHOT_SQL) == reader_snapshot


# --- Zero to JupyterHub values.yaml: linted, since it cannot be deployed here ----------------

VALUES = HUB_DIR / "values.yaml"
# Every key path values.yaml may set, as named in the chart's values.schema.yaml
# (jupyterhub/zero-to-jupyterhub-k8s at 48ea50e3, November 2026; the full file validated
# against that schema merged over the chart's defaults, 0 errors). Paths ending in "*"
# are free-form in the chart (JupyterHub config, Kubernetes objects).
KNOWN_PATHS = {
    "hub.config.*", "hub.concurrentSpawnLimit", "hub.allowNamedServers",
    "singleuser.image.name", "singleuser.image.tag", "singleuser.defaultUrl",
    "singleuser.lifecycleHooks.postStart.*", "singleuser.memory.guarantee",
    "singleuser.memory.limit", "singleuser.cpu.guarantee", "singleuser.cpu.limit",
    "singleuser.storage.type", "singleuser.storage.capacity", "singleuser.extraEnv.*",
    "singleuser.extraFiles.*", "singleuser.networkPolicy.egress", "singleuser.startTimeout",
    "cull.enabled", "cull.timeout", "cull.every", "cull.maxAge", "cull.users",
    "scheduling.userScheduler.enabled", "scheduling.podPriority.enabled",
    "scheduling.userPlaceholder.enabled", "scheduling.userPlaceholder.replicas",
    "prePuller.hook.enabled", "prePuller.continuous.enabled",
    "proxy.https.enabled", "proxy.https.hosts", "proxy.https.letsencrypt.contactEmail",
}
QUANTITY = re.compile(r"^\d+(\.\d+)?[KMGT]i?$")


def leaf_paths(node: object, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaf_paths(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def known(path: str) -> bool:
    return path in KNOWN_PATHS or any(
        k.endswith(".*") and path.startswith(k[:-1]) for k in KNOWN_PATHS)


def test_z2jh_values_use_only_the_charts_keys() -> None:
    values = yaml.safe_load(VALUES.read_text())
    unknown = [p for p in leaf_paths(values) if not known(p)]
    assert not unknown, f"not a key of the Zero to JupyterHub chart (typo?): {unknown}"


def test_z2jh_values_make_sense_for_a_class() -> None:
    values = yaml.safe_load(VALUES.read_text())
    user = values["singleuser"]
    memory = user["memory"]
    assert QUANTITY.match(memory["limit"]) and QUANTITY.match(memory["guarantee"])
    assert memory["guarantee"] == memory["limit"] == "1G", "a kernel under 350 MB; 1 GB each"
    assert 0 < user["cpu"]["guarantee"] <= user["cpu"]["limit"]
    # The class database comes from a Kubernetes secret, never from this file.
    ref = user["extraEnv"]["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] and ref["key"]
    assert "postgresql+asyncpg://" not in yaml.safe_dump(values), "no URL in the values"
    cull = values["cull"]
    assert cull["enabled"] is True and 0 < cull["every"] < cull["timeout"] <= cull["maxAge"]
    overrides = user["extraFiles"]["lab-settings-overrides"]
    assert overrides["mountPath"].endswith("/share/jupyter/lab/settings/overrides.json")
    news = overrides["data"]["@jupyterlab/apputils-extension:notification"]
    assert news == {"fetchNews": "false"}
    assert user["defaultUrl"].endswith(tuple(p.name for p in (REPO / "notebooks").glob("00_*")))


def test_instructor_guide_explains_every_setting() -> None:
    guide = (REPO / "docs" / "instructor-guide.md").read_text()
    section = guide.split("## Running a class on one server", 1)[1]
    missing = sorted({p.split(".*")[0].rsplit(".", 1)[-1] for p in KNOWN_PATHS
                      if p.split(".*")[0].rsplit(".", 1)[-1] not in section})
    assert not missing, f"values.yaml settings the instructor guide does not explain: {missing}"
