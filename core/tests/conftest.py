"""Fixtures shared by the core's tests: the store on each of its backends.

A test that takes ``database``, ``db_factory`` or ``database_url`` runs twice, on
SQLite (a file in ``tmp_path``) and on PostgreSQL (a fresh database on the session's
throwaway server, ``postgres_url`` from ``hark.testing``):

- ``store_backend``: ``"sqlite"`` or ``"postgresql"``.
- ``database_url``: where the test's database is (``sqlite:////...`` or ``postgresql://...``).
- ``db_factory``: ``await db_factory()`` opens a :class:`~hark.store.Database` on it
  (again: another object on the same data, as a restart or a second process would);
  ``db_factory(write_patience=0.3, open=False)``. All are closed after the test.
- ``database``: one such database, open.
- ``hold_lock``: ``lock = await hold_lock(database_url)``: another connection holds
  the write lock (SQLite: BEGIN IMMEDIATE on the file; PostgreSQL: LOCK TABLE ... IN
  EXCLUSIVE MODE on the core's tables, which lets reads through) until ``await
  lock.release()``, as another process (a backup, `bot db`, a long migration) would.
- ``tcp_proxy``: ``proxy = await tcp_proxy(port)``: a TCP forwarder to a local port
  that the test can :meth:`~TcpProxy.cut` (every connection dropped, new ones
  refused) and :meth:`~TcpProxy.restore`, to lose the PostgreSQL server mid-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from hark.config import sqlite_path
from hark.store import Database, database_for_url

BACKENDS = ("sqlite", "postgresql")
# Tables the bot writes: what hold_lock locks in PostgreSQL.
CORE_TABLES = ("history", "settings", "plugin_state", "provider_choice", "inflight_reply")


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(store_backend: str, tmp_path, request: pytest.FixtureRequest) -> str:
    if store_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'hark.sqlite3'}"
    # Only PostgreSQL tests start the session's server.
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def db_factory(database_url: str) -> AsyncIterator[Callable[..., Awaitable[Database]]]:
    made: list[Database] = []

    async def factory(*, write_patience: float | None = None, open: bool = True) -> Database:
        db = database_for_url(database_url, write_patience=write_patience)
        made.append(db)
        if open:
            await db.open()
        return db

    yield factory
    for db in reversed(made):
        await db.close()


@pytest.fixture
async def database(db_factory) -> Database:
    return await db_factory()


class HeldLock:
    """Another connection holding the database's write lock until :meth:`release`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None

    async def hold(self, tables: tuple[str, ...]) -> HeldLock:
        path = sqlite_path(self.url)
        if path is not None:
            self._sqlite = sqlite3.connect(path, isolation_level=None, timeout=0)
            self._sqlite.execute("BEGIN IMMEDIATE")
            return self
        import asyncpg

        self._pg = await asyncpg.connect(self.url)
        await self._pg.execute("BEGIN")
        await self._pg.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
        return self

    async def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("COMMIT")
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            await self._pg.execute("COMMIT")
            await self._pg.close()
            self._pg = None


@pytest.fixture
async def hold_lock() -> AsyncIterator[Callable[..., Awaitable[HeldLock]]]:
    held: list[HeldLock] = []

    async def hold(url: str, *tables: str) -> HeldLock:
        lock = await HeldLock(url).hold(tables or CORE_TABLES)
        held.append(lock)
        return lock

    yield hold
    for lock in held:
        with contextlib.suppress(Exception):
            await lock.release()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; :meth:`cut` drops every
    connection and refuses new ones (the server "gone"), :meth:`restore` listens again
    on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    def url(self, url: str) -> str:
        """``url`` (a PostgreSQL URL on the target port) through this proxy."""
        parts = urlsplit(url)
        netloc = parts.netloc.replace(f":{self.target_port}", f":{self.port}")
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._pipes.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._pipes.discard(dst)
            dst.transport.abort()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for pipe in list(self._pipes):
            pipe.transport.abort()
        self._pipes.clear()
        await asyncio.sleep(0.05)  # let both ends see the connections drop

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[Callable[[int], Awaitable[TcpProxy]]]:
    made: list[TcpProxy] = []

    async def proxy(target_port: int) -> TcpProxy:
        made.append(await TcpProxy(target_port).start())
        return made[-1]

    yield proxy
    for proxy_ in made:
        await proxy_.close()
