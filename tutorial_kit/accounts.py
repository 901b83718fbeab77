"""System users for the processes that refuse to run as root (PostgreSQL, PgBouncer).

As root (containers, CI) the tutorial runs such a process as an unprivileged
user, created here if missing. Scripts that imitate Binder use the same
function for their ``jovyan``.
"""

from __future__ import annotations

import pwd
import subprocess


def ensure_user(name: str, *, system: bool = True, shell: str = "/usr/sbin/nologin",
                uid: int | None = None) -> pwd.struct_passwd:
    """The passwd entry of ``name``, after creating the user (no home) if it is missing.

    Creating needs root; an existing user is returned as it is, never changed.
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
    subprocess.run([*cmd, name], check=True, capture_output=True)
    return pwd.getpwnam(name)
