"""The bot's database, whichever backend holds it: the interface every store codes against.

Two backends implement :class:`Database`: :class:`hark.store.sqlite.SQLiteDatabase`
(one file, one aiosqlite connection: the default) and
:class:`hark.store.postgres.PostgresDatabase` (an asyncpg pool, for several processes).
:func:`hark.store.open_database` picks one from the config.

SQL is written once, with ``?`` parameters, in the subset both dialects share
(``INSERT ... ON CONFLICT (...) DO UPDATE SET x = excluded.x`` works in both;
``INSERT OR REPLACE`` does not). Where the dialects differ (column types, full-text
search) a migration step or query names its :attr:`Database.dialect`.

Errors are :mod:`hark.store.errors` (re-exported here), never a driver's own.

Change notices: a store that caches rows (settings, plugin switches) calls
``tx.notify({...})`` in the transaction that changed them; every *other* process
on the same database gets the payload after the commit and updates its cache
(:meth:`Database.subscribe`). A payload of ``{"t": "*"}`` means "notices may have
been missed: reload everything". SQLite serves one process, so nothing is sent.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

from hark.plugin import MigrationStep
from hark.store.errors import DatabaseBusy, DatabaseError, DatabaseUnavailable
from hark.store.migrations import MIGRATIONS

__all__ = [
    "MIGRATIONS",
    "RELOAD",
    "Database",
    "DatabaseBusy",
    "DatabaseError",
    "DatabaseUnavailable",
    "Subscriber",
    "Transaction",
]

log = logging.getLogger(__name__)

#: The notice subscribers get when they may have missed others: reload everything.
RELOAD: dict[str, Any] = {"t": "*"}

Subscriber = Callable[[dict[str, Any]], Awaitable[None] | None]


class _Done:
    """An awaitable that is already complete (``await tx.notify(...)`` may be written)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # makes this a generator


_DONE = _Done()


class Transaction(abc.ABC):
    """Statements on one connection: inside :meth:`Database.transaction` they are
    committed together or not at all; inside :meth:`Database.reading` each stands alone."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []

    @abc.abstractmethod
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed (-1: not a row change)."""

    @abc.abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row a query returns, as tuples."""

    @abc.abstractmethod
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        """The first row a query returns, or None."""

    @abc.abstractmethod
    async def executescript(self, script: str) -> None:
        """Several statements without parameters (a migration step), in this transaction."""

    def notify(self, payload: dict[str, Any]) -> Awaitable[None]:
        """Tell the other processes on this database about a change, once this
        transaction commits (never if it rolls back). ``payload`` is a small JSON-able
        dict, e.g. ``{"t": "settings", "k": [namespace, scope, key]}``. Awaiting the
        result is allowed and not needed: the notice is sent with the commit."""
        self.notices.append(dict(payload))
        return _DONE


class Database(abc.ABC):
    """The bot's database. Open it before use; every method is safe to call from
    concurrent tasks."""

    #: ``"sqlite"`` or ``"postgresql"``: which SQL to write where the dialects differ.
    dialect: ClassVar[str]
    #: True when :meth:`reading` keeps this process's writers out while it is held
    #: (SQLite: one connection, one lock). Code that must see a row either in the
    #: table or in an in-memory queue, never both or neither, relies on it or brings
    #: a lock of its own.
    reads_exclude_writes: ClassVar[bool] = False

    def __init__(self, *, display_url: str, write_patience: float = 30.0) -> None:
        #: Where the database is, for messages: the URL with its password as ``***``.
        self.display_url = display_url
        #: Seconds a write waits for a lock another process holds before DatabaseBusy.
        self.write_patience = write_patience
        self._subscribers: list[Subscriber] = []
        self._inbox: collections.deque[dict[str, Any]] = collections.deque()
        self._dispatcher: asyncio.Task[None] | None = None

    # -- the backend's part --------------------------------------------------

    @abc.abstractmethod
    async def open(self, migrations: Iterable[MigrationStep] = (), *, migrate: bool = True) -> None:
        """Connect, then (``migrate``) apply the core's migrations and ``migrations``
        after them. Raises :class:`DatabaseUnavailable` when the database cannot be
        reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect (harmless when not open, or twice)."""

    @abc.abstractmethod
    def transaction(
        self, *, patience: float | None = None
    ) -> AbstractAsyncContextManager[Transaction]:
        """``async with db.transaction() as tx:`` statements committed together, or not
        at all. A lock held elsewhere is waited for up to ``patience`` seconds (default
        :attr:`write_patience`), then :class:`DatabaseBusy` is raised."""

    @abc.abstractmethod
    def reading(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with db.reading() as r:`` reads without a transaction."""

    @abc.abstractmethod
    def migrating(self) -> AbstractAsyncContextManager[None]:
        """Held while changing the schema, so processes starting together apply each
        step once (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE suffices)."""

    # -- shared ------------------------------------------------------------------

    async def execute(
        self, sql: str, params: Iterable[Any] = (), *, patience: float | None = None
    ) -> int:
        """One write statement in its own transaction; returns the rows it changed.
        ``patience`` is :meth:`transaction`'s."""
        async with self.transaction(patience=patience) as tx:
            return await tx.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """One statement per row of parameters, in one transaction."""
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.reading() as reader:
            return await reader.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        async with self.reading() as reader:
            return await reader.fetchone(sql, params)

    async def notify(self, payload: dict[str, Any]) -> None:
        """Send a change notice now (outside any other transaction)."""
        async with self.transaction() as tx:
            tx.notify(payload)

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(payload)`` for every change another process makes (sync or
        async; callbacks run one at a time, in order). ``{"t": "*"}``: reload all."""
        self._subscribers.append(callback)
        self._subscribed()

    def _subscribed(self) -> None:  # noqa: B027 (a hook: most backends need nothing)
        """A subscriber was added (the PostgreSQL backend starts listening)."""

    def _deliver(self, payload: dict[str, Any]) -> None:
        """Queue another process's notice for the subscribers."""
        if not self._subscribers:
            return
        self._inbox.append(payload)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name="hark-db-notices"
            )

    async def _dispatch(self) -> None:
        while self._inbox:
            batch = list(self._inbox)
            self._inbox.clear()
            # A reload covers every notice queued before it.
            reloads = [i for i, p in enumerate(batch) if p.get("t") == "*"]
            if reloads:
                batch = batch[reloads[-1] :]
            for payload in batch:
                for callback in list(self._subscribers):
                    try:
                        result = callback(payload)
                        if inspect.isawaitable(result):
                            await result
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        # The next reload (after a reconnect) repairs what this missed.
                        log.warning(
                            "could not apply a change from another process (%s): %s",
                            payload.get("t"),
                            exc,
                        )

    async def _stop_dispatch(self) -> None:
        self._inbox.clear()
        task, self._dispatcher = self._dispatcher, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def nothing() -> AsyncIterator[None]:
    """An async context manager that does nothing (SQLite's :meth:`Database.migrating`)."""
    yield
