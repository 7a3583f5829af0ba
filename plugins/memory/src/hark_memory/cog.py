"""`!memory` and `!forget me`: what the bot remembers, shown and erased on request."""

from __future__ import annotations

import datetime
from typing import Any

import discord
from discord.ext import commands

import hark
from hark_memory import tools
from hark_memory.context import MemoryContext
from hark_memory.engine import Memory
from hark_memory.store import Fact, space_of

LISTED = 25  # facts shown by one `!memory`


def _line(fact: Fact) -> str:
    day = datetime.datetime.fromtimestamp(fact.updated_at, datetime.UTC).strftime("%Y-%m-%d")
    return f"`#{fact.id}` {fact.text} (importance {fact.importance}, {day})"


class MemoryCog(hark.PluginCog, name="Memory"):
    """Long-term memory: `!memory`, `!memory about @member`, `!forget me`,
    `!memory forget ID`, `!memory off|on [channel]`."""

    def __init__(self, bot: Any) -> None:
        super().__init__(bot)
        self.memory: Memory | None = None

    async def cog_load(self) -> None:
        self.memory = Memory(self.host, self.plugin_id)
        context = self.provider(MemoryContext)
        if context is not None:
            context.memory = self.memory
        tools.attach(self.host, self.memory)
        self.memory.start()

    async def on_shutdown(self) -> None:
        await self._detach()

    async def cog_unload(self) -> None:
        await self._detach()

    async def _detach(self) -> None:
        memory, self.memory = self.memory, None
        if memory is None:
            return
        context = self.provider(MemoryContext)
        if context is not None and context.memory is memory:
            context.memory = None
        tools.detach(self.host, memory)
        await memory.stop()

    async def _send(self, ctx: commands.Context[Any], text: str) -> None:
        for part in hark.split_message(text):
            await ctx.send(part, allowed_mentions=hark.NO_PINGS)

    def _space(self, ctx: commands.Context[Any]) -> str:
        space = space_of(ctx.guild.id if ctx.guild else None, ctx.author.id)
        assert space is not None  # an author is always there
        return space

    def _ready(self) -> Memory:
        if self.memory is None:
            raise commands.CommandError("memory is not running")
        return self.memory

    async def _list(self, ctx: commands.Context[Any], user: discord.abc.User, whose: str) -> None:
        memory = self._ready()
        facts = await memory.store.about(self._space(ctx), user.id, limit=LISTED + 1)
        where = "here" if ctx.guild else "in our DMs"
        if not facts:
            await self._send(ctx, f"I don't remember anything about {whose} {where}.")
            return
        lines = [f"What I remember about {whose} {where}:"]
        lines += [_line(f) for f in facts[:LISTED]]
        if len(facts) > LISTED:
            lines.append(f"…and more (the {LISTED} most important are shown).")
        channel_id = ctx.channel.id
        if not memory.settings(ctx.guild.id if ctx.guild else None, channel_id).enabled:
            lines.append("(Memory is off in this channel: nothing new is learned here.)")
        await self._send(ctx, "\n".join(lines))

    @commands.group(name="memory", invoke_without_command=True)
    async def memory_group(self, ctx: commands.Context[Any]) -> None:
        """What the bot remembers about you here."""
        await self._list(ctx, ctx.author, "you")

    @memory_group.command(name="about")
    async def memory_about(self, ctx: commands.Context[Any], member: discord.Member) -> None:
        """What it remembers about a member (Manage Server)."""
        await hark.require_manager(ctx)
        await self._list(ctx, member, member.display_name)

    @memory_group.command(name="forget")
    async def memory_forget(self, ctx: commands.Context[Any], fact_id: int) -> None:
        """Delete one fact (its subject, or Manage Server)."""
        memory = self._ready()
        space = self._space(ctx)
        fact = await memory.store.get(space, fact_id)
        if fact is None:
            await self._send(ctx, f"There is no fact #{fact_id} here.")
            return
        if fact.subject_id != ctx.author.id:
            await hark.require_manager(ctx)
        await memory.store.forget(space, fact_id)
        await self._send(ctx, f"Forgotten: fact #{fact_id}.")

    async def _switch(self, ctx: commands.Context[Any], on: bool, where: str | None) -> None:
        await hark.require_manager(ctx)
        assert ctx.guild is not None  # require_manager refuses DMs
        if where not in (None, "channel", "here"):
            await self._send(ctx, f"Use `{ctx.prefix}memory {'on' if on else 'off'} [channel]`.")
            return
        if where is None:
            scope, target = self.settings.guild(ctx.guild.id), ("server", ctx.guild.id)
        else:
            scope, target = self.settings.channel(ctx.channel.id), ("channel", ctx.channel.id)
        await scope.set("enabled", on)
        self.host.events.emit(
            "settings_changed",
            plugin_id=self.plugin_id,
            key="enabled",
            scope=target[0],
            target_id=target[1],
        )
        if not on and self.memory is not None and where is None:
            self.memory.drop_pending(self._space(ctx))
        place = "this server" if where is None else "this channel"
        state = "on" if on else "off: nothing is learned or recalled"
        await self._send(
            ctx, f"Memory is {state} in {place}. What is stored stays until forgotten."
        )

    @memory_group.command(name="off")
    async def memory_off(self, ctx: commands.Context[Any], where: str | None = None) -> None:
        """Turn memory off in this server, or with `channel` in this channel (Manage Server)."""
        await self._switch(ctx, False, where)

    @memory_group.command(name="on")
    async def memory_on(self, ctx: commands.Context[Any], where: str | None = None) -> None:
        """Turn memory back on in this server or channel (Manage Server)."""
        await self._switch(ctx, True, where)

    @commands.command(name="forget")
    async def forget(self, ctx: commands.Context[Any], who: str = "") -> None:
        """`!forget me`: delete everything the bot remembers about you here, for good."""
        if who.lower() != "me":
            await self._send(
                ctx, f"Use `{ctx.prefix}forget me` to erase what I remember about you."
            )
            return
        memory = self._ready()
        space = self._space(ctx)
        # Exchanges still waiting for extraction would bring it back: they go first.
        memory.drop_pending(space, ctx.author.id)
        removed = await memory.store.forget_member(space, ctx.author.id)
        where = "here" if ctx.guild else "in our DMs"
        if removed == 0:
            await self._send(ctx, f"I had nothing stored about you {where}.")
            return
        noun = "fact" if removed == 1 else "facts"
        await self._send(ctx, f"Done: I deleted {removed} {noun} about you {where}.")
