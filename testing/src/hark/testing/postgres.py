"""A throwaway PostgreSQL server for tests: ``initdb`` and ``pg_ctl`` in a temporary
folder, on a free loopback port, with no system service involved.

The server binaries come from Debian's ``postgresql`` package (``scripts/test``
installs it). PostgreSQL refuses to run as root, so under root the cluster is made
and run as the ``postgres`` user that package creates (``runuser``).

``PostgresCluster`` is one server; each test gets a database of its own on it
(``await cluster.create_database()``), so one start serves a whole session. The
pytest fixtures ``postgres_cluster`` (session) and ``postgres_url`` (per test)
wrap it.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "hark"
_BINARIES = ("initdb", "pg_ctl")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed (or would not start)."""


def find_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: Debian's newest ``/usr/lib/postgresql/N/bin``
    first (its ``initdb`` is not on PATH), then PATH."""
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
        "apt-get install postgresql (scripts/test does this)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresCluster:
    """One PostgreSQL server in ``base`` (a temporary folder when None)."""

    def __init__(self, base: str | Path | None = None) -> None:
        self._own_base = base is None
        self.base = Path(base) if base is not None else Path(tempfile.mkdtemp(prefix="hark-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.log = self.base / "server.log"
        self.port = 0
        self.bindir: Path | None = None
        self._names = itertools.count(1)
        self._running = False

    # -- server ------------------------------------------------------------

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self.bindir = find_bindir()
        self.sockets.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sockets, "postgres")
            os.chmod(self.base, 0o755)
        done = self._run(
            "initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
        self.port = _free_port()
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.sockets}",
                # A test server: durability is not what is being tested.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        done = self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60",
            "start",
        )  # fmt: skip
        if done.returncode != 0:
            tail = self.log.read_text()[-800:] if self.log.exists() else done.stderr
            raise PostgresUnavailable(f"pg_ctl start failed: {tail.strip()}")
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._running = False
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """A ``postgresql://`` URL for ``database`` on this server (trust auth: any
        password is accepted, so tests can check that one is never shown)."""
        auth = USER if password is None else f"{USER}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    async def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        import asyncpg

        name = name or f"test_{os.getpid()}_{next(self._names)}"
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    async def drop_database(self, name: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
