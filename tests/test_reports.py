"""tutorial_kit.reports.captured: what loggers and warnings report stays in the block's lines."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

from tutorial_kit.reports import captured


def test_log_records_and_warnings_become_lines_not_stderr(capsys) -> None:
    log = logging.getLogger("tutorial.test.reports")
    with captured("tutorial.test") as reports:
        try:
            raise ValueError("first line\nsecond line")
        except ValueError:
            log.error("it failed\nwith details", exc_info=True)
        warnings.warn("watch out", RuntimeWarning, stacklevel=1)
        warnings.warn("watch out", RuntimeWarning, stacklevel=1)   # kept again: "always"
        assert reports == []                                        # filled at the end
    assert reports == [
        "tutorial.test.reports logged: it failed [ValueError: first line]",
        "RuntimeWarning: watch out",
        "RuntimeWarning: watch out",
    ]
    assert capsys.readouterr().err == ""
    assert log.parent is not None and log.parent.propagate   # restored
    assert not logging.getLogger("tutorial.test").handlers


def test_a_task_exception_never_retrieved_is_reported_inside_the_block(capsys) -> None:
    async def fails() -> None:
        raise RuntimeError("lost")

    async def fire_and_forget() -> None:
        asyncio.get_running_loop().create_task(fails())   # no reference kept: the point
        await asyncio.sleep(0.01)

    with captured("asyncio") as reports:
        asyncio.run(fire_and_forget())
    gc.collect()
    assert reports == ["asyncio logged: Task exception was never retrieved "
                       "[RuntimeError: lost]"]
    assert capsys.readouterr().err == ""
