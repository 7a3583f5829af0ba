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
