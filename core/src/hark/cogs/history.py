"""`!reset`: forget this channel's conversation."""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from hark.cog import PluginCog


class HistoryCog(PluginCog, name="History"):
    """Conversation memory per channel."""

    @commands.command()
    @commands.has_permissions(manage_messages=True)
    async def reset(self, ctx: commands.Context[Any]) -> None:
        """Forget this channel's conversation history (Manage Messages)."""
        removed = await self.bot.runtime.history.clear(ctx.channel.id)
        await ctx.reply(f"History cleared ({removed} entries).", mention_author=False)
