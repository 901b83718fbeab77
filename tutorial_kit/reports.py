"""What loggers and the warnings module report inside a block, kept as lines instead of stderr.

Some failures are only ever *reported*, never raised: asyncio logs "Task exception was
never retrieved" when a failed task is freed, SQLAlchemy's pool logs "Exception closing
connection" and warns when the garbage collector finds a connection nobody returned. By
default those lines go to stderr, at whatever moment the object is freed. A lesson that
shows them on purpose keeps them with :func:`captured` and prints them as output; a check
keeps them to judge an answer by them.

    with captured("asyncio", "sqlalchemy.pool") as reports:
        ...
    print("\\n".join(reports))      # filled when the block ends

Each log record becomes ``"<logger> logged: <first line of the message> [<error>]"``
(the error on one line, as :func:`tutorial_kit.errors.one_line` writes it), each warning
``"<Category>: <message>"``. The garbage collector runs before the block ends, so what is
reported only when an object is freed is reported inside it. Log records and warnings hold
their sources (a traceback's frames, the coroutine that was never awaited, and through them
sockets): both are dropped, and the garbage collected again, before the block ends, so
nothing they held is freed, and reported, later, outside the block.
"""

from __future__ import annotations

import gc
import logging
import logging.handlers
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from tutorial_kit.errors import one_line

#: Longest message kept per line: the start of a message says what happened.
WIDTH = 150
#: Collections at most, at the end of a block: freeing what one report held can report more.
_ROUNDS = 4


def _line(record: logging.LogRecord) -> str:
    message = (record.getMessage().splitlines() or [""])[0][:WIDTH]
    err = record.exc_info[1] if record.exc_info else None
    return f"{record.name} logged: {message}" + (f" [{one_line(err)}]" if err else "")


@contextmanager
def captured(*loggers: str) -> Iterator[list[str]]:
    """Keep what ``loggers`` (and their children) and the warnings module report in the block.

    Yields a list that is filled, one line per report, when the block ends. The loggers
    do not pass the records on (so nothing reaches stderr), and every warning is kept,
    also one that a filter would show only once.
    """
    handler = logging.handlers.BufferingHandler(capacity=10_000)
    saved = [(logger, logger.propagate) for logger in map(logging.getLogger, loggers)]
    for logger, _ in saved:
        logger.addHandler(handler)
        logger.propagate = False
    lines: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield lines
            finally:
                # Collect, keep what that reported, drop it (records hold tracebacks, a
                # warning its source), and again, until a collection reports nothing new.
                for _ in range(_ROUNDS):
                    gc.collect()
                    found = [_line(record) for record in handler.buffer]
                    found += [f"{w.category.__name__}: {str(w.message)[:WIDTH]}"
                              for w in caught]
                    handler.flush()
                    caught.clear()
                    if not found:
                        break
                    lines += found
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
