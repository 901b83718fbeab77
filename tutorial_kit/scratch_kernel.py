"""Run cells in a throwaway kernel, so a process-wide patch never reaches yours.

``nest_asyncio.apply()`` (and ``nest_asyncio2.apply()``) patch asyncio for the
whole process, with no way to undo it. Lesson 09 and
``tutorial_harness/nest_asyncio_check.py`` therefore apply them in a *scratch kernel*:
a second ipykernel on the same Python (``sys.executable``), started for the
job and shut down after it.

``queued=True`` sends every cell at once, without waiting for replies, as
JupyterLab's *Run All* does. A cell that has not even started ``quiet``
seconds after the cell before it finished is taken as dropped: it never will.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

_ERROR_LINE = re.compile(r"^([A-Za-z_.]*(?:Error|Exception|Warning)): (.*)$")


@dataclass
class CellResult:
    """What one cell sent back."""

    stdout: str = ""
    stderr: str = ""
    error: str = ""  # the cell's own exception, as one line
    replied: bool = False  # False: the kernel never finished this cell

    def stderr_summary(self, limit: int = 110) -> list[str]:
        """The last line of each error or warning on stderr, counted, one line each."""
        found: Counter[str] = Counter()
        for line in self.stderr.splitlines():
            match = _ERROR_LINE.match(line.strip())
            if match:
                text = f"{match.group(1)}: {match.group(2)}"
                text = re.sub(r" at 0x[0-9a-f]+", "", text)  # same error, same line
                found[text if len(text) <= limit else text[:limit] + " …"] += 1
        return [f"{text}  (×{n})" if n > 1 else text for text, n in found.items()]


async def run_cells(cells: Sequence[str], *, queued: bool = False,
                    timeout: float = 20.0, quiet: float = 0.4) -> list[CellResult]:
    """Execute ``cells`` in a fresh kernel of this Python; return what each sent back."""
    with tempfile.TemporaryDirectory(prefix="scratch-kernel-") as tmp:
        # IPC sockets in a private folder: nothing listens on the network.
        km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                                ip=str(Path(tmp) / "kernel"),
                                connection_file=str(Path(tmp) / "kernel.json"))
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=30)
            if queued:
                ids = [kc.execute(code, store_history=False) for code in cells]
                return await _collect(kc, ids, timeout, quiet)
            results = []
            for code in cells:
                results += await _collect(kc, [kc.execute(code, store_history=False)],
                                          timeout, quiet)
            return results
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)  # a scratch kernel: nothing in it to keep


async def _collect(kc: Any, ids: list[str], timeout: float, quiet: float) -> list[CellResult]:
    results = {msg_id: CellResult() for msg_id in ids}
    waiting, running = set(ids), set()
    deadline = time.monotonic() + timeout
    while waiting:
        left = deadline - time.monotonic()
        if not running and len(waiting) < len(ids):  # the next cell should start promptly
            left = min(left, quiet)
        if left <= 0:
            break
        try:
            msg = await kc.get_iopub_msg(timeout=left)
        except Exception:  # queue.Empty: nothing more arrived in time
            break
        result = results.get(msg.get("parent_header", {}).get("msg_id"))
        if result is None:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            if content["name"] == "stdout":
                result.stdout += content["text"]
            else:
                result.stderr += content["text"]
        elif kind in ("execute_result", "display_data"):
            result.stdout += content["data"].get("text/plain", "") + "\n"
        elif kind == "error":
            result.error = f"{content['ename']}: {content['evalue']}".splitlines()[0][:200]
        elif kind == "status":
            msg_id = msg["parent_header"]["msg_id"]
            if content["execution_state"] == "busy":
                running.add(msg_id)
            elif content["execution_state"] == "idle":
                result.replied = True
                waiting.discard(msg_id)
                running.discard(msg_id)
    return [results[msg_id] for msg_id in ids]
