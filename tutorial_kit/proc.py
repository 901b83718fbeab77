"""Run a command from a notebook cell and show the end of its output, compactly.

The production lessons run real tools in a child process (pytest in lesson
10) so the reader sees their real output. ``run_command`` awaits the child
without blocking the kernel's event loop, stops it after ``timeout`` seconds,
and keeps stdout and stderr apart. ``Completed.tail()`` gives the last lines
with long lines shortened in the middle, so a 400-character error message
still shows its start and its end ("… attached to a different loop").
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class CommandTimeout(RuntimeError):
    """The child ran longer than allowed and was stopped."""


@dataclass(frozen=True)
class Completed:
    """What a finished child process printed, and how it ended."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def tail(self, lines: int = 6, *, width: int = 150, stream: str = "stdout") -> str:
        """The last ``lines`` non-empty lines of ``stream``, each at most ``width`` chars."""
        text = self.stdout if stream == "stdout" else self.stderr
        kept = [ln.rstrip() for ln in text.splitlines() if ln.strip()][-lines:]
        return "\n".join(shorten(ln, width) for ln in kept)

    def lines(self, *prefixes: str, width: int = 150) -> list[str]:
        """The stdout lines that start with one of ``prefixes``, shortened."""
        return [shorten(ln.rstrip(), width) for ln in self.stdout.splitlines()
                if ln.startswith(prefixes)]


def shorten(line: str, width: int = 150) -> str:
    """``line`` cut in the middle with " … " if it is longer than ``width``."""
    if len(line) <= width:
        return line
    keep = (width - 3) // 2
    return f"{line[:keep]} … {line[-keep:]}"


async def run_command(args: Sequence[str], *, cwd: Path | str,
                      env: Mapping[str, str] | None = None,
                      timeout: float = 30.0) -> Completed:
    """Run ``args`` in ``cwd`` with ``env`` added to this process's environment.

    The child is stopped (and ``CommandTimeout`` raised) after ``timeout``
    seconds, so a hanging test run cannot hang the notebook.
    """
    full_env = {**os.environ, **(env or {})}
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=str(cwd), env=full_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()  # our own child, by its handle
        await proc.wait()
        raise CommandTimeout(f"{args[0]} … ran longer than {timeout:.0f} s and was stopped"
                             ) from None
    return Completed(tuple(args), proc.returncode if proc.returncode is not None else -1,
                     out.decode(errors="replace"), err.decode(errors="replace"),
                     time.perf_counter() - start)
