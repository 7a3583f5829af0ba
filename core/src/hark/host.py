"""The bot's side of :class:`hark.api.Host`: what ``PluginCog.host`` hands a plugin."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from hark.api import Events, PluginDatabase, plugin_logger
from hark.chat.streaming import NO_PINGS, ChannelTarget
from hark.providers import Capability, ContextRequest, Provider
from hark.settings import Resolved
from hark.store import locks
from hark.text import split_message

if TYPE_CHECKING:
    from hark.bot import HarkBot

log = logging.getLogger(__name__)


class BotHost:
    """:class:`hark.api.Host` over a running :class:`~hark.bot.HarkBot`."""

    def __init__(self, bot: HarkBot) -> None:
        self._bot = bot
        self._events = Events()
        # run_once jobs by name; stopped by close() at shutdown.
        self._leaders: dict[str, locks.Leadership] = {}
        # Seconds between tries for a lock another process holds (tests shorten it).
        self.leader_poll = locks.LEADER_POLL

    @property
    def events(self) -> Events:
        return self._events

    def settings(
        self,
        plugin_id: str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
    ) -> Resolved[Any]:
        return self._bot.runtime.settings.resolve(
            plugin_id, guild_id=guild_id, channel_id=channel_id, user_id=user_id
        )

    def providers(self, capability: Capability) -> list[Provider]:
        return self._bot.runtime.manager.providers(capability)

    def provider(self, capability: Capability, guild_id: int | None) -> Provider | None:
        return self._bot.control.provider_for(capability, guild_id)

    def _channel(self, channel_id: int) -> discord.abc.Messageable | None:
        channel = self._bot.get_channel(channel_id)
        return channel if isinstance(channel, discord.abc.Messageable) else None

    async def reply(
        self, channel_id: int, request: ContextRequest, *, notify_errors: bool = True
    ) -> str | None:
        channel = self._channel(channel_id)
        if channel is None:
            log.warning("reply for unknown channel %s dropped", channel_id)
            return None
        return await self._bot.reply(
            request, ChannelTarget(channel, None), notify_errors=notify_errors
        )

    async def answer(
        self, request: ContextRequest, deliver: Callable[[str], Awaitable[str | None]]
    ) -> str | None:
        conversation = self._bot.runtime.conversation
        with self._bot.inflight():
            turn = await conversation.prepare(request)
            text = "".join([delta async for delta in turn.stream()])
            posted = await deliver(text) if text.strip() else None
            if posted:
                await conversation.record(turn, posted)
            return posted or None

    @property
    def prefix(self) -> str:
        return self._bot.config.prefix

    def names(self) -> list[str]:
        names = list(self._bot.config.trigger_names or [])
        if not names and self._bot.user is not None:
            names.append(self._bot.user.name)
        return names

    async def say(self, channel_id: int, text: str) -> bool:
        channel = self._channel(channel_id)
        if channel is None:
            return False
        try:
            for part in split_message(text):
                await channel.send(part, allowed_mentions=NO_PINGS)
        except (discord.Forbidden, discord.NotFound) as exc:
            log.warning("cannot post in channel %s: %s", channel_id, type(exc).__name__)
            return False
        return True

    async def speak(self, guild_id: int, text: str) -> bool:
        return await self._bot.speak(guild_id, text)

    def logger(self, plugin_id: str) -> logging.Logger:
        return plugin_logger(plugin_id)

    def database(self, plugin_id: str) -> PluginDatabase:
        return self._bot.runtime.plugin_database(plugin_id)

    # -- work that runs once per deployment -----------------------------------

    def run_once(self, name: str, job: Callable[[], Awaitable[Any]]) -> locks.Leadership:
        current = self._leaders.get(name)
        if current is not None and current.running:
            raise ValueError(f"run_once({name!r}) is already running in this bot")
        runtime = self._bot.runtime
        lock = locks.leader_lock(
            runtime.db, name, process=runtime.status.process, poll=self.leader_poll
        )
        leadership = locks.Leadership(lock, job, poll=self.leader_poll)
        self._leaders[name] = leadership
        leadership.start()
        return leadership

    async def leader(self, name: str) -> str | None:
        current = self._leaders.get(name)
        if current is not None:
            return await current.holder()
        lock = locks.leader_lock(self._bot.runtime.db, name)
        try:
            return await lock.holder()
        except Exception:
            log.debug("could not look up the leader of %s", name, exc_info=True)
            return None

    async def close(self) -> None:
        """Stop every run_once job (at shutdown, while the database is still open)."""
        leaders, self._leaders = list(self._leaders.values()), {}
        for leadership in leaders:
            try:
                await leadership.stop()
            except Exception:
                log.exception("stopping the job of %s failed", leadership.name)
