"""Hello: a greeting command, a clock for the prompt and a dice tool (the example plugin)."""

from __future__ import annotations

import datetime
import random

import discord
from discord import app_commands
from discord.ext import commands
from pydantic import BaseModel, Field

import hark


class HelloSettings(hark.Settings):
    """What `!config hello` shows and changes (per server, per channel, or bot-wide)."""

    greeting: str = hark.setting(
        "Hello", min_length=1, max_length=100, description="what `!hello` says before a name"
    )
    clock: bool = hark.setting(True, description="tell the model the current date and time")


class ClockContext(hark.ContextProvider):
    """Tells the model what time it is, so "what day is it?" gets a true answer."""

    name = "clock"
    timeout = 0.5
    # Outside a bot (tests, scripts) only the defaults and the environment count.
    settings_model = HelloSettings

    async def _impl(
        self, request: hark.ContextRequest, *, settings: HelloSettings
    ) -> hark.ContextPart | None:
        if not settings.clock:  # the values for the request's server and channel
            return None
        now = datetime.datetime.now(datetime.UTC)
        text = f"The current date and time is {now:%A %Y-%m-%d %H:%M} UTC."
        return hark.ContextPart([hark.PromptMessage("system", text)], order=30)


class Dice(BaseModel):
    """The arguments of `roll_dice`: their JSON schema is what the model is shown."""

    count: int = Field(1, ge=1, le=20, description="how many dice to roll")
    sides: int = Field(6, ge=2, le=1000, description="faces on each die")


@hark.tool(timeout=2)
async def roll_dice(args: Dice, ctx: hark.ToolContext) -> str:
    """Roll dice and say what came up (for games, or to decide something by chance)."""
    rolls = [random.randint(1, args.sides) for _ in range(args.count)]
    return f"{args.count}d{args.sides}: {' + '.join(map(str, rolls))} = {sum(rolls)}"


class HelloCog(hark.PluginCog, name="Hello"):
    """Greetings. Change them with `!config hello greeting TEXT`."""

    def greet(self, name: str, guild_id: int | None, channel_id: int | None) -> str:
        here = self.host.settings(self.plugin_id, guild_id=guild_id, channel_id=channel_id)
        return f"{here.values.greeting}, {name}!"

    @commands.command()
    async def hello(self, ctx: commands.Context) -> None:
        """Say hello."""
        guild_id = ctx.guild.id if ctx.guild else None
        await ctx.send(self.greet(ctx.author.display_name, guild_id, ctx.channel.id))

    @app_commands.command(name="hello", description="Say hello")
    async def slash_hello(self, interaction: discord.Interaction) -> None:
        name = interaction.user.display_name
        await interaction.response.send_message(
            self.greet(name, interaction.guild_id, interaction.channel_id)
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not message.author.bot and "hello hark" in message.content.lower():
            await message.add_reaction("\N{WAVING HAND SIGN}")


plugin = hark.Plugin(
    description="A greeting command, a clock for the prompt and a dice tool (the example plugin)",
    settings=HelloSettings,
    providers=[ClockContext],
    cogs=[HelloCog],
    tools=[roll_dice],
)
