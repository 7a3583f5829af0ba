"""The bot's SQLite database: one aiosqlite connection and ordered migrations.

Features add tables by appending to ``MIGRATIONS`` (never editing an applied
one); ``PRAGMA user_version`` records how many have run.

Every statement goes through one asyncio lock. aiosqlite runs calls on one
thread, but two tasks that interleave ``execute``/``commit`` on the shared
connection step on each other's statements (``sqlite3.InterfaceError: bad
parameter or other API misuse``) and lose writes. A write that meets another
process's lock is retried with backoff for ``write_patience`` seconds (30 by
default) before :class:`DatabaseBusy` is raised; history waits for as long as it
takes (see :mod:`hark.chat.history`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # 1: per-server plugin switches and provider choices (guild_id 0 = owner-set global default)
    """
    CREATE TABLE plugin_state (
        guild_id INTEGER NOT NULL,
        plugin_id TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        PRIMARY KEY (guild_id, plugin_id)
    );
    CREATE TABLE provider_choice (
        guild_id INTEGER NOT NULL,
        capability TEXT NOT NULL,
        provider_id TEXT NOT NULL,
        PRIMARY KEY (guild_id, capability)
    );
    CREATE TABLE settings (
        namespace TEXT NOT NULL,
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (namespace, scope, key)
    );
    """,
    # 2: per-channel conversation history (text and voice turns)
    """
    CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id INTEGER NOT NULL,
        guild_id INTEGER,
        role TEXT NOT NULL,
        author_id INTEGER,
        author_name TEXT,
        content TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX history_by_channel ON history (channel_id, id);
    """,
    # 3: replies being streamed (posted with a "still writing" marker), so a restart
    # after a crash can mark the ones left unfinished as cut off
    """
    CREATE TABLE inflight_reply (
        message_id INTEGER PRIMARY KEY,
        channel_id INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 4: what each running process reports about its plugins (hark.store.status)
    """
    CREATE TABLE runtime_status (
        process TEXT NOT NULL,
        plugin_id TEXT NOT NULL,
        line TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (process, plugin_id)
    );
    """,
    # 5: how many of each plugin's own migrations (hark.Plugin(migrations=...)) ran
    """
    CREATE TABLE plugin_schema (
        plugin_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    );
    """,
]

# SQLite waits this long for another connection's lock before SQLITE_BUSY. Short on
# purpose: the waiting happens in transaction()'s backoff, which does not hold this
# process's lock, so reads (WAL) go on while another process holds the write lock.
BUSY_TIMEOUT_MS = 250


class DatabaseBusy(Exception):
    """Another process held the database longer than we were willing to wait."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"the database stayed locked for {waited:.0f}s; try again shortly")
        self.waited = waited


def is_busy(exc: BaseException) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


class Transaction:
    """Statements inside :meth:`Database.transaction` (the lock is held throughout)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        async with self._conn.execute(sql, tuple(params)) as cur:
            return cur.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._conn.executemany(sql, [tuple(r) for r in rows]):
            pass

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn.execute(sql, tuple(params)) as cur:
            return [tuple(row) for row in await cur.fetchall()]

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        async with self._conn.execute(sql, tuple(params)) as cur:
            row = await cur.fetchone()
        return tuple(row) if row is not None else None


class Database:
    def __init__(self, path: str | Path, *, write_patience: float = 30.0) -> None:
        self.path = Path(path)
        self.write_patience = write_patience
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def conn(self) -> aiosqlite.Connection:
        """The raw connection. Use the methods below instead: they hold the lock."""
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self, migrations: Iterable[str] = ()) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: transactions are explicit (BEGIN IMMEDIATE in transaction()).
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        # WAL keeps readers (e.g. `bot plugins` while the bot runs) from blocking writers.
        await self._conn.execute("PRAGMA journal_mode=WAL")
        await self._conn.execute("PRAGMA foreign_keys=ON")
        await self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await self.migrate([*MIGRATIONS, *migrations])

    async def migrate(self, migrations: list[str]) -> None:
        async with self._lock:
            async with self.conn.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            done = row[0] if row else 0
            for number, script in enumerate(migrations[done:], start=done + 1):
                log.info("applying database migration %d", number)
                await self.conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
                )

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    @contextlib.asynccontextmanager
    async def transaction(self, *, patience: float | None = None) -> AsyncIterator[Transaction]:
        """``async with db.transaction() as tx:`` statements committed together, or not
        at all. The write lock is taken up front (BEGIN IMMEDIATE), so a busy database
        fails before any statement ran; that is retried with backoff for ``patience``
        seconds (default ``write_patience``), then :class:`DatabaseBusy` is raised.

        The body may run more than once only up to BEGIN, never past a statement.
        """
        async with self._locked_begin(patience):
            tx = Transaction(self.conn)
            try:
                yield tx
            except BaseException:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await self.conn.execute("ROLLBACK")
                raise
            try:
                await self._commit()
            except BaseException:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await self.conn.execute("ROLLBACK")
                raise

    @contextlib.asynccontextmanager
    async def _locked_begin(self, patience: float | None) -> AsyncIterator[None]:
        waited_since = time.monotonic()
        limit = self.write_patience if patience is None else patience
        attempt = 0
        while True:
            await self._lock.acquire()
            try:
                if self.conn.in_transaction:
                    # Left open by a task cancelled while its BEGIN was already running.
                    await self.conn.execute("ROLLBACK")
                await self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                self._lock.release()
                if not is_busy(exc):
                    raise
                attempt += 1
                waited = time.monotonic() - waited_since
                if waited >= limit:
                    raise DatabaseBusy(waited) from None
                # The other holder may need a while: back off without holding our lock,
                # so reads (WAL) and other work carry on meanwhile.
                delay = min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)
                await asyncio.sleep(min(delay, max(0.0, limit - waited)))
                continue
            except BaseException:
                self._lock.release()
                raise
            break
        try:
            yield
        finally:
            self._lock.release()

    async def _commit(self) -> None:
        # With BEGIN IMMEDIATE held, COMMIT can still be busy in WAL only while a
        # checkpoint runs; it may be retried as is (the transaction stays open).
        for attempt in range(1, 6):
            try:
                await self.conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or attempt == 5:
                    raise
                await asyncio.sleep(0.05 * attempt)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One write statement in its own transaction; returns the rows it changed."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Transaction]:
        """Reads under the lock, without a transaction: ``async with db.reading() as r``.
        Holding it also keeps writers of this process out while the caller looks at
        in-memory state that must agree with what it read."""
        async with self._lock:
            yield Transaction(self.conn)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.reading() as reader:
            return await reader.fetchall(sql, params)
