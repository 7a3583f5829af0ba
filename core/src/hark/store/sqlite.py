"""The default backend: one SQLite file, one aiosqlite connection.

Every statement goes through one asyncio lock. aiosqlite runs calls on one thread,
but two tasks that interleave ``execute``/``commit`` on the shared connection step
on each other's statements (``sqlite3.InterfaceError: bad parameter or other API
misuse``) and lose writes. A write that meets another process's lock is retried
with backoff for ``write_patience`` seconds (30 by default) before
:class:`DatabaseBusy` is raised; history waits for as long as it takes (see
:mod:`hark.chat.history`). WAL keeps readers and the writer out of each other's way.
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
from typing import Any, NoReturn

import aiosqlite

from hark.plugin import MigrationStep
from hark.store.database import Database, Transaction, nothing
from hark.store.errors import DatabaseBusy, DatabaseError, DatabaseUnavailable, one_line
from hark.store.migrations import MIGRATIONS, SQLITE, sql_for

log = logging.getLogger(__name__)

# SQLite waits this long for another connection's lock before SQLITE_BUSY. Short on
# purpose: the waiting happens in transaction()'s backoff, which does not hold this
# process's lock, so reads (WAL) go on while another process holds the write lock.
BUSY_TIMEOUT_MS = 250

# Errors in the statement itself: trying again cannot help.
_PERMANENT = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    sqlite3.NotSupportedError,
)


def is_busy(exc: BaseException) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def translate(exc: BaseException) -> DatabaseError:
    """The store's error for a sqlite3/aiosqlite one."""
    if isinstance(exc, DatabaseError):
        return exc
    if is_busy(exc):
        return DatabaseBusy(0.0, "the database is locked by another process")
    if isinstance(exc, ValueError):  # aiosqlite: the connection was closed under us
        return DatabaseError(f"the database connection is closed ({one_line(exc)})")
    # SQLITE_ERROR: the SQL itself (a syntax error, no such table or column); I/O
    # errors, a full disk or a read-only file have codes of their own and may pass.
    code = getattr(exc, "sqlite_errorcode", None)
    wrong_sql = code is not None and code & 0xFF == sqlite3.SQLITE_ERROR
    return DatabaseError(one_line(exc), permanent=wrong_sql or isinstance(exc, _PERMANENT))


def _raise(exc: BaseException) -> NoReturn:
    raise translate(exc) from exc


