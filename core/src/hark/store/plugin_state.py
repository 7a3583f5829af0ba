"""Which plugins are on in which server, and which provider each server uses.

Reads come from memory (they happen on every message); writes go to SQLite first.
Guild id 0 (:data:`GLOBAL`) holds the bot owner's global defaults.
"""

from __future__ import annotations

from hark.store.database import Database

GLOBAL = 0


class PluginState:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._enabled: dict[tuple[int, str], bool] = {}
        self._choice: dict[tuple[int, str], str] = {}

    async def load(self) -> None:
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
        if enabled is None:
            await self.db.execute(
                "DELETE FROM plugin_state WHERE guild_id = ? AND plugin_id = ?",
                (guild_id, plugin_id),
            )
            self._enabled.pop((guild_id, plugin_id), None)
            return
        await self.db.execute(
            "INSERT INTO plugin_state (guild_id, plugin_id, enabled) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id, plugin_id) DO UPDATE SET enabled = excluded.enabled",
            (guild_id, plugin_id, int(enabled)),
        )
        self._enabled[(guild_id, plugin_id)] = enabled

    def choice(self, guild_id: int, capability: str) -> str | None:
        return self._choice.get((guild_id, capability))

    async def set_choice(self, guild_id: int, capability: str, provider_id: str | None) -> None:
        if provider_id is None:
            await self.db.execute(
                "DELETE FROM provider_choice WHERE guild_id = ? AND capability = ?",
                (guild_id, capability),
            )
            self._choice.pop((guild_id, capability), None)
            return
        await self.db.execute(
            "INSERT INTO provider_choice (guild_id, capability, provider_id) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id, capability) DO UPDATE SET provider_id = excluded.provider_id",
            (guild_id, capability, provider_id),
        )
        self._choice[(guild_id, capability)] = provider_id
