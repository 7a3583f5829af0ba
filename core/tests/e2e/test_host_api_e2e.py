"""hark.api.Host end to end: what a plugin's Cog may use of the bot — settings,
providers, reply/say/speak, events, its logger — with the real bot and discord.py
against the loopback Discord server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from discord.ext import commands

import hark
from hark import Capability, ContextRequest, PluginCog
from hark.api import Host
from hark.testing.fakes import EchoGenerator, fake_plugin
from hark.testing.harness import BotHarness


class HostSettings(hark.Settings):
    motto: str = hark.setting("carpe diem", description="what !motto says")


class HostCog(PluginCog, name="HostUser"):
    def __init__(self, bot: Any) -> None:
        super().__init__(bot)
        self.seen: list[dict[str, Any]] = []
        self.unsubscribe = self.host.events.subscribe("reply", self.on_reply)

    async def on_reply(self, **payload: Any) -> None:
        self.seen.append(payload)

    @commands.command()
    async def motto(self, ctx: commands.Context[Any]) -> None:
        assert ctx.guild is not None
        motto = self.host.settings(self.plugin_id, guild_id=ctx.guild.id).values.motto
        # say() posts as it is: split to fit, and never a ping.
        await self.host.say(ctx.channel.id, f"@everyone {motto} " + "x" * 2100)

    @commands.command()
    async def relay(self, ctx: commands.Context[Any], *, text: str) -> None:
        assert ctx.guild is not None
        generator = self.host.provider(Capability.GENERATE, ctx.guild.id)
        self.host.logger(self.plugin_id).info("relaying through %s", generator.id)
        request = ContextRequest(
            guild_id=ctx.guild.id,
            channel_id=ctx.channel.id,
            user_id=ctx.author.id,
            user_name=ctx.author.display_name,
            text=text,
        )
        await self.host.reply(ctx.channel.id, request)

    @commands.command()
    async def speakup(self, ctx: commands.Context[Any]) -> None:
        assert ctx.guild is not None
        spoken = await self.host.speak(ctx.guild.id, "hello")
        unknown = await self.host.say(1234, "nowhere")
        await ctx.send(f"spoken={spoken} unknown={unknown}")


host_user = hark.Plugin(description="Uses the host", settings=HostSettings, cogs=[HostCog])


async def test_a_cog_uses_settings_say_reply_speak_events_and_its_logger(tmp_path, caplog):
    plugins = {"host_user": host_user, "llm": fake_plugin(EchoGenerator())}
    async with BotHarness(tmp_path, plugins=plugins) as h:
        assert isinstance(h.bot.host, Host)
        cog = h.bot.get_cog("HostUser")
        await h.bot.runtime.settings.set_value(
            "host_user", "motto", "seize the day", "server", h.guild.id
        )
        first = await h.ask("!motto")
        second = await h.next_reply()
        assert first.content.startswith("@everyone seize the day")
        assert len(first.content) <= 2000 and second.content.strip("x") == ""
        assert not first.mention_everyone

        with caplog.at_level(logging.INFO, logger="hark.plugin.host_user"):
            answer = await h.ask("!relay what a day")
        assert "what a day" in answer.content
        assert "relaying through" in caplog.text
        await asyncio.sleep(0.05)
        assert cog.seen == [
            {"guild_id": h.guild.id, "channel_id": h.channel.id, "text": answer.content}
        ]
        # Only delivered replies are events: a plain say() is not one.
        status = await h.ask("!speakup")
        assert status.content == "spoken=False unknown=False"
        assert len(cog.seen) == 1


class RoomSettings(hark.Settings):
    room: int | None = hark.setting(None, scopes=("server",), description="a channel here")
    endpoint: str = hark.setting("ws://x", scopes=(), description="bot.toml or env only")


class RoomContext(hark.ContextProvider):
    """Refuses, at set time, a channel of another server (check_setting gets the server)."""

    settings_model = RoomSettings

    def __init__(self, bot_channels: dict[int, int]) -> None:
        super().__init__()
        self.bot_channels = bot_channels

    async def check_setting(self, key: str, value: Any, *, guild_id: int | None = None) -> Any:
        if key == "room" and value is not None and self.bot_channels.get(value) != guild_id:
            raise ValueError("that channel is not in this server")
        return value

    async def _impl(self, request: ContextRequest, settings: RoomSettings):
        return None


class RoomCog(PluginCog, name="Rooms"):
    def __init__(self, bot: Any) -> None:
        super().__init__(bot)
        self.changes: list[dict[str, Any]] = []
        self.posted: list[str] = []
        self.host.events.subscribe("settings_changed", lambda **p: self.changes.append(p))

    @commands.command()
    async def elsewhere(self, ctx: commands.Context[Any], *, text: str) -> None:
        """Answer as if for another platform's chat, and report what was posted."""

        async def deliver(answer: str) -> str | None:
            self.posted.append(answer)
            return answer if "drop" not in text else None

        request = ContextRequest(
            guild_id=ctx.guild.id, channel_id=ctx.channel.id, text=text, user_name="viewer"
        )
        posted = await self.host.answer(request, deliver)
        await ctx.send(f"posted={posted!r} names={self.host.names()} prefix={self.host.prefix}")


async def test_answer_elsewhere_names_check_setting_and_settings_changed(tmp_path):
    holder: dict[int, int] = {}
    rooms = hark.Plugin(
        description="Rooms",
        settings=RoomSettings,
        providers=[lambda: RoomContext(holder)],
        cogs=[RoomCog],
    )
    plugins = {"rooms": rooms, "llm": fake_plugin(EchoGenerator())}
    async with BotHarness(tmp_path, plugins=plugins, config={"trigger_names": ["robot"]}) as h:
        other_guild = h.server.create_guild("Other")
        foreign = h.server.create_text_channel(other_guild, "theirs")
        holder.update({h.channel.id: h.guild.id, foreign.id: other_guild.id})
        cog = h.bot.get_cog("Rooms")

        refused = await h.ask(f"!config rooms room {foreign.id}", author=h.admin)
        assert "that channel is not in this server" in refused.content
        done = await h.ask(f"!config rooms room {h.channel.id}", author=h.admin)
        assert "is now" in done.content
        assert cog.changes == [
            {"plugin_id": "rooms", "key": "room", "scope": "server", "target_id": h.guild.id}
        ]
        fixed = await h.ask("!config rooms endpoint ws://y --global", author=h.server.owner)
        assert "can be set only in bot.toml or the environment" in fixed.content

        answer = await h.ask("!elsewhere hello from afar")
        assert "hello from afar" in cog.posted[-1]
        assert (
            answer.content.startswith("posted='") and "names=['robot'] prefix=!" in answer.content
        )
        history = h.bot.runtime.history
        rows = await history.recent(h.channel.id, 10)
        assert any("hello from afar" in m.content for m in rows if m.role == "assistant")
        dropped = await h.ask("!elsewhere drop this one")
        assert dropped.content.startswith("posted=None")
        rows = await history.recent(h.channel.id, 10)
        assert not any("drop this one" in m.content for m in rows if m.role == "assistant")
