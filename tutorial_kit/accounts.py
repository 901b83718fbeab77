"""System users for the processes that refuse to run as root (PostgreSQL, PgBouncer).

As root (containers, CI) the tutorial runs such a process as an unprivileged
user, created here if missing. Scripts that imitate Binder use the same
function for their ``jovyan``.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shlex
import subprocess
import time

from tutorial_kit import setup_problems as problems
from tutorial_kit.errors import TutorialError

#: Locked (``flock``) while this module creates a user: the folder of the user database,
#: which ``useradd`` never replaces (it replaces ``/etc/passwd`` itself).
USER_DB_DIR = "/etc"
#: ``useradd`` fails with "cannot lock /etc/passwd" while another program edits the users;
#: only that failure is tried again, this many times in all, waiting longer each time.
USERADD_ATTEMPTS = 6
#: useradd's words for that lock conflict (shadow-utils: "cannot lock /etc/passwd; try
#: again later", and the same for /etc/group, /etc/shadow, /etc/gshadow).
_LOCKED = "cannot lock "


class AccountError(TutorialError):
    """A system user the tutorial needs could not be created; the message says why."""


def ensure_user(name: str, *, system: bool = True, shell: str = "/usr/sbin/nologin",
                uid: int | None = None) -> pwd.struct_passwd:
    """The passwd entry of ``name``, after creating the user (no home) if it is missing.

    Creating needs root; an existing user is returned as it is, never changed.
    Processes that create the same user at the same moment (kernels starting the
    embedded server together) take turns: ``useradd`` checks that the name is free
    before it locks the user database, so two at once would both succeed and the
    second would rewrite the entry with another UID (shadow-utils 4.13 does),
    after the first had given a folder to the first UID. Any other failure is an
    :class:`AccountError` quoting useradd.
    """
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    cmd = ["useradd", "--no-create-home", "--user-group", "--shell", shell]
    if system:
        cmd.append("--system")
    if uid is not None:
        cmd += ["--uid", str(uid)]
    cmd.append(name)
    fd = os.open(USER_DB_DIR, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one creator at a time; closing the fd releases it
        for attempt in range(USERADD_ATTEMPTS):
            try:
                return pwd.getpwnam(name)  # made by whoever had the lock before us
            except KeyError:
                pass
            try:
                made = subprocess.run(cmd, check=False, capture_output=True, text=True)
            except OSError as err:  # no useradd at all (not a Linux with shadow-utils)
                raise _not_created(name, cmd, str(err)) from None
            if made.returncode == 0 or _LOCKED not in made.stderr:
                break
            if attempt < USERADD_ATTEMPTS - 1:
                time.sleep(0.1 * 2**attempt)  # another program holds the user database's lock
        try:
            return pwd.getpwnam(name)
        except KeyError:
            said = " ".join(made.stderr.split()) or f"exit status {made.returncode}"
            raise _not_created(name, cmd, said[:300]) from None
    finally:
        os.close(fd)


def _not_created(name: str, cmd: list[str], said: str) -> AccountError:
    return AccountError(problems.USERADD_FAILED.message(user=name, said=said,
                                                        command=shlex.join(cmd)))
