"""Everything the bot needs besides Discord: config, database, plugins, per-server control.

Shared by ``bot run`` (through :class:`hark.bot.HarkBot`), ``bot console`` and tests,
so each path loads plugins and state the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import EntryPoint

from hark.chat.history import HistoryStore
from hark.chat.inflight import InflightReplies
from hark.chat.pipeline import Conversation
from hark.config import Config, format_shards
from hark.control import PluginControl
from hark.plugins import PluginManager
from hark.store import PluginState, RuntimeStatus, SettingsStore, open_database
from hark.store.plugin_db import BotPluginDatabase, PluginMigrationError, apply_plugin_migrations

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        config: Config,
        *,
        manager: PluginManager | None = None,
        entry_points: Iterable[EntryPoint] | None = None,
    ) -> None:
        self.config = config
        # SQLite by default, PostgreSQL with HARK_DATABASE_URL (hark.store.open_database).
        self.db = open_database(config)
        self.state = PluginState(self.db)
        self.settings = SettingsStore(self.db)
        # Exchanges that could not be written by shutdown (database locked) wait here.
        self.history = HistoryStore(self.db, spill_path=config.data_dir / "history.pending.jsonl")
        load_installed = manager is None
        if manager is None:
            manager = PluginManager(allow=config.load_plugins, block=config.block_plugins)
        # The built-ins (entry points of the hark distribution) come first, also in a
        # manager built by hand (tests add their plugins to one, then pass it here).
        manager.load_builtins(self)
        if load_installed:
            manager.load_entry_points(entry_points)
        self.manager = manager
        self.control = PluginControl(manager, self.state, config)
        # Each shard layout marks only its own unfinished replies after a restart.
        self.inflight = InflightReplies(self.db, owner=shard_layout(config))
        self.status = RuntimeStatus(self.db)
        # The bot gives it its host (for tools) once there is one.
        self.conversation = Conversation(self.control, self.inflight, settings=self.settings)

    async def open(self) -> None:
        # Other processes' changes to the cached rows (PostgreSQL): subscribed before the
        # database opens, so its LISTEN connection is up before the caches are filled
        # and no change made in between goes unheard.
        self.state.subscribe()
        self.settings.subscribe()
        await self.db.open()
        await self.migrate_plugins()
        await self.history.open()
        for plugin_id, values in self.config.plugin_settings.items():
            self.settings.seed_globals(plugin_id, values)
        await self.state.load()
        await self.settings.load()
        deadline = self.config.provider_deadline if self.config.provider_deadline > 0 else None
        for info in self.manager.loaded():
            if info.plugin is not None and info.plugin.settings is not None:
                self.settings.declare(info.id, info.plugin.settings)
            for provider in info.providers:
                provider.bind(self.settings.for_plugin(info.id))
                provider.deadline = deadline

    async def migrate_plugins(self) -> None:
        """Apply each loaded plugin's own migrations. One that fails takes its plugin
        out (listed with the error, like a failed import); the bot and the other
        plugins go on."""
        for info in self.manager.loaded():
            steps = info.plugin.migrations if info.plugin is not None else ()
            if not steps:
                continue
            try:
                applied = await apply_plugin_migrations(self.db, info.id, steps)
            except PluginMigrationError as exc:
                log.error("plugin %s failed to load: %s", info.id, exc)
                info.status, info.error = "error", str(exc)
                continue
            if applied:
                log.info("plugin %s: applied %d database migration(s)", info.id, applied)

    def plugin_database(self, plugin_id: str) -> BotPluginDatabase:
        """``plugin_id``'s access to the bot's database (``host.database``)."""
        return BotPluginDatabase(self.db, plugin_id)

    async def close(self) -> None:
        for info in self.manager.loaded():
            for provider in info.providers:
                try:
                    await provider.aclose()
                except Exception:
                    log.exception("provider %s failed to close", provider.id)
        await self.history.close()
        await self.inflight.drain()
        await self.db.close()


def shard_layout(config: Config) -> str:
    """This process's shards as ``"0-1/4"`` ('' when the bot is not sharded): whose
    streamed replies are this process's to mark as cut off after a restart."""
    ids = config.shard_ids
    if ids is None:
        return ""
    return f"{format_shards(ids)}/{config.shard_count}"
