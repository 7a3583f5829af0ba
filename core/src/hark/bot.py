"""``HarkBot``: the discord.py bot that hosts plugins.

It opens the runtime (database, plugin state), instantiates every loaded plugin's
Cogs, keeps each plugin's slash commands per server (synced only where the plugin
is enabled), gates prefix commands and listeners by the same switch, and turns
expected command mistakes into one short reply.

Built-in plugins reach each other through typed services on the bot, never by Cog
name: ``bot.chat`` (:class:`ChatService`) and ``bot.voice_sessions``
(:class:`VoiceService`), each set by the Cog that provides it while it is attached,
None while its plugin is not loaded.

A sharded bot (``HARK_SHARD_COUNT``) is a :class:`ShardedHarkBot`: the same, on
discord.py's AutoShardedBot, running this process's shards; :func:`make_bot` picks
the class from the config (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Iterator
from typing import Any, Protocol

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

from hark.chat.streaming import PLACEHOLDER, ReplyTarget
from hark.chat.triggers import TriggerPolicy
from hark.cog import PluginCog, PluginDisabled
from hark.config import Config, check_shards, format_shards
from hark.gateway_guard import describe, guard_parsers, install_log_filters, keep_connected
from hark.host import BotHost
from hark.plugins import PluginInfo
from hark.providers import ContextRequest
from hark.runtime import Runtime
from hark.store.database import DatabaseBusy, DatabaseUnavailable
from hark.store.locks import identify_slot
from hark.store.status import PUBLISH_INTERVAL as STATUS_INTERVAL
from hark.tools import toolbox_problems

log = logging.getLogger(__name__)

_SYNC_NAMESPACE = "core"
# Another process held the database past the write patience (hark.store.database).
BUSY_TEXT = "The bot's database is busy right now; nothing was changed. Try again in a moment."
# The database server could not be reached (PostgreSQL down or the network lost).
UNAVAILABLE_TEXT = (
    "The bot's database can't be reached right now; nothing was changed. Try again later."
)


def point_discord_at(api_base: str, gateway_url: str | None) -> None:
    """Aim discord.py at a Discord-compatible API (a REST proxy, or the test kit's server).

    discord.py keeps these as class attributes; there is no per-client option.
    """
    discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class ChatService(Protocol):
    """``bot.chat``: what the chat built-in offers (its ChatCog sets it)."""

    # What the bot answers to: its callsigns (voice listens for the same names).
    triggers: TriggerPolicy


class VoiceService(Protocol):
    """``bot.voice_sessions``: the voice built-in's sessions, one per server (its
    VoiceCog sets it)."""

    async def speak(self, guild_id: int, text: str) -> bool:
        """Say ``text`` in this server's voice session; False when there is none."""
        ...


class CommandClash(Exception):
    """A plugin's command name is already taken (the plugin is not loaded)."""


def _prefix_names(cog: commands.Cog) -> list[str]:
    """A Cog's top-level prefix command names and aliases."""
    return [n for c in cog.get_commands() for n in (c.name, *c.aliases)]


def _permission_label(name: str) -> str:
    # The names Discord's own UI uses, which differ from the API's for a few.
    labels = {"manage_guild": "Manage Server", "kick_members": "Kick Members"}
    return labels.get(name, name.replace("_", " ").title())


def _command_key(command: Any) -> tuple[str, discord.AppCommandType]:
    # Slash commands and groups have no .type; context menus do.
    return command.name, getattr(command, "type", discord.AppCommandType.chat_input)


class HarkTree(app_commands.CommandTree):
    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        command = interaction.command
        cog = getattr(command, "binding", None)
        if isinstance(cog, PluginCog) and not cog.enabled_in(interaction.guild_id):
            # Discord may still show a command briefly after it was removed.
            await interaction.response.send_message(
                f"The `{cog.plugin_id}` plugin is disabled in this server.", ephemeral=True
            )
            return False
        return True

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.CheckFailure):
            text = str(error) or "You can't use this command here."
        elif isinstance(getattr(error, "original", None), DatabaseBusy):
            text = BUSY_TEXT
        elif isinstance(getattr(error, "original", None), DatabaseUnavailable):
            text = UNAVAILABLE_TEXT
        else:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("slash command /%s failed", command, exc_info=error)
            text = "Something went wrong running that command."
        # The interaction may have expired or the channel gone: nothing more to say then.
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)


