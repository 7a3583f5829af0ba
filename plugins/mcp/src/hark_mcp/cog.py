"""``!mcp``: the MCP servers, their state and tools; ``!mcp reconnect NAME``.

The Cog owns the connections' life: it opens the toolbox when it loads (when the
bot starts) and closes it when it unloads or the bot shuts down, so no server
process outlives the bot.
"""

from __future__ import annotations

from typing import Any

from discord.ext import commands

import hark
from hark_mcp.connection import State
from hark_mcp.toolbox import TOOLBOX, MCPToolbox

# How long `!mcp reconnect` waits to say how it went.
RECONNECT_WAIT = 15.0


class MCPCog(hark.PluginCog, name="MCP"):
    """Tools from MCP servers for the model. `!mcp` lists the servers and their tools."""

    toolbox: MCPToolbox = TOOLBOX

    async def cog_load(self) -> None:
        servers = self.host.settings(self.plugin_id).values.server_tables()
        await self.toolbox.open(self, self.host, servers, plugin_id=self.plugin_id)

    async def cog_unload(self) -> None:
        await self.toolbox.close(self)

    async def on_shutdown(self) -> None:
        await self.toolbox.close(self)

    # -- !mcp -----------------------------------------------------------------------

    def listing(self, guild_id: int | None) -> str:
        box = self.toolbox
        if not box.entries:
            return (
                "No MCP servers are configured. The bot's owner adds them to bot.toml as"
                " `[plugin.mcp.servers.NAME]` tables (see the mcp plugin's README)."
            )
        enabled = box.enabled_names(guild_id)
        lines = ["**MCP servers**"]
        for entry in box.entries:
            connection = box.connections.get(entry.name)
            if connection is None or entry.config is None:
                lines.append(f"`{entry.name}` — **not started**: {entry.problem}")
                continue
            where = f"{entry.config.transport}: {entry.config.where()}"
            here = "on here" if box.usable(entry.name, guild_id, enabled) else "off here"
            state = connection.describe()
            head, _, rest = state.partition(",")
            head, colon, detail = head.partition(":")
            state = f"**{head}**{colon}{detail}{',' if rest else ''}{rest}"
            lines.append(f"`{entry.name}` ({where}) — {state} — {here}")
            if connection.state is State.UP:
                names = box.exposed_names(entry.name)
                allowed = connection.allowed_tools
                shown = ", ".join(f"`{names.get(t.name, t.name)}`" for t in allowed)
                lines.append(f"  tools: {shown or 'none allowed'}")
        lines.append("")
        lines.append(
            f"`{self.host.prefix}config mcp enabled NAMES` chooses the servers used here"
            f" (Manage Server); `{self.host.prefix}mcp reconnect NAME` connects again."
        )
        return "\n".join(lines)

    @commands.group(name="mcp", invoke_without_command=True)
    async def mcp(self, ctx: commands.Context[Any]) -> None:
        """List the MCP servers, their state here and their tools."""
        guild_id = ctx.guild.id if ctx.guild else None
        for part in hark.split_message(self.listing(guild_id)):
            await ctx.send(part, allowed_mentions=hark.NO_PINGS)

    @mcp.command(name="reconnect")
    async def reconnect(self, ctx: commands.Context[Any], name: str) -> None:
        """Connect to an MCP server again now (Manage Server where it is on, or the owner)."""
        box = self.toolbox
        connection = box.connections.get(name)
        if connection is None:
            known = ", ".join(f"`{n}`" for n in box.connections) or "none"
            asked = name[:40].replace("`", "'")
            await ctx.send(
                f"No MCP server `{asked}` is running (servers: {known}).",
                allowed_mentions=hark.NO_PINGS,
            )
            return
        # The connection is the whole bot's: a server's admins may restart it only
        # where it is theirs to use.
        if not await self.bot.is_owner(ctx.author):
            await hark.require_manager(ctx)
            if not box.usable(name, ctx.guild.id if ctx.guild else None):
                await ctx.send(
                    f"`{name}` is off in this server; only the bot's owner can reconnect it here.",
                    allowed_mentions=hark.NO_PINGS,
                )
                return
        before = connection.attempts
        connection.reconnect()
        await ctx.send(f"Reconnecting `{name}`…", allowed_mentions=hark.NO_PINGS)
        wait = min(RECONNECT_WAIT, connection.config.connect_timeout + 1)
        await connection.wait_settled(wait, after=before)
        await ctx.send(f"`{name}`: {connection.describe()}.", allowed_mentions=hark.NO_PINGS)
