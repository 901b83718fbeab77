# JupyterHub for a class on ONE machine: every learner gets a JupyterLab of their
# own, all of them share one PostgreSQL, each learner works in their own schemas
# (tutorial_04_<learner>, from JUPYTERHUB_USER, which JupyterHub sets).
#
#   npm ci --prefix classroom/jupyterhub          # configurable-http-proxy, locally
#   TUTORIAL_CLASS_PASSWORD='a long class password' \
#       .venv/bin/jupyterhub -f classroom/jupyterhub/jupyterhub_config.py
#
# then learners open http://127.0.0.1:8000 and log in with any user name and the
# class password. See classroom/jupyterhub/README.md and docs/instructor-guide.md.
#
# !!! REPLACE THE AUTHENTICATION BEFORE A REAL CLASS !!!
# The shared password below is for a local test or a room on a private network:
# anyone with it can log in as ANY learner, and every learner's server runs as the
# hub's own OS user (SimpleLocalProcessSpawner: no isolation between learners).
# For a real class use your institution's login (OAuthenticator, LTI, …) and a
# spawner with isolation, e.g. Zero to JupyterHub (classroom/jupyterhub/values.yaml).
#
# Settings come from the environment so that the test (tests/test_hub.py) and a
# class can run the same file:
#   TUTORIAL_CLASS_PASSWORD   the shared password (>= 8 characters)
#   DATABASE_URL              the class database every learner's kernels use; when
#                             unset, the tutorial's own choice (compose, else the
#                             embedded server in .pgdata/) is made once, here
#   TUTORIAL_HUB_PORT         the public port (8000); TUTORIAL_HUB_API_PORT (8081) and
#                             TUTORIAL_PROXY_API_PORT (8001) for the internal ones
#   TUTORIAL_HUB_DIR          hub state and the learners' home folders
#                             (default: <temp dir>/tutorial-hub)
#   TUTORIAL_HUB_ADMIN_TOKEN  if set, a "class-admin" service with this API token may
#                             list learners and stop their servers (a culler or a test)
# ruff: noqa: F821  (`c` and `load_subconfig` are provided by JupyterHub)

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent  # the venv that runs the hub runs the learners too
STATE = Path(os.environ.get("TUTORIAL_HUB_DIR") or Path(tempfile.gettempdir()) / "tutorial-hub")
STATE.mkdir(parents=True, exist_ok=True)
LEARNERS = STATE / "learners"

# --- network: loopback only ------------------------------------------------------------
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("TUTORIAL_HUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("TUTORIAL_HUB_API_PORT", "8081"))
c.Spawner.ip = "127.0.0.1"

# --- the proxy: configurable-http-proxy from npm, installed in this folder -----------
proxy = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
if not proxy.exists():
    sys.exit(f"configurable-http-proxy is not installed: run  npm ci --prefix {HERE}")
c.ConfigurableHTTPProxy.command = [str(proxy)]
c.ConfigurableHTTPProxy.api_url = (
    f"http://127.0.0.1:{int(os.environ.get('TUTORIAL_PROXY_API_PORT', '8001'))}"
)
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")

# --- the hub's own state, out of the repo --------------------------------------------
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
# When the hub stops, every learner's server stops with it (the default, stated).
c.JupyterHub.cleanup_servers = True

# --- authentication: a shared class password. REPLACE IT (see the top of this file) ---
# SharedPasswordAuthenticator is JupyterHub's successor (5.3+) to DummyAuthenticator's
# deprecated `password` option: any user name, one password.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ.get(
    "TUTORIAL_CLASS_PASSWORD", "replace-this-class-password"
)
c.Authenticator.allow_all = True

admin_token = os.environ.get("TUTORIAL_HUB_ADMIN_TOKEN")
if admin_token:
    c.JupyterHub.services = [{"name": "class-admin", "api_token": admin_token}]
    c.JupyterHub.load_roles = [{
        "name": "class-admin",
        # What jupyterhub-idle-culler needs: find learners' servers, stop them.
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["class-admin"],
    }]

# --- each learner's server ------------------------------------------------------------
# SimpleLocalProcessSpawner runs every learner's JupyterLab as the hub's own OS user,
# with HOME = a folder of their own: no system accounts needed (CI runs as root).
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = str(LEARNERS / "{username}")
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab/tree/notebooks/00_start_here.ipynb"
c.Spawner.start_timeout = 120  # thirty learners logging in at 9:00 share the CPU
c.Spawner.http_timeout = 120
c.Spawner.args = [
    # No "get notified about Jupyter news?" question and no update check in class.
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
]
if os.geteuid() == 0:  # Jupyter refuses root unless told it is deliberate (CI, containers)
    c.Spawner.args.append("--allow-root")


def _class_database_url() -> str:
    """The one database every learner uses; decided once, when the hub starts."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    from tutorial_kit.database import find_database

    db = find_database()
    print(f"Class database for every learner: {db.describe()}", flush=True)
    return db.url


# --- kernels talk over Unix sockets, not TCP ports ------------------------------------
# Thirty learners pressing Run All start thirty kernels at once, each in its own
# single-user server. Over TCP each server picks "free" ports by itself (jupyter_client
# remembers the ports it handed out within one process only), so two servers can pick
# the same port, and the kernel that loses dies with "Address already in use"; its
# restarts then keep failing. Sockets in a folder per learner cannot collide. A socket
# path must fit in 107 bytes and a kernel's is <folder>/kernel-<36-character id>-ipc-<n>
# (50 bytes after the folder), so the folder takes at most 57: made fresh for each start
# of a learner's server (mkdtemp: a random name, mode 0700, never one someone else made)
# under the temp dir if its path is short (not macOS's), else /tmp.
c.Spawner.args.append("--KernelManager.transport=ipc")
KERNEL_SOCKETS = Path(tempfile.gettempdir() if len(tempfile.gettempdir()) <= 24 else "/tmp")
_socket_dirs: dict[str, str] = {}  # learner -> their server's socket folder, while it runs


def _kernel_socket_dir(spawner) -> str:
    """A fresh short folder of the learner's own for their kernels' sockets."""
    folder = tempfile.mkdtemp(prefix="tutorial-kernels-", dir=KERNEL_SOCKETS)
    _socket_dirs[spawner.user.name] = folder
    return folder


def remove_kernel_socket_dir(spawner) -> None:
    """When a learner's server stops, its kernels are gone: so is their socket folder."""
    folder = _socket_dirs.pop(spawner.user.name, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


c.Spawner.environment = {"DATABASE_URL": _class_database_url(),
                         "JUPYTER_RUNTIME_DIR": _kernel_socket_dir}
c.Spawner.post_stop_hook = remove_kernel_socket_dir

NEWS_OFF = '{"fetchNews": "false"}\n'


def copy_notebooks(spawner) -> None:
    """Give each learner a copy of notebooks/, so Run All never writes into the repo.

    A learner's copy is kept between logins (their work stays); a new learner
    gets a fresh one.
    """
    home = Path(spawner.home_dir)
    target = home / "notebooks"
    if not target.exists():
        shutil.copytree(REPO / "notebooks", target,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = home / ".jupyter/lab/user-settings/@jupyterlab/apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    news = settings / "notification.jupyterlab-settings"
    if not news.exists():
        news.write_text(NEWS_OFF)


c.Spawner.pre_spawn_hook = copy_notebooks
