"""A throwaway PostgreSQL cluster for the fleet's tests and benchmark (Debian's ``postgresql`` package).

``initdb`` into a fresh temporary directory, ``pg_ctl start`` on a free loopback port with its Unix
socket in that directory, ``stop`` (and the directory removed) at the end. PostgreSQL refuses to run
as root, so as root the cluster runs as the ``postgres`` user the Debian package creates (or the user
named). Authentication is ``trust`` on 127.0.0.1 only: a test cluster, never a deployment.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from offchain.errors import PlatformError, Reason

SUPERUSER = "cvm"


def postgres_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, or Debian's /usr/lib/postgresql/<major>/bin (newest)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


def postgres_available() -> bool:
    return postgres_bindir() is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """``with PostgresCluster() as pg: pg.url("db")``; ``restart()`` stops and starts it on the same port."""

    def __init__(self, *, run_as: str = "postgres") -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "PostgreSQL is not installed (scripts/setup installs it)")
        self._bin = bindir
        self._user = pwd.getpwnam(run_as) if os.geteuid() == 0 else None
        self.dir = Path(tempfile.mkdtemp(prefix="cvm-attest-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        if self._user is not None:
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-instructions")
        self.running = False

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(  # noqa: S603 (PostgreSQL's own tools, fixed arguments)
            [str(self._bin / tool), *args], capture_output=True, text=True, cwd=self.dir,
            user=self._user.pw_uid if self._user else None, group=self._user.pw_gid if self._user else None,
            check=False)
        if result.returncode != 0:
            raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"{tool} failed: {result.stderr.strip() or result.stdout}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200", "start")
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
