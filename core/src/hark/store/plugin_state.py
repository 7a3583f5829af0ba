"""Which plugins are on in which server, and which provider each server uses.

Reads come from memory (they happen on every message); writes go to the database
first. Guild id 0 (:data:`GLOBAL`) holds the bot owner's global defaults.

Several processes on one PostgreSQL database (shards) keep their caches in step:
each write sends a change notice with its transaction, and :meth:`PluginState.load`
subscribes to the others', re-reading the one row named (or everything, after the
notices may have been missed). While the database is unreachable, reads still come
from the cache and writes raise :class:`hark.store.errors.DatabaseUnavailable`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hark.store.database import Database

log = logging.getLogger(__name__)

GLOBAL = 0

# The notices' "t": which table a change was in.
SWITCH, CHOICE = "plugin_state", "provider_choice"

Watcher = Callable[[int | None], Awaitable[None] | None]


class PluginState:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._enabled: dict[tuple[int, str], bool] = {}
        self._choice: dict[tuple[int, str], str] = {}
        # A write and a re-read for another process's notice must not interleave: the
        # later one's result is the one kept.
        self._lock = asyncio.Lock()
        self._subscribed = False
        self._watchers: list[Watcher] = []

    def subscribe(self) -> None:
        """Follow the changes other processes make (done by :meth:`load`)."""
        if not self._subscribed:
            self._subscribed = True
            self.db.subscribe(self._changed)

    def watch(self, callback: Watcher) -> None:
        """Call ``callback(guild_id)`` after another process changed a switch of that
        server (None: the global defaults, or everything after a reload)."""
        self._watchers.append(callback)

    async def load(self) -> None:
        self.subscribe()
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        rows = await self.db.fetchall("SELECT guild_id, plugin_id, enabled FROM plugin_state")
        self._enabled = {(g, p): bool(e) for g, p, e in rows}
        rows = await self.db.fetchall(
            "SELECT guild_id, capability, provider_id FROM provider_choice"
        )
        self._choice = {(g, c): p for g, c, p in rows}

    def enabled(self, guild_id: int, plugin_id: str) -> bool | None:
        """The explicit switch for this guild (GLOBAL for the default), or None if unset."""
        return self._enabled.get((guild_id, plugin_id))

    async def set_enabled(self, guild_id: int, plugin_id: str, enabled: bool | None) -> None:
        async with self._lock:
            async with self.db.transaction() as tx:
                if enabled is None:
                    await tx.execute(
                        "DELETE FROM plugin_state WHERE guild_id = ? AND plugin_id = ?",
                        (guild_id, plugin_id),
                    )
                else:
                    await tx.execute(
                        "INSERT INTO plugin_state (guild_id, plugin_id, enabled) VALUES (?, ?, ?)"
                        " ON CONFLICT (guild_id, plugin_id) DO UPDATE"
                        " SET enabled = excluded.enabled",
                        (guild_id, plugin_id, int(enabled)),
                    )
                tx.notify({"t": SWITCH, "k": [guild_id, plugin_id]})
            if enabled is None:
                self._enabled.pop((guild_id, plugin_id), None)
            else:
                self._enabled[(guild_id, plugin_id)] = enabled

    def choice(self, guild_id: int, capability: str) -> str | None:
        return self._choice.get((guild_id, capability))

    async def set_choice(self, guild_id: int, capability: str, provider_id: str | None) -> None:
        async with self._lock:
            async with self.db.transaction() as tx:
                if provider_id is None:
                    await tx.execute(
                        "DELETE FROM provider_choice WHERE guild_id = ? AND capability = ?",
                        (guild_id, capability),
                    )
                else:
                    await tx.execute(
                        "INSERT INTO provider_choice (guild_id, capability, provider_id)"
                        " VALUES (?, ?, ?) ON CONFLICT (guild_id, capability) DO UPDATE"
                        " SET provider_id = excluded.provider_id",
                        (guild_id, capability, provider_id),
                    )
                tx.notify({"t": CHOICE, "k": [guild_id, capability]})
            if provider_id is None:
                self._choice.pop((guild_id, capability), None)
            else:
                self._choice[(guild_id, capability)] = provider_id

    # -- other processes' changes ----------------------------------------------

    async def _changed(self, payload: dict[str, Any]) -> None:
        kind = payload.get("t")
        if kind == "*":
            async with self._lock:
                await self._load()
            await self._tell(None)
            return
        if kind not in (SWITCH, CHOICE):
            return
        try:
            guild_id, name = int(payload["k"][0]), str(payload["k"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            return
        async with self._lock:
            if kind == SWITCH:
                row = await self.db.fetchone(
                    "SELECT enabled FROM plugin_state WHERE guild_id = ? AND plugin_id = ?",
                    (guild_id, name),
                )
                if row is None:
                    self._enabled.pop((guild_id, name), None)
                else:
                    self._enabled[(guild_id, name)] = bool(row[0])
            else:
                row = await self.db.fetchone(
                    "SELECT provider_id FROM provider_choice WHERE guild_id = ? AND capability = ?",
                    (guild_id, name),
                )
                if row is None:
                    self._choice.pop((guild_id, name), None)
                else:
                    self._choice[(guild_id, name)] = str(row[0])
        if kind == SWITCH:
            await self._tell(None if guild_id == GLOBAL else guild_id)

    async def _tell(self, guild_id: int | None) -> None:
        for callback in list(self._watchers):
            try:
                result = callback(guild_id)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("a watcher of plugin switches failed")
