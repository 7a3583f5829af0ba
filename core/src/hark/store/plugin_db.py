"""Plugins' own tables in the bot's database: their migrations and their queries.

A plugin declares its schema as ordered steps (``hark.Plugin(migrations=[...])``);
:func:`apply_plugin_migrations` runs the ones not yet applied when the bot opens
its database, each in one transaction with the step's number recorded in
``plugin_schema``, so a step that fails leaves nothing behind and is tried again at
the next start. The plugin then reaches its tables through
:class:`SQLitePluginDatabase` (``host.database(plugin_id)``, which implements
the :class:`hark.api.PluginDatabase` protocol), which goes through :class:`Database`'s lock and
its busy-retrying transactions like the core's own stores.

Only SQLite exists today; the dialect is part of the interface so that the
PostgreSQL store (issue 16) can implement the same protocol.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from hark.plugin import MigrationStep
from hark.store.database import Database, Transaction

SQLITE = "sqlite"
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


def sql_for(step: MigrationStep, dialect: str) -> str | None:
    """The SQL of one step in ``dialect`` (None when the step has none for it)."""
    if isinstance(step, str):
        return step
    return step.get(dialect) if isinstance(step, Mapping) else None


async def schema_version(db: Database, plugin_id: str) -> int:
    """How many of ``plugin_id``'s migrations were applied (0: none yet)."""
    rows = await db.fetchall("SELECT version FROM plugin_schema WHERE plugin_id = ?", (plugin_id,))
    return int(rows[0][0]) if rows else 0


async def apply_plugin_migrations(
    db: Database, plugin_id: str, steps: Sequence[MigrationStep], *, dialect: str = SQLITE
) -> int:
    """Apply the steps of ``plugin_id`` not applied yet, in order; returns how many ran.

    Raises :class:`PluginMigrationError` naming the step when one fails (it is rolled
    back; the ones before it stay), has no SQL for ``dialect``, or when the database
    has more steps applied than the plugin declares (an older version of it).
    """
    done = await schema_version(db, plugin_id)
    if done > len(steps):
        raise PluginMigrationError(
            plugin_id,
            None,
            f"the database has {done} of its migrations applied but this version "
            f"declares {len(steps)} (a downgrade?)",
        )
    applied = 0
    for number, step in enumerate(steps[done:], start=done + 1):
        script = sql_for(step, dialect)
        if script is None:
            raise PluginMigrationError(plugin_id, number, f"it has no SQL for {dialect}")
        try:
            async with db.transaction() as tx:
                for statement in split_statements(script):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO plugin_schema (plugin_id, version) VALUES (?, ?)"
                    " ON CONFLICT (plugin_id) DO UPDATE SET version = excluded.version",
                    (plugin_id, number),
                )
        except sqlite3.Error as exc:
            raise PluginMigrationError(plugin_id, number, _reason(exc)) from exc
        applied += 1
    return applied


def _reason(exc: sqlite3.Error) -> str:
    # sqlite's message names the problem ("near "TABL": syntax error"); keep one line.
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


class SQLitePluginDatabase:
    """:class:`hark.api.PluginDatabase` over the bot's SQLite :class:`Database`."""

    dialect = SQLITE

    def __init__(self, db: Database, plugin_id: str) -> None:
        self._db = db
        self._plugin_id = plugin_id

    @property
    def plugin_id(self) -> str:
        return self._plugin_id

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        async with self._db.reading():
            return await Transaction(self._db.conn).fetchall(sql, params)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        async with self._db.reading():
            return await Transaction(self._db.conn).fetchone(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._db.transaction() as tx:
            yield tx

    def __repr__(self) -> str:
        return f"SQLitePluginDatabase({self._plugin_id!r}, {self._db.path})"
