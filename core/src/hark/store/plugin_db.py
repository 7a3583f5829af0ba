"""Plugins' own tables in the bot's database: their migrations and their queries.

A plugin declares its schema as ordered steps (``hark.Plugin(migrations=[...])``),
each SQL for both dialects or ``{"sqlite": ..., "postgresql": ...}``;
:func:`apply_plugin_migrations` runs the ones not yet applied when the bot opens its
database, each in one transaction with the step's number recorded in
``plugin_schema``, so a step that fails leaves nothing behind and is tried again at
the next start. Processes starting together take the migration lock
(:meth:`Database.migrating`), so each step runs once. The plugin then reaches its
tables through :class:`BotPluginDatabase` (``host.database(plugin_id)``, which
implements the :class:`hark.api.PluginDatabase` protocol) on either backend, its
``dialect`` telling which.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from hark.plugin import MigrationStep
from hark.store.database import Database, Transaction
from hark.store.errors import DatabaseError, one_line
from hark.store.migrations import SQLITE, sql_for
from hark.store.sqlite import split_statements

__all__ = [
    "SQLITE",
    "BotPluginDatabase",
    "PluginMigrationError",
    "apply_plugin_migrations",
    "schema_version",
    "split_statements",
    "sql_for",
]

# hark.api.Row; not imported from there, which would make a cycle (hark.api reaches the
# store through hark.providers).
Row = tuple[Any, ...]


class PluginMigrationError(Exception):
    """A plugin's migration could not be applied; the plugin is not loaded."""

    def __init__(self, plugin_id: str, number: int | None, reason: str) -> None:
        where = f"migration {number}" if number is not None else "its migrations"
        super().__init__(f"database {where} failed: {reason}")
        self.plugin_id = plugin_id
        self.number = number


_VERSION = "SELECT version FROM plugin_schema WHERE plugin_id = ?"


async def schema_version(db: Database, plugin_id: str) -> int:
    """How many of ``plugin_id``'s migrations were applied (0: none yet)."""
    row = await db.fetchone(_VERSION, (plugin_id,))
    return int(row[0]) if row else 0


async def apply_plugin_migrations(
    db: Database, plugin_id: str, steps: Sequence[MigrationStep], *, dialect: str | None = None
) -> int:
    """Apply the steps of ``plugin_id`` not applied yet, in order; returns how many ran.

    Raises :class:`PluginMigrationError` naming the step when one fails (it is rolled
    back; the ones before it stay), has no SQL for the dialect (``db.dialect`` unless
    given), or when the database has more steps applied than the plugin declares (an
    older version of it).
    """
    dialect = dialect or db.dialect
    applied = 0
    try:
        async with db.migrating():
            done = await schema_version(db, plugin_id)
            if done > len(steps):
                raise PluginMigrationError(
                    plugin_id,
                    None,
                    f"the database has {done} of its migrations applied but this version "
                    f"declares {len(steps)} (a downgrade?)",
                )
            for number, step in enumerate(steps[done:], start=done + 1):
                script = sql_for(step, dialect)
                if script is None:
                    raise PluginMigrationError(plugin_id, number, f"it has no SQL for {dialect}")
                try:
                    async with db.transaction() as tx:
                        # Again inside the step's transaction: another process (on a
                        # SQLite file) may have applied it meanwhile.
                        row = await tx.fetchone(_VERSION, (plugin_id,))
                        if row is not None and int(row[0]) >= number:
                            continue
                        await tx.executescript(script)
                        await tx.execute(
                            "INSERT INTO plugin_schema (plugin_id, version) VALUES (?, ?)"
                            " ON CONFLICT (plugin_id) DO UPDATE SET version = excluded.version",
                            (plugin_id, number),
                        )
                except DatabaseError as exc:
                    raise PluginMigrationError(plugin_id, number, one_line(exc, 200)) from exc
                applied += 1
    except DatabaseError as exc:  # the lock or the version could not be read
        raise PluginMigrationError(plugin_id, None, one_line(exc, 200)) from exc
    return applied


class BotPluginDatabase:
    """:class:`hark.api.PluginDatabase` over the bot's :class:`Database`, either backend."""

    def __init__(self, db: Database, plugin_id: str) -> None:
        self._db = db
        self._plugin_id = plugin_id

    @property
    def dialect(self) -> str:
        return self._db.dialect

    @property
    def plugin_id(self) -> str:
        return self._plugin_id

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        return await self._db.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._db.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return await self._db.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        return await self._db.fetchone(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._db.transaction() as tx:
            yield tx

    def __repr__(self) -> str:
        return f"BotPluginDatabase({self._plugin_id!r}, {self._db.display_url})"
