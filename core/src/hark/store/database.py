"""The bot's SQLite database: one aiosqlite connection and ordered migrations.

Features add tables by appending to ``MIGRATIONS`` (never editing an applied
one); ``PRAGMA user_version`` records how many have run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
]


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self, migrations: Iterable[str] = ()) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path)
        # WAL keeps readers (e.g. `bot plugins` while the bot runs) from blocking writers.
        await self._conn.execute("PRAGMA journal_mode=WAL")
        await self._conn.execute("PRAGMA foreign_keys=ON")
        await self._conn.execute("PRAGMA busy_timeout=5000")
        await self.migrate([*MIGRATIONS, *migrations])

    async def migrate(self, migrations: list[str]) -> None:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        done = row[0] if row else 0
        for number, script in enumerate(migrations[done:], start=done + 1):
            log.info("applying database migration %d", number)
            await self.conn.executescript(
                f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        await self.conn.execute(sql, tuple(params))
        await self.conn.commit()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.conn.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())
