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

Plugins that declare a typed model (``hark.Plugin(settings=...)``) read through
:meth:`SettingsStore.resolve`, which applies the one precedence of
:mod:`hark.settings` to the same rows; :meth:`SettingsStore.set_value` and
:meth:`SettingsStore.reset_value` validate and write them.

Every read comes from memory. Each write sends a change notice with its
transaction; the other processes on the same (PostgreSQL) database re-read that
row, so a change made through one shard is seen by all within a moment. While the
database is unreachable, reads go on from memory and writes raise
:class:`hark.store.errors.DatabaseUnavailable`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Mapping
from typing import Any

from hark.plugin import GLOBAL, Settings
from hark.settings import (
    MISSING,
    ReportOnce,
    Resolved,
    SettingError,
    check,
    env_key,
    field_of,
    resolve,
    scope_key,
    to_json,
    validate,
)
from hark.store.database import Database

_MISSING = MISSING
# The change notices' "t" (hark.store.database): a row of the settings table.
NOTICE = "settings"


class Scope:
    def __init__(self, settings: PluginSettings, scope: str, parent: Scope | None) -> None:
        self._settings = settings
        self.scope = scope
        self._parent = parent

    def _raw(self, key: str) -> Any:
        store, ident = self._settings.store, (self._settings.namespace, self.scope, key)
        value = store._values.get(ident, _MISSING)
        if value is _MISSING and self.scope == GLOBAL:
            # bot.toml's [plugin.<id>] values are globals the owner's can override.
            value = store._seeded.get(ident, _MISSING)
        return value

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
    def __init__(self, db: Database, *, environ: Mapping[str, str] | None = None) -> None:
        self.db = db
        # The environment layer of declared settings (None: os.environ, read live).
        self.environ = environ
        # Rows of the settings table, as JSON values.
        self._values: dict[tuple[str, str, str], Any] = {}
        self._namespaces: dict[str, PluginSettings] = {}
        # bot.toml [plugin.<id>] values: a layer below the environment and the database.
        self._seeded: dict[tuple[str, str, str], Any] = {}
        self._toml: dict[str, dict[str, Any]] = {}
        # plugin id -> its declared settings model
        self._models: dict[str, type[Settings]] = {}
        self._report = ReportOnce()
        # Resolutions are asked for on every provider call (several per sentence of
        # speech); any write, seed or declaration forgets them all.
        self._resolved: dict[tuple[Any, ...], Resolved[Any]] = {}
        # A write and a re-read for another process's notice must not interleave: the
        # later one's result is the one kept.
        self._lock = asyncio.Lock()
        self._subscribed = False

    def subscribe(self) -> None:
        """Follow the changes other processes make to the settings (done by :meth:`load`)."""
        if not self._subscribed:
            self._subscribed = True
            self.db.subscribe(self._changed)

    async def load(self) -> None:
        self.subscribe()
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        rows = await self.db.fetchall("SELECT namespace, scope, key, value FROM settings")
        self._values = {(ns, sc, k): json.loads(v) for ns, sc, k, v in rows}
        self._resolved.clear()

    async def _changed(self, payload: dict[str, Any]) -> None:
        """Another process changed a setting (``"k"``), or everything may have changed."""
        if payload.get("t") == "*":
            async with self._lock:
                await self._load()
            return
        if payload.get("t") != NOTICE:
            return
        try:
            ident = tuple(str(part) for part in payload["k"])
        except (KeyError, TypeError):
            return
        if len(ident) != 3:
            return
        async with self._lock:
            row = await self.db.fetchone(
                "SELECT value FROM settings WHERE namespace = ? AND scope = ? AND key = ?", ident
            )
            if row is None:
                self._values.pop(ident, None)
            else:
                self._values[ident] = json.loads(row[0])
            self._resolved.clear()

    def seed_globals(self, namespace: str, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self._seeded[(namespace, GLOBAL, key)] = value
            self._toml.setdefault(namespace, {})[key] = value
        self._resolved.clear()

    def for_plugin(self, namespace: str) -> PluginSettings:
        if namespace not in self._namespaces:
            self._namespaces[namespace] = PluginSettings(self, namespace)
        return self._namespaces[namespace]

    async def write(self, namespace: str, scope: str, key: str, value: Any) -> None:
        ident = (namespace, scope, key)
        # Checked before anything is written (TypeError for what JSON cannot hold).
        text = None if value is _MISSING else json.dumps(value)
        async with self._lock:
            self._resolved.clear()
            async with self.db.transaction() as tx:
                if text is None:
                    await tx.execute(
                        "DELETE FROM settings WHERE namespace = ? AND scope = ? AND key = ?",
                        ident,
                    )
                else:
                    await tx.execute(
                        "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (namespace, scope, key) DO UPDATE SET value = excluded.value",
                        (*ident, text),
                    )
                tx.notify({"t": NOTICE, "k": list(ident)})
            if text is None:
                self._values.pop(ident, None)
            else:
                # Keep what a reload would give back (JSON round trip), not the caller's.
                self._values[ident] = json.loads(text)
            self._resolved.clear()

    # -- declared (typed) settings -------------------------------------------

    def declare(self, plugin_id: str, model: type[Settings]) -> None:
        """Resolve ``plugin_id``'s settings with ``model`` (done by the core at start-up)."""
        if self._models.get(plugin_id) is not model:
            self._models[plugin_id] = model
            self._resolved.clear()

    def model(self, plugin_id: str) -> type[Settings] | None:
        return self._models.get(plugin_id)

    def _model(self, plugin_id: str) -> type[Settings]:
        model = self._models.get(plugin_id)
        if model is None:
            raise LookupError(f"plugin {plugin_id!r} declares no settings")
        return model

    def toml(self, plugin_id: str) -> dict[str, Any]:
        """The plugin's ``[plugin.<id>]`` table from bot.toml."""
        return self._toml.get(plugin_id, {})

    def stored(self, plugin_id: str, scope: str, key: str) -> Any:
        """The database's value for ``key`` in a stored scope (``guild:<id>``...) or MISSING."""
        return self._values.get((plugin_id, scope, key), _MISSING)

    def resolve(
        self,
        plugin_id: str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Resolved[Any]:
        """The plugin's settings for this server/channel/member, with their origins.
        Treat the result as read-only: it is shared until a value changes."""
        model = self._model(plugin_id)
        env = self._environ(environ)
        ident = (plugin_id, guild_id, channel_id, user_id, env_key(model, env))
        cached = self._resolved.get(ident)
        if cached is not None:
            return cached
        resolved = resolve(
            plugin_id,
            model,
            toml=self.toml(plugin_id),
            environ=env,
            stored=lambda scope, key: self.stored(plugin_id, scope, key),
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            report=self._report,
        )
        if len(self._resolved) >= 10_000:
            self._resolved.clear()
        self._resolved[ident] = resolved
        return resolved

    def check(self, plugin_id: str) -> list[str]:
        """Start-up: the bot.toml / environment values of this plugin that are ignored,
        each logged once in one line."""
        return check(
            plugin_id,
            self._model(plugin_id),
            toml=self.toml(plugin_id),
            environ=self._environ(None),
            report=self._report,
        )

    def _environ(self, environ: Mapping[str, str] | None) -> Mapping[str, str]:
        if environ is not None:
            return environ
        return os.environ if self.environ is None else self.environ

    async def set_value(
        self, plugin_id: str, key: str, value: Any, scope: str, target_id: int | None = None
    ) -> Any:
        """Validate ``value`` for ``key`` and store it in ``scope`` (``global``, ``server``,
        ``channel``, ``user``; ``target_id`` the server/channel/user id). Returns the
        value as stored; SettingError (one readable line) when it is refused."""
        model = self._model(plugin_id)
        field = field_of(model, key)
        if not field.allows(scope):
            raise SettingError(f"`{key}` can't be set {_SCOPE_WORDS[scope]}")
        checked = validate(model, key, value)
        await self.write(plugin_id, scope_key(scope, target_id), key, to_json(model, key, checked))
        return checked

    async def reset_value(
        self, plugin_id: str, key: str, scope: str, target_id: int | None = None
    ) -> bool:
        """Remove ``key``'s value in ``scope``; False when there was none."""
        field_of(self._model(plugin_id), key)
        ident = (plugin_id, scope_key(scope, target_id), key)
        if ident not in self._values:
            return False
        await self.write(*ident, _MISSING)
        return True


_SCOPE_WORDS = {
    "global": "bot-wide",
    "server": "per server",
    "channel": "per channel",
    "user": "per member",
}
