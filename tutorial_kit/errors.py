"""The tutorial's own errors: one short paragraph in a notebook, never a traceback.

A bad setup (no CREATE privilege, a typo in DATABASE_URL, a schema that is not
the tutorial's, a missing pgbouncer binary, …) is the reader's to fix, not a bug
in their code, so the stack of helper frames above it would only hide the
sentence that names the fix. IPython asks an exception for
``_render_traceback_()`` before formatting a traceback, and shows the lines it
returns instead; outside IPython these are ordinary exceptions.

Every such problem, its message and its fix, is one entry in
``tutorial_kit.setup_problems``; the modules that find one raise their own
subclass of :class:`TutorialError` with that entry's message.
"""

from __future__ import annotations

import re


class TutorialError(RuntimeError):
    """A setup problem the reader can fix; the message says what and how."""

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows for this error: its type, then its message.

        One line per line of the message; the notebook wraps long ones, as it
        does any output.
        """
        first, *rest = str(self).splitlines() or [""]
        # ANSI red for the name, as IPython colours exception names.
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {first}", *rest]


def one_line(err: BaseException) -> str:
    """An error a lesson shows on purpose, as one line: its type, then its message's first line.

    SQLAlchemy starts a wrapped driver error's message with the driver's class in
    parentheses, and 2.0 adds asyncpg's class as ``<class '…'>: ``; both go, so the line
    reads the same on SQLAlchemy 2.0 and 2.1.
    """
    first = (str(err).splitlines() or [""])[0]
    message = re.sub(r"^\(\S+\) (<class '[^']+'>: )?", "", first)
    return f"{type(err).__name__}: {message}"
