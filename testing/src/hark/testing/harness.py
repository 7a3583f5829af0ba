"""Run a real HarkBot against the loopback Discord server, in-process.

    async with BotHarness(tmp_path, plugins={"hello": hello_module}) as h:
        await h.say("!hello")
        reply = await h.next_reply()

The harness owns a :class:`~hark.testing.discord.FakeDiscord` with one guild
("Test Server"), a text channel ``#general``, a voice channel, an admin (Manage
Server) and an ordinary member. ``restart()`` stops the bot and starts a new one
on the same database, to check what survives a restart.

A config with ``shard_count`` (and optionally ``shards``) runs a ``ShardedHarkBot``,
as ``bot run --shard-count`` does, against a server with that many shards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import discord
import yarl

from hark.bot import HarkBot, make_bot, point_discord_at
from hark.chat.streaming import PLACEHOLDER
from hark.config import Config, Secret
from hark.plugins import PluginManager
from hark.runtime import Runtime
from hark.testing.discord import FakeDiscord
from hark.testing.discord.waiters import WaitTimeout


def isolated_manager(
    plugins: Mapping[str, Any] | None = None,
    *,
    entry_points: Iterable[EntryPoint] = (),
    allow: Iterable[str] | None = None,
    block: Iterable[str] = (),
) -> PluginManager:
    """A plugin manager with exactly ``plugins`` (id -> module/object); the Runtime adds
    the built-in ones.

    Installed entry points are ignored unless passed in ``entry_points``, so tests
    do not depend on what else is installed in the environment.
    """
    manager = PluginManager(allow=allow, block=block)
    for plugin_id, obj in (plugins or {}).items():
        manager.add(obj, plugin_id)
    manager.load_entry_points(entry_points)
    return manager


class BotHarness:
    def __init__(
        self,
        data_dir: str | Path,
        *,
        plugins: Mapping[str, Any] | None = None,
        entry_points: Iterable[EntryPoint] = (),
        config: Mapping[str, Any] | None = None,
        server: FakeDiscord | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._plugins = dict(plugins or {})
        self._entry_points = list(entry_points)
        self._config_overrides = dict(config or {})
        # A sharded config (shard_count) gets a server with that many shards.
        shard_count = self._config_overrides.get("shard_count") or 1
        self.server = server or FakeDiscord(shard_count=shard_count)
        self._own_server = server is None
        self.bot: HarkBot | None = None
        self._task: asyncio.Task[None] | None = None
        self._saved_endpoints: tuple[str, yarl.URL] | None = None
        # Extra keyword arguments for HarkBot (e.g. a connector trusting a test CA).
        self.bot_options: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------

    async def __aenter__(self) -> BotHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def make_config(self) -> Config:
        config = Config(
            token=Secret(self.server.bot_token),
            api_base=self.server.api_base,
            gateway_url=self.server.gateway_url,
            data_dir=self.data_dir,
        )
        for key, value in self._config_overrides.items():
            setattr(config, key, value)
        return config

    def make_manager(self, config: Config) -> PluginManager:
        return isolated_manager(
            self._plugins,
            entry_points=self._entry_points,
            allow=config.load_plugins,
            block=config.block_plugins,
        )

    async def start(self) -> HarkBot:
        if self._own_server and not getattr(self.server, "started", False):
            await self.server.start()
            self._populate()
        if self._saved_endpoints is None:
            self._saved_endpoints = (
                discord.http.Route.BASE,
                discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
            )
        config = self.make_config()
        point_discord_at(config.api_base, config.gateway_url)
        runtime = Runtime(config, manager=self.make_manager(config))
        # discord.py waits guild_ready_timeout (2 s) for more guilds before on_ready;
        # the loopback server sends them all at once.
        options = dict(self.bot_options)
        if "connector" not in options:
            # Trust the loopback voice server's TLS certificate (a new connector per
            # start: the client closes it). Needs trustme, a test dependency.
            with contextlib.suppress(ImportError):
                options["connector"] = self.server.bot_connector()
        # HarkBot, or ShardedHarkBot when the config has shard_count (as `bot run`).
        self.bot = bot = make_bot(runtime, guild_ready_timeout=0.05, **options)
        self._task = asyncio.create_task(bot.start(config.token.get()), name="hark-bot")
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait(
            {ready, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED
        )
        if self._task in done:
            ready.cancel()
            self._task.result()  # re-raise the start-up failure
            raise RuntimeError("bot stopped during start-up")
        if ready not in done:
            ready.cancel()
            raise TimeoutError("bot did not become ready within 30s")
        for guild in bot.guilds:
            await bot.sync_guild_commands(guild.id)
        return bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 10)
        self.bot, self._task = None, None

    async def restart(self) -> HarkBot:
        await self.stop()
        return await self.start()

    async def close(self) -> None:
        await self.stop()
        if self._own_server:
            await self.server.close()
        if self._saved_endpoints is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = (
                self._saved_endpoints
            )
            self._saved_endpoints = None

    def providers(self, plugin_id: str) -> list[Any]:
        """The providers plugin ``plugin_id`` registered in the running bot."""
        if self.bot is None:
            raise RuntimeError("the bot is not running")
        info = self.bot.runtime.manager.get(plugin_id)
        if info is None:
            raise LookupError(f"no plugin {plugin_id!r} is loaded")
        return list(info.providers)

    # -- the default world -----------------------------------------------

    def _populate(self) -> None:
        from hark.testing.discord.permissions import MANAGE_GUILD

        server = self.server
        self.guild = server.create_guild("Test Server")
        self.channel = server.create_text_channel(self.guild, "general")
        self.voice_channel = server.create_voice_channel(self.guild, "Lounge")
        self.admin = server.create_member(self.guild, "boss", permissions=MANAGE_GUILD)
        self.member = server.create_member(self.guild, "alice")

    # -- conversation helpers --------------------------------------------

    async def say(
        self, content: str, *, author: Any = None, channel: Any = None, **kwargs: Any
    ) -> Any:
        """Post ``content`` as a user (the ordinary member by default).

        ``channel`` may be a DM, a thread or a forum post (``server.create_thread``,
        ``server.create_forum_post``); extra keyword arguments go to ``post_message``:
        ``files=[("cat.png", data)]``, ``reference=message``, ``embeds=[...]``."""
        return await self.server.post_message(
            channel or self.channel, author or self.member, content, **kwargs
        )

    async def next_reply(self, *, channel: Any = None, timeout: float = 10, **kwargs: Any) -> Any:
        """The next message the bot sends in ``channel`` (default ``#general``)."""
        return await self.server.wait_for_message(
            channel or self.channel, author=self.server.bot_user, timeout=timeout, **kwargs
        )

    async def ask(
        self,
        content: str,
        *,
        author: Any = None,
        channel: Any = None,
        timeout: float = 10,
        **kwargs: Any,
    ) -> Any:
        """Post ``content`` and return the bot's next message in that channel.

        Extra keyword arguments go to ``post_message`` (e.g. ``reference=message``).
        """
        channel = channel or self.channel
        waiter = asyncio.create_task(self.next_reply(channel=channel, timeout=timeout))
        await asyncio.sleep(0)  # let the waiter register before the message goes out
        await self.say(content, author=author, channel=channel, **kwargs)
        return await waiter

    async def final(self, message: Any, *, timeout: float = 10) -> str:
        """The content of a streamed reply once it stops growing.

        While the bot streams (or a tool runs) the message ends with the "still
        writing" marker ``…``; this waits for the edit that drops it, then returns
        the text. A message that does not end with the marker is returned as is.
        """
        if message.content.endswith(PLACEHOLDER):
            message = await self.server.wait_for_edit(
                message, lambda m: not m.content.endswith(PLACEHOLDER), timeout=timeout
            )
        return message.content

    async def history(
        self, count: int, *, channel: Any = None, timeout: float = 5, exact: bool = False
    ) -> list[Any]:
        """Wait until ``channel``'s chat history (default ``#general``; a channel or
        its id) holds at least ``count`` entries (exactly ``count`` with
        ``exact=True``), then return its recent entries, oldest first.

        The bot writes an exchange just after the reply is delivered, so a test
        reads the history through this rather than straight after ``final()``.
        """
        if self.bot is None:
            raise RuntimeError("the bot is not running")
        channel = channel if channel is not None else self.channel
        channel_id = channel if isinstance(channel, int) else channel.id
        history = self.bot.runtime.history
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            have = await history.count(channel_id)
            if have == count if exact else have >= count:
                break
            if loop.time() > deadline:
                wanted = f"{'exactly' if exact else 'at least'} {count}"
                raise WaitTimeout(
                    f"timed out after {timeout}s waiting for {wanted} history entries "
                    f"in channel {channel_id}; it has {have}"
                )
            await asyncio.sleep(0.02)
        return await history.recent(channel_id, max(count, 50))

    async def expect_silence(self, *, channel: Any = None, within: float = 1.0) -> None:
        """Assert the bot sends nothing in ``channel`` for ``within`` seconds."""
        try:
            message = await self.next_reply(channel=channel, timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"expected no reply, got {message!r}")