def default_intents() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True
    intents.members = True
    intents.voice_states = True
    return intents


class HarkBot(commands.Bot):
    def __init__(self, runtime: Runtime, **options: Any) -> None:
        config = runtime.config
        owner_ids = {int(x) for x in config.owner_ids if str(x).isdigit()}
        options.setdefault("intents", default_intents())
        # Nothing the bot sends pings anyone unless a call opts in explicitly.
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        options.setdefault("tree_cls", HarkTree)
        if owner_ids:
            options.setdefault("owner_ids", owner_ids)
        super().__init__(command_prefix=config.prefix, **options)
        self.runtime = runtime
        self.control = runtime.control
        # plugin id -> its top-level app commands, kept out of the global tree
        self.plugin_app_commands: dict[str, list[Any]] = {}
        # Who holds each command name: ("prefix", name) or ("app", name, type) -> plugin id.
        self._command_owners: dict[tuple[str, ...], str] = {}
        self._sync_locks: dict[int, asyncio.Lock] = {}
        # Work that must finish before the database closes (replies being written).
        self._inflight: set[asyncio.Task[Any]] = set()
        self._recovery: asyncio.Task[None] | None = None
        self._status_task: asyncio.Task[None] | None = None
        # Re-syncs after another process changed a plugin switch (plugins_changed).
        self._resyncs: set[asyncio.Task[None]] = set()
        # The core's record of recent turns and events (hark.metrics): the dashboard's data.
        self.metrics = runtime.conversation.metrics
        self.metrics.keep_text = config.dashboard_show_text
        self.dashboard: Any = None  # hark.dashboard.Dashboard, when one is configured
        # Services the built-ins offer each other and plugins, set by their Cogs.
        self.chat: ChatService | None = None
        self.voice_sessions: VoiceService | None = None
        # What plugins may use of the bot (hark.api.Host): PluginCog.host.
        self.host = BotHost(self)
        # Tools get it too (ToolContext.host), through the turns the runtime prepares.
        runtime.conversation.host = self.host
        self.add_check(self._plugin_enabled_check)
        # A malformed gateway event or a reconnect must not end the bot or flood its log.
        guard_parsers(self._connection)
        install_log_filters()

    @property
    def config(self) -> Config:
        return self.runtime.config

    # -- the gateway (one connection here; ShardedHarkBot has one per shard) ----

    @property
    def shard_label(self) -> str | None:
        """Which shards this process runs (``"shards 0-1 of 4"``); None unsharded."""
        return None

    def shard_for(self, guild_id: int | None) -> int | None:
        """The shard that carries this server's events (DMs: shard 0); None unsharded."""
        return None

    def gateway_socket(
        self, guild_id: int | None = None
    ) -> discord.gateway.DiscordWebSocket | None:
        """The gateway connection that carries this server's events (None while there
        is none, or when another process runs its shard)."""
        return self.ws

    @property
    def gateway_open(self) -> bool:
        """Whether this process has its gateway connection(s)."""
        return self.ws is not None

    async def connect(self, *, reconnect: bool = True) -> None:
        # discord.py reconnects only on network errors; retry anything else too.
        await keep_connected(self, super().connect, reconnect=reconnect)

    # -- start-up --------------------------------------------------------

    async def setup_hook(self) -> None:
        # WARNING+ log lines become events (and so do plugins that failed before now).
        self.metrics.attach_logging()
        for info in self.runtime.manager.plugins.values():
            if info.status == "error":
                self.metrics.event(
                    "plugin_error",
                    f"plugin {info.id} failed to load: {info.error}",
                    level="ERROR",
                    source=info.id,
                )
        await self.runtime.open()
        # Processes sharing PostgreSQL: a switch flipped in another one re-offers
        # slash commands in this one's servers (and tells its cogs), as it did there.
        self.runtime.state.watch(self._plugins_changed_elsewhere)
        if self.config.dashboard:
            await self._start_dashboard(self.config.dashboard)
        # REST works from here on; this needs no gateway, and start-up need not wait.
        self._recovery = asyncio.create_task(self._mark_unfinished_replies())
        self._status_task = asyncio.create_task(self._publish_status())
        # Built-ins first: on a name clash the plugin that came later is the one refused.
        for info in sorted(self.runtime.manager.loaded(), key=lambda i: not i.builtin):
            await self._add_plugin_cogs(info)
        if self.config.sync_commands:
            await self._sync_if_changed(None)

    async def _start_dashboard(self, bind: str) -> None:
        from hark.dashboard import Dashboard

        dashboard = Dashboard(self, bind=bind, token=self.config.dashboard_token.get().strip())
        try:
            await dashboard.start()
        except OSError as exc:  # the port is taken: the bot itself still runs
            log.error("could not serve the dashboard on %s: %s", bind, exc)
            return
        self.dashboard = dashboard

    async def on_disconnect(self) -> None:
        self.metrics.event("reconnect", "gateway connection lost")

    async def on_resumed(self) -> None:
        self.metrics.event("reconnect", "gateway session resumed")

    def plugin_problems(self) -> dict[str, str]:
        """What loaded plugins' toolboxes report as wrong now (an MCP server down)."""
        problems = {}
        for info in self.runtime.manager.loaded():
            lines = toolbox_problems(info.tools)
            if lines:
                problems[info.id] = "; ".join(lines)
        return problems

    async def _publish_status(self) -> None:
        """Keep this process's report for `bot plugins` fresh (hark.store.status)."""
        while True:
            try:
                await self.runtime.status.publish(self.plugin_problems())
            except Exception:
                log.warning("could not record the plugins' status", exc_info=True)
            await asyncio.sleep(STATUS_INTERVAL)

    async def _mark_unfinished_replies(self) -> None:
        try:
            await self.runtime.inflight.mark_unfinished(self, PLACEHOLDER)
        except Exception:
            log.exception("could not mark replies left unfinished by the last run")

    async def _add_plugin_cogs(self, info: PluginInfo) -> None:
        """Attach a plugin's Cogs, all or none. A plugin whose command name (or alias)
        is already taken fails to load, naming both plugins; the one that had the name
        keeps it, and built-ins are attached first, so a newcomer can't knock out chat."""
        attached: list[commands.Cog] = []
        app_added: list[Any] = []
        for cog_cls in info.cogs:
            before = {_command_key(c) for c in self.tree.get_commands()}
            try:
                if not issubclass(cog_cls, PluginCog):
                    raise TypeError(f"{cog_cls.__name__} must subclass hark.PluginCog")
                cog = cog_cls.instantiate(self, info.id)
                clash = self._clash(cog, info.id)
                if clash:
                    raise CommandClash(clash)
                await self.add_cog(cog)
            except Exception as exc:
                if isinstance(exc, CommandClash):
                    log.error("plugin %s failed to load: %s", info.id, exc)
                    info.error = f"{exc}"
                else:
                    log.error(
                        "plugin %s: cog %s failed to load", info.id, cog_cls.__name__, exc_info=exc
                    )
                    info.error = f"cog {cog_cls.__name__} failed: {exc!r}"
                info.status = "error"
                for earlier in attached:  # all or none
                    await self.remove_cog(earlier.qualified_name)
                for command in app_added:
                    self.tree.remove_command(command.name, type=_command_key(command)[1])
                self.plugin_app_commands.pop(info.id, None)
                for key in [k for k, owner in self._command_owners.items() if owner == info.id]:
                    del self._command_owners[key]
                return
            attached.append(cog)
            added = [c for c in self.tree.get_commands() if _command_key(c) not in before]
            for name in _prefix_names(cog):
                self._command_owners[("prefix", name)] = info.id
            for command in added:
                self._command_owners[("app", *map(str, _command_key(command)))] = info.id
            if info.protected:
                app_added.extend(added)
                continue  # core commands are global and can't be disabled
            for command in added:
                self.tree.remove_command(command.name, type=_command_key(command)[1])
            self.plugin_app_commands.setdefault(info.id, []).extend(added)

    @property
    def command_owners(self) -> dict[tuple[str, ...], str]:
        """Which plugin holds each command name: ``("prefix", name)`` or
        ``("app", name, type)`` -> plugin id."""
        return dict(self._command_owners)

    def _clash(self, cog: commands.Cog, plugin_id: str) -> str | None:
        """Why ``cog`` can't be attached: a prefix or slash name another plugin (or
        discord.py itself, e.g. ``help``) already holds; None when it is free."""
        for name in _prefix_names(cog):
            owner = self._command_owners.get(("prefix", name))
            if owner is None and self.get_command(name) is not None:
                owner = "discord.py"
            if owner is not None:
                return f"command !{name} is already registered by plugin {owner}"
        # Plugin slash commands leave the global tree (they are synced per server), so
        # the record of owners is what knows every name taken.
        for command in cog.get_app_commands():
            owner = self._command_owners.get(("app", *map(str, _command_key(command))))
            if owner is not None:
                return f"command /{command.name} is already registered by plugin {owner}"
        return None

    async def _plugin_enabled_check(self, ctx: commands.Context[Any]) -> bool:
        cog = ctx.cog
        if (
            isinstance(cog, PluginCog)
            and ctx.guild is not None
            and not cog.enabled_in(ctx.guild.id)
        ):
            raise PluginDisabled(f"{cog.plugin_id} is disabled here")
        return True

    # -- slash command sync ----------------------------------------------

    def _commands_digest(self, guild: discord.abc.Snowflake | None) -> str:
        payload = [c.to_dict(self.tree) for c in self.tree.get_commands(guild=guild)]
        blob = json.dumps(
            sorted(payload, key=lambda d: (d.get("type", 1), d["name"])), sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    async def _sync_if_changed(self, guild_id: int | None) -> None:
        """Sync the global (None) or one guild's commands when they differ from the last sync.

        Discord rate-limits command syncs, so unchanged sets are not sent again, and
        a set Discord refused (400: the payload itself is invalid) is not sent again
        until it changes, not even after a restart. A failure logs one line; the
        field-by-field details are at DEBUG.
        """
        settings = self.runtime.settings.for_plugin(_SYNC_NAMESPACE)
        scope = settings.global_() if guild_id is None else settings.guild(guild_id)
        guild = None if guild_id is None else discord.Object(guild_id)
        where = "global" if guild_id is None else f"guild {guild_id}"
        digest = self._commands_digest(guild)
        if scope.get("commands_digest", None) == digest:
            return
        # is_set: a guild scope's get() would fall back to the global value.
        if (
            scope.is_set("commands_refused_digest")
            and scope.get("commands_refused_digest") == digest
        ):
            log.debug("slash commands for %s: not re-sending the set Discord refused", where)
            return
        try:
            await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            # exc.text is Discord's message, then one "In <field>: ..." line per error.
            first = next((ln for ln in (exc.text or "").splitlines() if ln.strip()), "")
            if exc.status == 400:
                await scope.set("commands_refused_digest", digest)
                after = "not retried until the commands change"
            else:  # 403 (no applications.commands scope), 5xx: try again next time
                after = "will retry on the next start or plugin change"
            log.warning(
                "could not sync slash commands for %s: HTTP %s, Discord error %s: %s (%s)",
                where,
                exc.status,
                exc.code,
                first or "no message",
                after,
            )
            log.debug("slash command sync for %s failed in detail:\n%s", where, exc)
            return
        await scope.set("commands_digest", digest)

    async def sync_guild_commands(self, guild_id: int) -> None:
        """Offer in this guild exactly the slash commands of the plugins enabled there."""
        lock = self._sync_locks.setdefault(guild_id, asyncio.Lock())
        async with lock:
            guild = discord.Object(guild_id)
            self.tree.clear_commands(guild=guild)
            for plugin_id, app_cmds in self.plugin_app_commands.items():
                if self.control.is_enabled(plugin_id, guild_id):
                    for command in app_cmds:
                        self.tree.add_command(command, guild=guild, override=True)
            if self.config.sync_commands:
                await self._sync_if_changed(guild_id)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.sync_guild_commands(guild.id)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.sync_guild_commands(guild.id)

    async def plugins_changed(self, guild_id: int | None) -> None:
        """Call after a plugin switch changed: re-offer slash commands where it matters."""
        self.dispatch("hark_plugins_changed", guild_id)
        self.host.events.emit("plugins_changed", guild_id=guild_id)
        targets = [guild_id] if guild_id else [g.id for g in self.guilds]
        for gid in targets:
            await self.sync_guild_commands(gid)

    def _plugins_changed_elsewhere(self, guild_id: int | None) -> None:
        """Another process (a shard of this bot) changed a plugin switch for
        ``guild_id`` (None: the global defaults): this process's servers follow."""
        if guild_id is not None and self.get_guild(guild_id) is None:
            return  # a server on another process's shards: that process re-syncs it
        task = asyncio.create_task(self._resync(guild_id), name="hark-plugins-changed")
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def _resync(self, guild_id: int | None) -> None:
        try:
            await self.plugins_changed(guild_id)
        except Exception:
            log.exception("could not follow a plugin change made by another process")

    # -- errors ----------------------------------------------------------

    async def on_command_error(self, ctx: commands.Context[Any], error: Exception) -> None:
        if isinstance(error, commands.CommandNotFound | PluginDisabled):
            return
        if ctx.command is not None and ctx.command.has_error_handler():
            return
        original = getattr(error, "original", error)
        if isinstance(original, discord.Forbidden | discord.NotFound):
            # Missing permissions or a vanished message/channel: expected, not a bug.
            log.warning("command %s in channel %s: %s", ctx.command, ctx.channel.id, original)
            return
        if isinstance(original, DatabaseUnavailable):
            text: str | None = UNAVAILABLE_TEXT
        elif isinstance(original, DatabaseBusy):
            text = BUSY_TEXT
        else:
            text = self._error_text(ctx, error)
        if text is None:
            log.error("command %s failed", ctx.command, exc_info=original)
            text = "Something went wrong running that command."
        with contextlib.suppress(discord.HTTPException):
            await ctx.reply(text, mention_author=False)

    @staticmethod
    def _error_text(ctx: commands.Context[Any], error: Exception) -> str | None:
        """One short reply for an expected mistake, or None for a real failure."""
        if isinstance(error, commands.UserInputError):
            usage = (
                f"{ctx.clean_prefix}{ctx.command.qualified_name} {ctx.command.signature}".strip()
            )
            return f"{error} Usage: `{usage}`"
        if isinstance(error, commands.NotOwner):
            return "Only the bot's owner can do that."
        if isinstance(error, commands.MissingPermissions):
            perms = ", ".join(_permission_label(p) for p in error.missing_permissions)
            return f"You need the {perms} permission to do that."
        if isinstance(error, commands.NoPrivateMessage):
            return "That command only works in a server."
        if isinstance(error, commands.CommandOnCooldown):
            return f"Slow down: try again in {error.retry_after:.0f}s."
        if isinstance(error, commands.CheckFailure):
            return str(error) or "You can't use that command here."
        return None

    # -- shutdown --------------------------------------------------------

    @contextlib.contextmanager
    def inflight(self) -> Iterator[None]:
        """Mark the current task as work that shutdown waits for (briefly) before
        closing the database, so a reply in progress is finished or cut cleanly."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._inflight.add(task)
        try:
            yield
        finally:
            self._inflight.discard(task)

    async def _drain(self, timeout: float = 5.0) -> None:
        pending = {t for t in self._inflight if t is not asyncio.current_task()}
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)

    async def reply(
        self,
        request: ContextRequest,
        target: ReplyTarget,
        *,
        typing: Any = None,
        notify_errors: bool = True,
    ) -> str | None:
        """Answer ``request`` through the LLM into ``target`` (see
        :meth:`hark.chat.pipeline.Conversation.deliver`). Returns the delivered text or
        None. Plugins use this for replies of their own (e.g. Twitch commentary)."""
        if self.is_closed():
            return None
        with self.inflight():
            try:
                delivery = await self.runtime.conversation.deliver(
                    request,
                    target,
                    interval=self.config.edit_interval,
                    typing=typing,
                    notify_errors=notify_errors,
                )
            except RuntimeError:
                # A turn still running when shutdown closed the HTTP session
                # ("Session is closed"): nothing can be posted any more.
                if not self.is_closed():
                    raise
                log.debug("reply in channel %s dropped at shutdown", request.channel_id)
                return None
        if delivery is None:
            return None
        # Plugins may react to a delivered reply (e.g. attach its spoken version).
        self.dispatch("hark_reply", request, delivery.text, delivery.messages)
        self.host.events.emit(
            "reply", guild_id=request.guild_id, channel_id=request.channel_id, text=delivery.text
        )
        return delivery.text

    async def speak(self, guild_id: int, text: str) -> bool:
        """Say ``text`` in this server's voice session; False when there is none."""
        voice = self.voice_sessions
        return bool(voice is not None and await voice.speak(guild_id, text))

    async def close(self) -> None:
        for cog in list(self.cogs.values()):
            if isinstance(cog, PluginCog):
                try:
                    await cog.on_shutdown()
                except Exception:
                    log.exception("cog %s failed to shut down", cog.qualified_name)
        # Plugins' run_once jobs end here, so another process can take them over.
        await self.host.close()
        for voice in list(self.voice_clients):
            try:
                await voice.disconnect(force=True)
            except Exception:  # leaving is best effort at shutdown
                log.debug("voice disconnect failed", exc_info=True)
        await self._drain()
        if self._recovery is not None and not self._recovery.done():
            # Let a recovery that is mid-way finish its edit and forget the row, so a
            # restart does not fetch the same message again; a long one is cut short.
            await asyncio.wait({self._recovery}, timeout=2.0)
            self._recovery.cancel()
        if self._status_task is not None:
            self._status_task.cancel()
            with contextlib.suppress(BaseException):
                await self._status_task
            try:
                await self.runtime.status.clear()
            except Exception:  # a stale report ages out by itself
                log.debug("could not clear the plugins' status", exc_info=True)
        if self.dashboard is not None:
            await self.dashboard.stop()
            self.dashboard = None
        for task in list(self._resyncs):
            task.cancel()
        await super().close()
        await self.runtime.close()
        self.metrics.detach_logging()


class ShardedHarkBot(HarkBot, commands.AutoShardedBot):
    """HarkBot on discord.py's AutoShardedBot: this process runs ``shard_ids`` of the
    bot's ``shard_count`` shards, one gateway connection each, and sees only the
    servers on them (``(guild_id >> 22) % shard_count``), plus DMs if it runs shard 0.

    Everything HarkBot does per server already follows from that: slash commands are
    synced on ``guild_available``, which comes only for this process's servers, and
    a plugin change re-syncs ``self.guilds``, which are this process's. Each IDENTIFY
    takes :func:`hark.store.locks.identify_slot` for its bucket (``shard_id %
    max_concurrency``), so the processes sharing one PostgreSQL start their shards no
    faster than Discord allows.
    """

    def __init__(
        self, runtime: Runtime, *, shard_ids: list[int], shard_count: int, **options: Any
    ) -> None:
        super().__init__(runtime, shard_ids=list(shard_ids), shard_count=shard_count, **options)
        self._identified: set[int] = set()
        self._identify_buckets: int | None = None
        self._limits_lock: asyncio.Lock | None = None

    @property
    def shard_label(self) -> str:
        ids = self.shard_ids if self.shard_ids is not None else range(self.shard_count or 0)
        noun = "shard" if len(ids) == 1 else "shards"
        return f"{noun} {format_shards(ids)} of {self.shard_count}"

    def shard_for(self, guild_id: int | None) -> int:
        return 0 if guild_id is None else (guild_id >> 22) % (self.shard_count or 1)

    def gateway_socket(
        self, guild_id: int | None = None
    ) -> discord.gateway.DiscordWebSocket | None:
        try:
            return self._get_websocket(shard_id=self.shard_for(guild_id))
        except KeyError:  # not one of this process's shards, or not connected yet
            return None

    @property
    def gateway_open(self) -> bool:
        shards = self.shards
        return bool(shards) and not any(s.is_closed() for s in shards.values())

    async def setup_hook(self) -> None:
        log.info("this process runs %s", self.shard_label)
        some = len(self.shard_ids or ()) < (self.shard_count or 0)
        if some and getattr(self.runtime.db, "dialect", "sqlite") == "sqlite":
            log.warning(
                "this process runs only some shards, on SQLite: the processes running the "
                "others cannot share its database or see its changes; give every process "
                "the same PostgreSQL (HARK_DATABASE_URL, docs/scaling.md)"
            )
        await super().setup_hook()

    async def max_concurrency(self) -> int:
        """Discord's ``session_start_limit.max_concurrency`` (asked once): how many
        identify buckets there are. 1 when Discord cannot be asked."""
        if self._identify_buckets is not None:
            return self._identify_buckets
        if self._limits_lock is None:
            self._limits_lock = asyncio.Lock()
        async with self._limits_lock:
            if self._identify_buckets is None:
                try:
                    limits = await self.fetch_session_start_limits()
                except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
                    log.warning(
                        "could not read Discord's session start limit (%s); "
                        "identifying one shard at a time",
                        describe(exc),
                    )
                    self._identify_buckets = 1
                else:
                    self._identify_buckets = max(1, int(limits.max_concurrency))
                    log.info(
                        "Discord allows %d IDENTIFY at a time (max_concurrency); "
                        "%d of %d session starts left today",
                        self._identify_buckets,
                        limits.remaining,
                        limits.total,
                    )
        return self._identify_buckets

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Replaces discord.py's (sleep 5 s before every IDENTIFY but the first): the
        # identify slot spaces them per bucket, across processes too.
        shard = shard_id or 0
        if shard in self._identified:
            # A new session after an invalidated or refused one: Discord asks for a
            # random pause of 1-5 s first, so shards do not all come back at once.
            await asyncio.sleep(random.uniform(1.0, 5.0))
        self._identified.add(shard)
        bucket = shard % await self.max_concurrency()
        async with identify_slot(self.runtime.db, bucket):
            log.debug("shard %s: identifying (bucket %s)", shard, bucket)

    async def on_shard_ready(self, shard_id: int) -> None:
        servers = sum(1 for g in self.guilds if g.shard_id == shard_id)
        log.info("shard %s of %s is ready (%d servers)", shard_id, self.shard_count, servers)

    async def on_ready(self) -> None:
        log.info("ready: %s, %d servers", self.shard_label, len(self.guilds))


def make_bot(runtime: Runtime, **options: Any) -> HarkBot:
    """The bot for ``runtime``'s config: a :class:`HarkBot` (one ``commands.Bot``
    connection) unless the config names shards (``HARK_SHARD_COUNT``), then a
    :class:`ShardedHarkBot` running the config's ``shard_ids``."""
    config = runtime.config
    check_shards(config)  # shards without a count, or outside it: a ConfigError
    count, shard_ids = config.shard_count, config.shard_ids
    if count is None or shard_ids is None:
        return HarkBot(runtime, **options)
    return ShardedHarkBot(runtime, shard_ids=shard_ids, shard_count=count, **options)
