"""A plugin whose command name is taken fails to load; the plugin that had it keeps
working (built-ins are attached first, so a newcomer can't knock out chat)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from discord import app_commands
from discord.ext import commands

from hark import PluginCog
from hark.testing.fakes import EchoGenerator, fake_plugin
from hark.testing.harness import BotHarness


class PingCog(PluginCog):
    @commands.command(name="ping")
    async def ping(self, ctx: commands.Context[Any]) -> None:
        await ctx.send("my own pong")


class AliasCog(PluginCog):
    @commands.command(name="hark-status", aliases=["plugins"])
    async def status(self, ctx: commands.Context[Any]) -> None:
        await ctx.send("shadowed")


class SlashCog(PluginCog):
    @app_commands.command(name="weather", description="weather")
    async def weather(self, interaction: Any) -> None:
        await interaction.response.send_message("sunny")


class FirstCog(PluginCog):
    @commands.command(name="harmless")
    async def harmless(self, ctx: commands.Context[Any]) -> None:
        await ctx.send("harmless")


async def test_a_plugin_defining_ping_fails_to_load_and_chat_keeps_working(tmp_path):
    plugins = {
        # Named to sort before "chat" and "core": load order alone must not decide.
        "aaa_pinger": fake_plugin(doc="Pings.", cogs=[FirstCog, PingCog]),
        "llm": fake_plugin(EchoGenerator()),
    }
    async with BotHarness(tmp_path, plugins=plugins) as h:
        info = h.bot.runtime.manager.get("aaa_pinger")
        assert info.status == "error"
        assert info.error == "command !ping is already registered by plugin chat"
        # All or none: its other command went too.
        assert h.bot.get_command("harmless") is None
        pong = await h.ask("!ping")
        assert "my own pong" not in pong.content
        # Mentions and !ask still reach the built-in chat plugin.
        answer = await h.ask("!ask hello there")
        assert "hello there" in answer.content
        listing = await h.ask("!plugins")
        assert "`aaa_pinger`" in listing.content and "!ping" in listing.content
        assert "chat" in listing.content


async def test_an_alias_and_a_slash_name_clash_too(tmp_path):
    weather_twice = {
        "aliased": fake_plugin(cogs=[AliasCog]),
        "weather_a": fake_plugin(cogs=[SlashCog]),
        "weather_b": fake_plugin(cogs=[SlashCog]),
    }
    async with BotHarness(tmp_path, plugins=weather_twice) as h:
        manager = h.bot.runtime.manager
        assert manager.get("aliased").error == (
            "command !plugins is already registered by plugin core"
        )
        assert manager.get("weather_a").status == "loaded"
        assert manager.get("weather_b").error == (
            "command /weather is already registered by plugin weather_a"
        )
        assert [c.name for c in h.bot.plugin_app_commands["weather_a"]] == ["weather"]
        assert "weather_b" not in h.bot.plugin_app_commands


async def test_the_docs_list_every_reserved_name(tmp_path):
    docs = (Path(__file__).parents[3] / "docs" / "plugins.md").read_text()
    reserved = docs[docs.index("Reserved by the core") :].split("\n\n", 1)[0]
    async with BotHarness(tmp_path) as h:
        names = {
            ("!" if kind == "prefix" else "/") + name for kind, name, *_ in h.bot.command_owners
        }
    assert names and all(f"`{n}`" in reserved for n in names), names
