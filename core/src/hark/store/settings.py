"""Red-style settings for plugins: defaults registered per plugin, values per scope.

    conf = bot.settings.for_plugin("llm_ollama")
    conf.register(model="llama3.2", temperature=0.7)
    conf.guild(guild_id).get("model")          # guild value, else global, else default
    await conf.guild(guild_id).set("model", "qwen2.5")
    await conf.channel(channel_id).set("persona", "...")

Values are JSON. Scopes: ``global``, ``guild:<id>``, ``channel:<id>``, ``user:<id>``.
A guild read falls back to the global value (owner-set or from ``[plugin.<id>]``
in bot.toml) and then to the registered default; channel and user reads fall
back to the registered default only (callers chain channel -> guild themselves).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hark.store.database import Database

_MISSING = object()


class Scope:
    def __init__(self, settings: PluginSettings, scope: str, parent: Scope | None) -> None:
        self._settings = settings
        self.scope = scope
        self._parent = parent

    def _raw(self, key: str) -> Any:
        return self._settings.store._values.get(
            (self._settings.namespace, self.scope, key), _MISSING
        )

    def get(self, key: str, default: Any = _MISSING) -> Any:
        value = self._raw(key)
        if value is not _MISSING:
            # A copy, so mutating a returned list cannot change the cache unsaved.
            return copy.deepcopy(value) if isinstance(value, list | dict) else value
        if self._parent is not None:
            return self._parent.get(key, default)
        # The registered default wins; the caller's is for keys nobody registered.
        if key in self._settings.defaults:
            return copy.deepcopy(self._settings.defaults[key])
        if default is not _MISSING:
            return default
        raise KeyError(f"{self._settings.namespace}: no setting {key!r} registered")

    def is_set(self, key: str) -> bool:
        return self._raw(key) is not _MISSING

    def all(self) -> dict[str, Any]:
        return {key: self.get(key) for key in self._settings.defaults}

    async def set(self, key: str, value: Any) -> None:
        await self._settings.store.write(self._settings.namespace, self.scope, key, value)

    async def clear(self, key: str) -> None:
        await self._settings.store.write(self._settings.namespace, self.scope, key, _MISSING)


class PluginSettings:
    def __init__(self, store: SettingsStore, namespace: str) -> None:
        self.store = store
        self.namespace = namespace
        self.defaults: dict[str, Any] = {}

    def register(self, **defaults: Any) -> None:
        for key, value in defaults.items():
            json.dumps(value)  # fail early on values that could not be stored
            self.defaults[key] = value

    def global_(self) -> Scope:
        return Scope(self, "global", None)

    def guild(self, guild_id: int | None) -> Scope:
        if guild_id is None:
            return self.global_()
        return Scope(self, f"guild:{guild_id}", self.global_())

    def channel(self, channel_id: int) -> Scope:
        return Scope(self, f"channel:{channel_id}", None)

    def user(self, user_id: int) -> Scope:
        return Scope(self, f"user:{user_id}", None)


class SettingsStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._values: dict[tuple[str, str, str], Any] = {}
        self._namespaces: dict[str, PluginSettings] = {}
        # bot.toml [plugin.<id>] values: global values that the database can override.
        self._seeded: dict[tuple[str, str, str], Any] = {}

    async def load(self) -> None:
        rows = await self.db.fetchall("SELECT namespace, scope, key, value FROM settings")
        self._values = dict(self._seeded)
        self._values.update({(ns, sc, k): json.loads(v) for ns, sc, k, v in rows})

    def seed_globals(self, namespace: str, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self._seeded[(namespace, "global", key)] = value
            self._values.setdefault((namespace, "global", key), value)

    def for_plugin(self, namespace: str) -> PluginSettings:
        if namespace not in self._namespaces:
            self._namespaces[namespace] = PluginSettings(self, namespace)
        return self._namespaces[namespace]

    async def write(self, namespace: str, scope: str, key: str, value: Any) -> None:
        ident = (namespace, scope, key)
        if value is _MISSING:
            await self.db.execute(
                "DELETE FROM settings WHERE namespace = ? AND scope = ? AND key = ?", ident
            )
            if ident in self._seeded:
                self._values[ident] = self._seeded[ident]
            else:
                self._values.pop(ident, None)
            return
        await self.db.execute(
            "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, scope, key) DO UPDATE SET value = excluded.value",
            (*ident, json.dumps(value)),
        )
        # Keep what a reload would give back (JSON round trip), not the caller's object.
        self._values[ident] = json.loads(json.dumps(value))
