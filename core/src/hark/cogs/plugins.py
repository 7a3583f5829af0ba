"""`!plugins` and `/plugins`: list plugins and switch them per server.

Anyone may list. Changing a server's switches or provider choices needs Manage
Server (or being the bot's owner); changing the global defaults (`!plugins global ...`)
needs the bot's owner. The core plugin itself can't be disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from hark.cog import PluginCog, can_manage, require_manager
from hark.control import ControlError, parse_capability
from hark.providers import Capability
from hark.store import GLOBAL
from hark.text import split_message
from hark.tools import toolbox_problems

if TYPE_CHECKING:
    from hark.bot import HarkBot

_STATUS_NOTE = {"blocked": "not loaded (HARK_LOAD_PLUGINS / block list)", "error": "failed to load"}


def render_listing(bot: HarkBot, guild_id: int | None, guild_name: str | None) -> str:
    control = bot.control
    lines = [f"**Plugins in {guild_name}**" if guild_name else "**Plugins**"]
    for info in sorted(control.manager.plugins.values(), key=lambda i: (not i.protected, i.id)):
        version = f" {info.version}" if info.version else ""
        provides = ", ".join(info.capabilities) or "nothing"
        if info.loaded:
            if info.protected:
                state = "on (core)"
            else:
                state = "on" if control.is_enabled(info.id, guild_id) else "off"
            # Only the variable's name, never a value.
            needs = "".join(f" — needs `{env}`" for env in info.missing_secrets)
            warn = "".join(f" ⚠ {problem}" for problem in toolbox_problems(info.tools))
            lines.append(f"`{info.id}`{version} — **{state}** — {provides}{needs}{warn}")
        else:
            note = _STATUS_NOTE.get(info.status, info.status)
            error = f": {info.error}" if info.error else ""
            lines.append(f"`{info.id}`{version} — **{note}**{error}")
    lines.append("")
    lines.append("**Providers here**" if guild_id else "**Providers**")
    for capability in Capability.selectable():
        installed = control.manager.providers(capability)
        if not installed:
            lines.append(f"{capability.value}: none installed")
            continue
        current = control.provider_for(capability, guild_id)
        name, origin = control.chosen(capability, guild_id)
        if current is None:
            names = ", ".join(p.id for p in installed)
            lines.append(f"{capability.value}: none enabled (installed: {names})")
            continue
        how = {"server": "chosen here", "global": "global default", "config": "bot.toml"}.get(
            origin, "default"
        )
        if name and current.id != name and current.plugin_id != name:
            how = f"`{name}` is unavailable, using default"
        others = [p.id for p in installed if p is not current]
        also = f" — also: {', '.join(others)}" if others else ""
        reason = current.unavailable_reason()
        warn = f" ⚠ {reason}" if reason else ""
        lines.append(f"{capability.value}: `{current.id}` ({how}){also}{warn}")
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


def render_stats(bot: HarkBot) -> str:
    """Each loaded provider's calls since start: counts and p50/p95 latency (for a
    stream also the time to its first piece, what a conversation waits for)."""
    lines = ["**Provider statistics** (this process, since start)"]
    providers = sorted(
        (p for c in Capability for p in bot.control.manager.providers(c)),
        key=lambda p: (p.capability.value, p.id),
    )
    for provider in dict.fromkeys(providers):
        s = provider.stats
        if not s.calls:
            lines.append(f"`{provider.id}` ({provider.capability.value}): no calls yet")
            continue
        first = ""
        if s.first_samples:
            first = (
                f"; first piece p50 {_ms(s.percentile(50, first=True))},"
                f" p95 {_ms(s.percentile(95, first=True))}"
            )
        lines.append(
            f"`{provider.id}` ({provider.capability.value}): {s.calls} calls, {s.failures} failed,"
            f" {s.retries} retried, {s.timeouts} timed out; p50 {_ms(s.percentile(50))},"
            f" p95 {_ms(s.percentile(95))}{first}"
        )
    if len(lines) == 1:
        lines.append("No providers are loaded.")
    return "\n".join(lines)


class PluginsCog(PluginCog, name="Plugins"):
    """Manage which plugins run in this server."""

    # -- prefix commands -------------------------------------------------

    @commands.group(name="plugins", invoke_without_command=True)
    async def plugins(self, ctx: commands.Context[Any]) -> None:
        """List installed plugins, their state here and the providers in use."""
        guild = ctx.guild
        text = render_listing(self.bot, guild.id if guild else None, guild.name if guild else None)
        for part in split_message(text):
            await ctx.send(part)

    @plugins.command(name="stats")
    async def stats(self, ctx: commands.Context[Any]) -> None:
        """Calls, failures, retries, timeouts and latency of each provider (Manage Server)."""
        await require_manager(ctx)
        for part in split_message(render_stats(self.bot)):
            await ctx.send(part)

    async def _manage(self, ctx: commands.Context[Any], action) -> None:
        await require_manager(ctx)
        try:
            reply = await action(ctx.guild.id)
        except ControlError as exc:
            reply = str(exc)
        await ctx.reply(reply, mention_author=False)

    @plugins.command(name="enable")
    async def enable(self, ctx: commands.Context[Any], plugin_id: str) -> None:
        """Enable a plugin in this server (Manage Server)."""
        await self._manage(ctx, lambda gid: self._switch(plugin_id, gid, True))

    @plugins.command(name="disable")
    async def disable(self, ctx: commands.Context[Any], plugin_id: str) -> None:
        """Disable a plugin in this server (Manage Server)."""
        await self._manage(ctx, lambda gid: self._switch(plugin_id, gid, False))

    @plugins.command(name="use")
    async def use(self, ctx: commands.Context[Any], capability: str, provider: str) -> None:
        """Choose the provider for transcribe, generate or synthesize here (Manage Server)."""
        await self._manage(ctx, lambda gid: self._use(capability, provider, gid))

    @plugins.group(name="global", invoke_without_command=True)
    @commands.is_owner()
    async def global_(self, ctx: commands.Context[Any]) -> None:
        """Owner only: defaults for servers that have not chosen."""
        prefix = ctx.clean_prefix
        await ctx.reply(
            f"Usage: `{prefix}plugins global enable|disable ID`, "
            f"`{prefix}plugins global use CAPABILITY ID`",
            mention_author=False,
        )

    @global_.command(name="enable")
    @commands.is_owner()
    async def global_enable(self, ctx: commands.Context[Any], plugin_id: str) -> None:
        await self._global(ctx, self._switch(plugin_id, GLOBAL, True))

    @global_.command(name="disable")
    @commands.is_owner()
    async def global_disable(self, ctx: commands.Context[Any], plugin_id: str) -> None:
        await self._global(ctx, self._switch(plugin_id, GLOBAL, False))

    @global_.command(name="use")
    @commands.is_owner()
    async def global_use(self, ctx: commands.Context[Any], capability: str, provider: str) -> None:
        await self._global(ctx, self._use(capability, provider, GLOBAL))

    async def _global(self, ctx: commands.Context[Any], action) -> None:
        try:
            reply = await action
        except ControlError as exc:
            reply = str(exc)
        await ctx.reply(reply, mention_author=False)

    # -- the actions, shared by prefix and slash -------------------------

    async def _switch(self, plugin_id: str, guild_id: int, enabled: bool) -> str:
        info = await self.bot.control.set_enabled(plugin_id, guild_id, enabled)
        await self.bot.plugins_changed(None if guild_id == GLOBAL else guild_id)
        where = (
            "by default in every server without its own setting"
            if guild_id == GLOBAL
            else "in this server"
        )
        return f"`{info.id}` is now {'enabled' if enabled else 'disabled'} {where}."

    async def _use(self, capability: str, provider: str, guild_id: int) -> str:
        cap = parse_capability(capability)
        chosen = await self.bot.control.choose(cap, provider, guild_id)
        where = "by default" if guild_id == GLOBAL else "in this server"
        return f"{cap.value} now uses `{chosen.id}` {where}."

    # -- slash commands --------------------------------------------------

    slash = app_commands.Group(
        name="plugins", description="Manage Hark's plugins in this server", guild_only=True
    )

    async def _slash_manage(self, interaction: discord.Interaction, action) -> None:
        if not await can_manage(self.bot, interaction.user, interaction.guild):
            await interaction.response.send_message(
                "You need the Manage Server permission to do that.", ephemeral=True
            )
            return
        # Acknowledge first: the action re-syncs slash commands, which Discord may
        # rate-limit past the 3 s an interaction has to be answered in.
        await interaction.response.defer()
        try:
            reply = await action(interaction.guild_id)
        except ControlError as exc:
            reply = str(exc)
        await interaction.followup.send(reply)

    @slash.command(
        name="list", description="List plugins, their state here and the providers in use"
    )
    async def slash_list(self, interaction: discord.Interaction) -> None:
        guild = interaction.guild
        text = render_listing(self.bot, interaction.guild_id, guild.name if guild else None)
        parts = split_message(text)
        await interaction.response.send_message(parts[0])
        for part in parts[1:]:
            await interaction.followup.send(part)

    @slash.command(name="enable", description="Enable a plugin in this server")
    @app_commands.describe(plugin="Plugin id")
    async def slash_enable(self, interaction: discord.Interaction, plugin: str) -> None:
        await self._slash_manage(interaction, lambda gid: self._switch(plugin, gid, True))

    @slash.command(name="disable", description="Disable a plugin in this server")
    @app_commands.describe(plugin="Plugin id")
    async def slash_disable(self, interaction: discord.Interaction, plugin: str) -> None:
        await self._slash_manage(interaction, lambda gid: self._switch(plugin, gid, False))

    @slash.command(name="use", description="Choose the provider for a capability in this server")
    @app_commands.describe(
        capability="What to choose a provider for", provider="Provider or plugin id"
    )
    @app_commands.choices(
        capability=[
            app_commands.Choice(name=c.value, value=c.value) for c in Capability.selectable()
        ]
    )
    async def slash_use(
        self, interaction: discord.Interaction, capability: str, provider: str
    ) -> None:
        await self._slash_manage(interaction, lambda gid: self._use(capability, provider, gid))

    @slash_enable.autocomplete("plugin")
    @slash_disable.autocomplete("plugin")
    async def _plugin_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        ids = [i.id for i in self.bot.control.manager.loaded() if not i.protected]
        return [app_commands.Choice(name=i, value=i) for i in ids if current.lower() in i][:25]
