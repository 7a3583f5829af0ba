"""Chat: the bot answers in text channels through the server's generator.

Triggers (see :mod:`hark.chat.triggers`): a mention, a reply to the bot, a DM
(``CHAT_ANSWER_DMS``), or a callsign from ``BOT_TRIGGER_NAMES``. Commands are
never answered as chat: a message that is a valid command is left to it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from hark.chat.ratelimit import RateLimiter, parse_rate
from hark.chat.streaming import ChannelTarget, InteractionTarget, ReplyTarget
from hark.chat.triggers import TriggerPolicy
from hark.cog import PluginCog, require_manager
from hark.providers import Capability, ContextRequest, Generator
from hark.providers.errors import ProviderError

log = logging.getLogger(__name__)


# discord.py itself warns ("Can't keep up") above 10 s; nothing that slow is a reading.
_MAX_GATEWAY_LATENCY = 10.0


def sane_gateway_latency(latency: float, interval: float | None) -> float | None:
    """discord.py's heartbeat latency (seconds) if it can be believed, else None.

    ``Client.latency`` is ``KeepAliveHandler.latency``: the HEARTBEAT_ACK's arrival
    minus ``_last_send``. It is ``inf`` until the first ACK. Worse, the keep-alive
    thread hands each heartbeat to the event loop and records ``_last_send`` only
    after it wakes up from waiting on that send; a fast server's ACK is often handled
    by the loop before that, so the ACK is timed from the *previous* heartbeat and
    the "latency" is one whole heartbeat interval (30003 ms against a server
    answering in under 1 ms, with discord.py warning "Can't keep up ... 30.0s
    behind"). So a reading must be finite, positive and well below both the
    interval (``interval`` seconds, when known) and 10 s.
    """
    if not math.isfinite(latency) or latency <= 0:
        return None
    limit = _MAX_GATEWAY_LATENCY
    if interval and interval > 0:
        limit = min(limit, interval / 2)
    return latency if latency < limit else None


def _display_name(user: discord.abc.User) -> str:
    return getattr(user, "display_name", None) or user.name


class ChatCog(PluginCog, name="Chat"):
    """Talk to the bot."""

    def __init__(self, bot) -> None:
        super().__init__(bot)
        config = bot.config
        self.triggers = TriggerPolicy(config.trigger_names, answer_dms=config.answer_dms)
        rate = parse_rate(config.rate_limit)
        self.limiter = RateLimiter(*rate) if rate else None
        # Ids of the bot's recent messages, to spot replies to it when Discord
        # does not include the referenced message.
        self._own_ids: deque[int] = deque(maxlen=512)

    async def cog_load(self) -> None:
        self.bot.chat = self  # hark.bot.ChatService: voice listens for the same callsigns

    async def cog_unload(self) -> None:
        if self.bot.chat is self:
            self.bot.chat = None

    # -- the trigger path --------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None:
            return
        if message.author.id == me.id:
            self._own_ids.append(message.id)
            return
        trigger = self.triggers.match(message, me, own_message_ids=set(self._own_ids))
        if trigger is None or not trigger.text:
            return
        ctx = await self.bot.get_context(message)
        if ctx.valid:
            return  # a command; the command system answers it, exactly once
        if not await self._allowed(message.author.id, message.channel, message):
            return
        request = self._request(message.author, message.channel, trigger.text, kind="text")
        await self.answer(request, ChannelTarget(message.channel, message), typing=message.channel)

    async def _allowed(self, user_id: int, channel: Any, reference: discord.Message | None) -> bool:
        if self.limiter is None:
            return True
        verdict = self.limiter.check(user_id)
        if not verdict.allowed and verdict.notify:
            with contextlib.suppress(discord.HTTPException):
                await ChannelTarget(channel, reference).send(
                    f"You're sending messages faster than I can think. Try again in "
                    f"{max(1, round(verdict.retry_after))}s.",
                    first=True,
                )
        return verdict.allowed

    def _request(
        self,
        author: discord.abc.User,
        channel: Any,
        text: str,
        *,
        kind: str,
        use_history: bool = True,
    ) -> ContextRequest:
        guild = getattr(channel, "guild", None)
        me = guild.me if guild is not None else self.bot.user
        return ContextRequest(
            text=text,
            guild_id=guild.id if guild else None,
            channel_id=channel.id,
            user_id=author.id,
            user_name=_display_name(author),
            bot_name=_display_name(me) if me else None,
            kind=kind,
            use_history=use_history,
        )

    async def answer(
        self, request: ContextRequest, target: ReplyTarget, *, typing: Any = None
    ) -> str | None:
        """Run one turn and stream it to ``target``. Returns the delivered text, or None."""
        return await self.bot.reply(request, target, typing=typing)

    # -- commands ------------------------------------------------------------

    @commands.command()
    async def ask(self, ctx: commands.Context[Any], *, question: str) -> None:
        """Ask a one-off question (the channel's history is not used or kept)."""
        if not await self._allowed(ctx.author.id, ctx.channel, ctx.message):
            return
        request = self._request(ctx.author, ctx.channel, question, kind="text", use_history=False)
        await self.answer(request, ChannelTarget(ctx.channel, ctx.message), typing=ctx.channel)

    @app_commands.command(name="ask", description="Ask the bot a one-off question")
    @app_commands.describe(question="Your question")
    async def slash_ask(self, interaction: discord.Interaction, question: str) -> None:
        if self.limiter is not None:
            verdict = self.limiter.check(interaction.user.id)
            if not verdict.allowed:
                await interaction.response.send_message(
                    f"You're sending messages faster than I can think. Try again in "
                    f"{max(1, round(verdict.retry_after))}s.",
                    ephemeral=True,
                )
                return
        await interaction.response.defer(thinking=True)
        request = self._request(
            interaction.user, interaction.channel, question, kind="text", use_history=False
        )
        await self.answer(request, InteractionTarget(interaction))

    @commands.command()
    async def ping(self, ctx: commands.Context[Any]) -> None:
        """Check the bot is alive: the time to post a reply, and the gateway heartbeat."""
        started = time.perf_counter()
        message = await ctx.reply("Pong!", mention_author=False)
        rest = time.perf_counter() - started
        keep_alive = getattr(self.bot.ws, "_keep_alive", None)  # None before HELLO
        gateway = sane_gateway_latency(self.bot.latency, getattr(keep_alive, "interval", None))
        heartbeat = f"{gateway * 1000:.0f} ms" if gateway is not None else "no reliable reading"
        await message.edit(
            content=f"Pong! REST round trip: {rest * 1000:.0f} ms (posting this reply); "
            f"gateway heartbeat: {heartbeat}."
        )

    @commands.command()
    async def model(self, ctx: commands.Context[Any], *, name: str | None = None) -> None:
        """Show or set (Manage Server) the model of this server's generator."""
        guild_id = ctx.guild.id if ctx.guild else None
        generator = self.bot.control.provider_for(Capability.GENERATE, guild_id)
        if not isinstance(generator, Generator):
            await ctx.reply("No LLM is enabled here.", mention_author=False)
            return
        if name is None:
            current = generator.model_for(guild_id) or "the provider's default"
            await ctx.reply(f"`{generator.id}` uses model `{current}` here.", mention_author=False)
            return
        await require_manager(ctx)
        name = name.strip()
        note = ""
        if generator.supports_model_listing:
            try:
                models = await generator.list_models()
            except ProviderError as exc:
                note = f" (couldn't check it: {exc.message})"
            else:
                matched = generator.match_model(name, models)
                if matched is None:
                    shown = ", ".join(f"`{m}`" for m in models[:20]) or "none"
                    await ctx.reply(
                        f"`{generator.id}` has no model `{name}`. Available: {shown}.",
                        mention_author=False,
                    )
                    return
                name = matched
        await generator.set_model(ctx.guild.id, name)
        await ctx.reply(
            f"`{generator.id}` now uses model `{name}` here.{note}", mention_author=False
        )
