"""Debian's Chromium driven by Playwright, shared by every real-browser test.

Playwright cannot download a browser here, so it is pointed at /usr/bin/chromium
(or $CHROMIUM). Without Chromium the browser tests skip, unless
TUTORIAL_BROWSER_TESTS=required (set by .ci/run), where a missing browser fails.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
REQUIRED = os.environ.get("TUTORIAL_BROWSER_TESTS") == "required"
# Headless as root in a container, and quiet on a closed network: without the
# background-networking flags Chromium keeps trying (and failing) to reach Google.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic",
]


def require_chromium() -> None:
    """Skip (or, in CI, fail) the calling test when Chromium is missing."""
    if CHROMIUM.exists():
        return
    message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    if REQUIRED:
        pytest.fail(message + "; TUTORIAL_BROWSER_TESTS=required")
    pytest.skip(message + ": browser tests skipped")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium ``Browser`` for the block."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def server_process(cmd: list[str], *, name: str, log_path: Path, ready: Any,
                   timeout: float = 60, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server for a browser test; wait until ``ready()`` is true; stop it after.

    If the process exits or ``timeout`` passes first, the test fails with the end
    of its log. ``ready`` is called repeatedly; an ``OSError`` counts as not ready.
    """
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **popen)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"{name} did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.3)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
