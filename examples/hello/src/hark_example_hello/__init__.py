"""Hello: a greeting command and a clock for the prompt (the example plugin)."""

from __future__ import annotations

import datetime

import discord
from discord import app_commands
from discord.ext import commands

from hark import ContextPart, ContextProvider, ContextRequest, PluginCog, PromptMessage, hookimpl


class ClockContext(ContextProvider):
    """Tells the model what time it is, so "what day is it?" gets a true answer."""

    name = "clock"
    timeout = 0.5

    async def _impl(self, request: ContextRequest) -> ContextPart | None:
        now = datetime.datetime.now(datetime.UTC)
        text = f"The current date and time is {now:%A %Y-%m-%d %H:%M} UTC."
        return ContextPart([PromptMessage("system", text)], order=30)


class HelloCog(PluginCog, name="Hello"):
    """Greetings."""

    default_settings = {"greeting": "Hello"}

    def _greeting(self, guild_id: int | None, name: str) -> str:
        return f"{self.settings.guild(guild_id).get('greeting')}, {name}!"

    @commands.command()
    async def hello(self, ctx: commands.Context) -> None:
        """Say hello."""
        await ctx.send(self._greeting(ctx.guild and ctx.guild.id, ctx.author.display_name))

    @commands.command()
    @commands.guild_only()
    @commands.has_guild_permissions(manage_guild=True)
    async def greeting(self, ctx: commands.Context, *, text: str) -> None:
        """Set this server's greeting (Manage Server)."""
        await self.settings.guild(ctx.guild.id).set("greeting", text)
        await ctx.send(f"Greeting set to: {text}")

    @app_commands.command(name="hello", description="Say hello")
    async def slash_hello(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            self._greeting(interaction.guild_id, interaction.user.display_name)
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not message.author.bot and "hello hark" in message.content.lower():
            await message.add_reaction("\N{WAVING HAND SIGN}")


@hookimpl
def register_context_providers(register):
    register(ClockContext())


@hookimpl
def register_cogs(register):
    register(HelloCog)