def split_statements(script: str) -> list[str]:
    """``script`` as single statements. SQLite's own completeness test decides where
    one ends, so a ``;`` inside a string literal or a ``CREATE TRIGGER ... END`` body
    does not split it."""
    statements: list[str] = []
    buffer = ""
    pieces = script.split(";")
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        buffer += piece if last else piece + ";"
        # The last piece has no ";" of its own: a statement may still end there.
        if last or sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    # A piece of only comments (or only ";") is no statement.
    return [s for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    lines = [line.split("--", 1)[0] for line in statement.splitlines()]
    return bool("".join(lines).strip(" \t;"))


class SQLiteTransaction(Transaction):
    """Statements on the one connection, under the database's lock."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__()
        self._conn = conn

    # Each aiosqlite call is a round trip to its thread. A write's cursor holds no open
    # statement once it ran, so it is left to be freed rather than closed (one trip
    # instead of two), and reads fetch with their execute (execute_fetchall).

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        try:
            cursor = await self._conn.execute(sql, tuple(params))
        except (sqlite3.Error, ValueError) as exc:
            _raise(exc)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, [tuple(r) for r in rows])
        except (sqlite3.Error, ValueError) as exc:
            _raise(exc)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            rows = await self._conn.execute_fetchall(sql, tuple(params))
        except (sqlite3.Error, ValueError) as exc:
            _raise(exc)
        return [tuple(row) for row in rows]

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        try:
            async with self._conn.execute(sql, tuple(params)) as cur:
                row = await cur.fetchone()
        except (sqlite3.Error, ValueError) as exc:
            _raise(exc)
        return tuple(row) if row is not None else None

    async def executescript(self, script: str) -> None:
        # Not aiosqlite's executescript, which commits first: one statement at a time.
        for statement in split_statements(script):
            await self.execute(statement)


class SQLiteDatabase(Database):
    """The bot's SQLite file (``data_dir/hark.sqlite3`` by default)."""

    dialect = SQLITE
    reads_exclude_writes = True

    def __init__(self, path: str | Path, *, write_patience: float = 30.0) -> None:
        super().__init__(display_url=f"sqlite:///{path}", write_patience=write_patience)
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def conn(self) -> aiosqlite.Connection:
        """The raw connection. Use the methods instead: they hold the lock."""
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self, migrations: Iterable[MigrationStep] = (), *, migrate: bool = True) -> None:
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit: transactions are explicit (BEGIN IMMEDIATE in transaction()).
            self._conn = await aiosqlite.connect(self.path, isolation_level=None)
            # WAL keeps readers (e.g. `bot plugins` while the bot runs) from blocking writers.
            await self._conn.execute("PRAGMA journal_mode=WAL")
            await self._conn.execute("PRAGMA foreign_keys=ON")
            await self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            if is_busy(exc):
                raise translate(exc) from exc
            raise DatabaseUnavailable(self.display_url, one_line(exc)) from exc
        if migrate:
            await self.migrate([*MIGRATIONS, *migrations])

    async def migrate(self, migrations: Sequence[MigrationStep]) -> None:
        """Apply the steps past ``PRAGMA user_version``, each in its own transaction."""
        async with self._lock:
            async with self.conn.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            done = row[0] if row else 0
            for number, step in enumerate(migrations[done:], start=done + 1):
                script = sql_for(step, SQLITE)
                if script is None:
                    raise DatabaseError(f"migration {number} has no SQL for sqlite", permanent=True)
                log.info("applying database migration %d", number)
                try:
                    await self.conn.executescript(
                        f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
                    )
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error, ValueError):
                        if self.conn.in_transaction:
                            await self.conn.execute("ROLLBACK")
                    _raise(exc)

    async def close(self) -> None:
        await self._stop_dispatch()
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await conn.close()

    def migrating(self) -> contextlib.AbstractAsyncContextManager[None]:
        # Each step runs in BEGIN IMMEDIATE, which already serialises processes.
        return nothing()

    @contextlib.asynccontextmanager
    async def transaction(
        self, *, patience: float | None = None
    ) -> AsyncIterator[SQLiteTransaction]:
        """The write lock is taken up front (BEGIN IMMEDIATE), so a busy database
        fails before any statement ran; that is retried with backoff for ``patience``
        seconds (default ``write_patience``), then :class:`DatabaseBusy` is raised.

        The body may run more than once only up to BEGIN, never past a statement.
        """
        async with self._locked(patience, "BEGIN IMMEDIATE"):
            tx = SQLiteTransaction(self.conn)
            try:
                yield tx
            except BaseException:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await self.conn.execute("ROLLBACK")
                raise
            try:
                await self._commit()
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error | ValueError):
                    _raise(exc)
                raise

    async def execute(
        self, sql: str, params: Iterable[Any] = (), *, patience: float | None = None
    ) -> int:
        """One write statement: in SQLite a statement outside BEGIN is its own
        transaction (autocommit), so it takes one trip to aiosqlite's thread, not three
        (BEGIN, the statement, COMMIT). Busy is retried as :meth:`transaction` does."""
        async with self._locked(patience, sql, tuple(params)) as rowcount:
            return rowcount

    @contextlib.asynccontextmanager
    async def _locked(
        self, patience: float | None, sql: str, params: tuple[Any, ...] = ()
    ) -> AsyncIterator[int]:
        """Run ``sql`` (BEGIN IMMEDIATE, or one autocommit statement) under this
        process's lock, retrying while another process holds the write lock; yields
        its row count with the lock still held."""
        waited_since = time.monotonic()
        limit = self.write_patience if patience is None else patience
        attempt = 0
        while True:
            await self._lock.acquire()
            try:
                if self.conn.in_transaction:
                    # Left open by a task cancelled while its BEGIN was already running.
                    await self.conn.execute("ROLLBACK")
                cursor = await self.conn.execute(sql, params)
            except sqlite3.OperationalError as exc:
                self._lock.release()
                if not is_busy(exc):
                    _raise(exc)
                attempt += 1
                waited = time.monotonic() - waited_since
                if waited >= limit:
                    raise DatabaseBusy(waited) from None
                # The other holder may need a while: back off without holding our lock,
                # so reads (WAL) and other work carry on meanwhile.
                delay = min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)
                await asyncio.sleep(min(delay, max(0.0, limit - waited)))
                continue
            except (sqlite3.Error, ValueError) as exc:
                self._lock.release()
                _raise(exc)
            except BaseException:
                self._lock.release()
                raise
            break
        try:
            yield cursor.rowcount
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

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[SQLiteTransaction]:
        """Reads under the lock, without a transaction. Holding it also keeps writers
        of this process out while the caller looks at in-memory state that must agree
        with what it read."""
        async with self._lock:
            yield SQLiteTransaction(self.conn)

    async def notify(self, payload: dict[str, Any]) -> None:
        """One process per SQLite file: nobody else to tell."""

    def __repr__(self) -> str:
        return f"SQLiteDatabase({str(self.path)!r})"
