"""`!persona`: show or change the system prompt for this server or channel."""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from hark.chat.persona import PersonaContext
from hark.cog import PluginCog, require_manager
from hark.plugin import RESET_WORDS
from hark.text import split_message


class PersonaCog(PluginCog, name="Persona"):
    """The bot's persona."""

    @property
    def provider(self) -> PersonaContext:
        return next(p for p in self.providers if isinstance(p, PersonaContext))

    async def _show(self, ctx: commands.Context[Any]) -> None:
        guild_id = ctx.guild.id if ctx.guild else None
        prompt, origin = self.provider.prompt_for(guild_id, ctx.channel.id)
        where = {"channel": "this channel's", "server": "this server's", "default": "the default"}[
            origin
        ]
        parts = split_message(f"Using {where} persona:\n>>> {prompt}")
        await ctx.reply(parts[0], mention_author=False)
        for part in parts[1:]:
            await ctx.send(part)

    @commands.group(invoke_without_command=True)
    @commands.guild_only()
    async def persona(self, ctx: commands.Context[Any], *, text: str | None = None) -> None:
        """Show the persona, or set this server's (Manage Server). `reset` restores the default."""
        if text is None:
            await self._show(ctx)
            return
        await self._set(ctx, self.settings.guild(ctx.guild.id), text, "this server")

    @persona.command(name="channel")
    @commands.guild_only()
    async def persona_channel(self, ctx: commands.Context[Any], *, text: str | None = None) -> None:
        """Set this channel's persona (Manage Server). `reset` falls back to the server's."""
        if text is None:
            await self._show(ctx)
            return
        await self._set(ctx, self.settings.channel(ctx.channel.id), text, "this channel")

    async def _set(self, ctx: commands.Context[Any], scope, text: str, where: str) -> None:
        await require_manager(ctx)
        if text.strip().lower() in RESET_WORDS:
            await scope.clear("prompt")
            await ctx.reply(f"Persona for {where} reset.", mention_author=False)
            return
        await scope.set("prompt", text.strip())
        await ctx.reply(f"Persona for {where} updated.", mention_author=False)
