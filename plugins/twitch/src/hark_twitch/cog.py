"""``!twitch``: the connection's status, the channel each server links for commentary,
and how chatty the bot is about stream events.

The Cog owns the bot's one Twitch connection: started in ``cog_load`` as a
background task, stopped in ``cog_unload``. Events fan out to every server that
linked a channel (and has the plugin enabled), within that server's chattiness
and minimum interval between comments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import discord
from discord.ext import commands

from hark import ContextRequest, PluginCog
from hark.chat.ratelimit import RateLimiter
from hark.chat.streaming import NO_PINGS, ChannelTarget
from hark.chat.triggers import callsign_pattern
from hark.cog import require_manager
from hark.providers.errors import ProviderError
from hark_twitch.activity import ActivityLog, TwitchActivityContext
from hark_twitch.config import TOPICS, TwitchConfig
from hark_twitch.connection import SUBSCRIBED, TwitchConnection
from hark_twitch.events import COMMENT_LEVEL, KIND_LABELS, LEVELS, TwitchEvent, comments_on

log = logging.getLogger("hark_twitch")

# Twitch rejects chat messages longer than this.
TWITCH_CHAT_LIMIT = 500
DEFAULT_MIN_INTERVAL = 60.0
_LABELS = {t.key: t.label for t in TOPICS}


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


class TwitchCog(PluginCog, name="Twitch"):
    """Twitch stream events: commentary in a linked channel, and context for every reply."""

    default_settings = {
        "channel_id": None,
        "chattiness": "normal",
        "min_interval": DEFAULT_MIN_INTERVAL,
    }

    def __init__(self, bot: Any) -> None:
        super().__init__(bot)
        self.config = TwitchConfig.from_env()
        self.activity = self._activity_log()
        self.connection = TwitchConnection(self.config, on_event=self.handle_event)
        rate = self.config.chat_rate_limit()
        self.chat_limiter = RateLimiter(*rate) if rate else None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_comment: dict[int, float] = {}
        self._commenting: set[int] = set()
        # Counters, for status and tests.
        self.comments = 0
        self.skipped_comments = 0
        self.chat_replies = 0

    def _activity_log(self) -> ActivityLog:
        """The context provider's log (so events reach prompts), or a private one."""
        for provider in self.providers:
            if isinstance(provider, TwitchActivityContext):
                return provider.activity
        return ActivityLog()

    # -- lifecycle -------------------------------------------------------------

    async def cog_load(self) -> None:
        missing = self.config.missing()
        if missing:
            log.info(
                "Twitch: not configured (%s not set); the plugin stays idle.", ", ".join(missing)
            )
            return
        self.activity.channel = self.config.channel
        self.connection.start()

    async def cog_unload(self) -> None:
        await self.connection.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("twitch: %s failed", task.get_name(), exc_info=task.exception())

    # -- events ----------------------------------------------------------------

    def handle_event(self, event: TwitchEvent) -> None:
        """Called by the connection for every event (synchronously, in the bot's loop)."""
        self.activity.add(event)
        if event.kind == "chat":
            if self._wants_reply(event):
                self._spawn(self._reply_in_twitch(event), "twitch-chat-reply")
            return
        if not event.commentable:
            return
        for guild in list(self.bot.guilds):
            self._maybe_comment(guild, event)

    def _maybe_comment(self, guild: discord.Guild, event: TwitchEvent) -> None:
        scope = self.settings.guild(guild.id)
        channel_id = scope.get("channel_id")
        if not channel_id or not self.enabled_in(guild.id):
            return
        if not comments_on(str(scope.get("chattiness")), event.kind):
            return
        now = time.monotonic()
        interval = float(scope.get("min_interval") or 0)
        last = self._last_comment.get(guild.id)
        if guild.id in self._commenting or (last is not None and now - last < interval):
            # The event still reaches the prompt through the activity log.
            self.skipped_comments += 1
            log.debug("twitch: no comment on %s in %s (rate limit)", event.kind, guild.id)
            return
        self._last_comment[guild.id] = now
        self._commenting.add(guild.id)
        self._spawn(self._comment(guild, int(channel_id), event), f"twitch-comment-{guild.id}")

    async def _comment(self, guild: discord.Guild, channel_id: int, event: TwitchEvent) -> None:
        try:
            channel = guild.get_channel(channel_id)
            if channel is None or not hasattr(channel, "send"):
                log.warning(
                    "twitch: the linked channel %s of server %s is gone", channel_id, guild.id
                )
                return
            request = ContextRequest(
                text=event.description,
                guild_id=guild.id,
                channel_id=channel.id,
                user_name="Twitch",
                bot_name=guild.me.display_name if guild.me else None,
                kind="event",
                extra={"twitch_message_id": event.message_id, "twitch_event": event.kind},
            )
            # Failures are logged, not posted: nobody asked for this comment.
            text = await self.bot.reply(request, ChannelTarget(channel, None), notify_errors=False)
            if text:
                self.comments += 1
                await self._speak(guild.id, text)
        finally:
            self._commenting.discard(guild.id)

    async def _speak(self, guild_id: int, text: str) -> bool:
        """Say ``text`` in the server's voice session, when the bot offers ``speak``."""
        speak = getattr(self.bot, "speak", None)
        if not callable(speak):
            return False
        try:
            return bool(await speak(guild_id, text))
        except Exception:
            log.warning("twitch: speaking the comment in server %s failed", guild_id, exc_info=True)
            return False

    # -- Twitch chat replies ------------------------------------------------------

    def callsigns(self) -> list[str]:
        if self.config.callsigns:
            return list(self.config.callsigns)
        names = list(self.bot.config.trigger_names or [])
        if not names and self.bot.user is not None:
            names.append(self.bot.user.name)
        token = self.connection.token
        if token is not None:
            names.append(f"@{token.login}")
        return names

    def _wants_reply(self, event: TwitchEvent) -> bool:
        if not self.config.chat_replies or not event.chat_text:
            return False
        token = self.connection.token
        if token is not None and event.user_id == token.user_id:
            return False  # our own message, echoed back by Twitch
        pattern = callsign_pattern(self.callsigns())
        return bool(pattern and pattern.search(event.chat_text))

    async def _reply_in_twitch(self, event: TwitchEvent) -> None:
        if self.chat_limiter is not None and not self.chat_limiter.check(0).allowed:
            log.info("twitch: not answering %s in Twitch chat (rate limit)", event.user_name)
            return
        token = self.connection.token
        request = ContextRequest(
            text=event.chat_text,
            user_name=event.user_name,
            bot_name=token.login if token else None,
            kind="text",
            use_history=False,
            extra={"platform": "twitch", "twitch_message_id": event.message_id},
        )
        conversation = self.bot.runtime.conversation
        with self.bot.inflight():
            try:
                turn = await conversation.prepare(request)
                text = "".join([delta async for delta in turn.stream()])
            except ProviderError as exc:
                log.warning("twitch: no reply in Twitch chat: %s", exc)
                return
            text = " ".join(text.split())
            if not text:
                return
            if len(text) > TWITCH_CHAT_LIMIT:
                text = text[: TWITCH_CHAT_LIMIT - 1] + "…"
            try:
                dropped = await self.connection.send_chat(text, reply_to=event.chat_message_id)
            except ProviderError as exc:
                log.warning("twitch: could not post in Twitch chat: %s", exc)
                return
            if dropped:
                log.warning("twitch: Twitch did not post the chat reply: %s", dropped)
                return
            self.chat_replies += 1
            await conversation.record(turn, text)

    # -- commands ----------------------------------------------------------------

    @commands.group(name="twitch", invoke_without_command=True)
    async def twitch(self, ctx: commands.Context[Any]) -> None:
        """Twitch connection status and this server's commentary settings."""
        await self.status(ctx)

    @twitch.command(name="status")
    async def status(self, ctx: commands.Context[Any]) -> None:
        """Connected? Which channel, which subscriptions, the last event."""
        lines = self.status_lines(ctx.guild.id if ctx.guild else None)
        await ctx.send("\n".join(lines), allowed_mentions=NO_PINGS)

    def status_lines(self, guild_id: int | None) -> list[str]:
        conn = self.connection
        config = self.config
        missing = config.missing()
        if missing:
            names = ", ".join(missing)
            verb = "is" if len(missing) == 1 else "are"
            return [
                f"**Twitch**: not configured. {names} {verb} not set in the bot's environment, "
                "so there is no stream to follow."
            ]
        channel = f"twitch.tv/{conn.broadcaster.login if conn.broadcaster else config.channel}"
        if conn.state == "connected":
            as_user = f" as {conn.token.login}" if conn.token else ""
            up = f", up {_ago(time.time() - conn.connected_at)[:-4]}" if conn.connected_at else ""
            head = f"**Twitch**: connected to {channel}{as_user}{up}."
        elif conn.state == "reconnecting":
            wait = ""
            if conn.next_retry_at is not None:
                wait = f", next try in {max(0, round(conn.next_retry_at - time.time()))}s"
            head = (
                f"**Twitch**: not connected to {channel}, reconnecting"
                f" (attempt {conn.attempt}{wait}). Last error: {conn.error}."
            )
        elif conn.state == "failed":
            head = f"**Twitch**: stopped ({channel}): {conn.error}."
        else:
            head = f"**Twitch**: {conn.state} ({channel})."
        lines = [head]
        subs = []
        for key, state in conn.topics.items():
            mark = "✅" if state == SUBSCRIBED else "❌"
            detail = "" if state == SUBSCRIBED else f" ({state})"
            subs.append(f"{_LABELS[key]} {mark}{detail}")
        lines.append("Subscriptions: " + ", ".join(subs))
        if conn.scope_error:
            lines.append(f"⚠ {conn.scope_error[0].upper()}{conn.scope_error[1:]}.")
        if conn.last_event is not None:
            total = sum(conn.counts.values())
            lines.append(
                f"Last event: {conn.last_event.text} ({_ago(time.time() - conn.last_event.at)});"
                f" {total} event{'s' if total != 1 else ''} so far."
            )
        else:
            lines.append("Last event: none yet.")
        if guild_id is not None:
            lines.append(self._server_line(guild_id))
        if config.chat_replies:
            rate = config.chat_rate_limit()
            limit = f", at most {rate[0]} per {rate[1]:g}s" if rate else ""
            names = ", ".join(self.callsigns()) or "none"
            lines.append(f"Twitch chat replies: on (callsigns: {names}{limit}).")
        return lines

    def _server_line(self, guild_id: int) -> str:
        scope = self.settings.guild(guild_id)
        channel_id = scope.get("channel_id")
        level = scope.get("chattiness")
        interval = float(scope.get("min_interval") or 0)
        if not channel_id:
            return (
                "This server: no channel linked for commentary"
                " (`twitch link #channel`, Manage Server); events still reach my replies."
            )
        kinds = [KIND_LABELS[k] for k in COMMENT_LEVEL if comments_on(level, k)]
        about = ", ".join(kinds) if kinds else "nothing"
        return (
            f"This server: commentary in <#{channel_id}>, chattiness {level} (comments on {about}),"
            f" at most one comment every {interval:g}s."
        )

    @twitch.command(name="link")
    async def link(self, ctx: commands.Context[Any], channel: discord.TextChannel) -> None:
        """Post commentary on stream events in CHANNEL (Manage Server)."""
        await require_manager(ctx)
        assert ctx.guild is not None
        if channel.guild.id != ctx.guild.id:
            await ctx.reply("That channel is not in this server.", mention_author=False)
            return
        await self.settings.guild(ctx.guild.id).set("channel_id", channel.id)
        level = self.settings.guild(ctx.guild.id).get("chattiness")
        note = (
            " (chattiness is `off`: set it with `twitch chattiness low`)" if level == "off" else ""
        )
        await ctx.reply(
            f"Twitch commentary will be posted in {channel.mention}{note}.",
            mention_author=False,
            allowed_mentions=NO_PINGS,
        )

    @twitch.command(name="unlink")
    async def unlink(self, ctx: commands.Context[Any]) -> None:
        """Stop posting commentary in this server (Manage Server)."""
        await require_manager(ctx)
        assert ctx.guild is not None
        await self.settings.guild(ctx.guild.id).clear("channel_id")
        await ctx.reply("No more Twitch commentary in this server.", mention_author=False)

    @twitch.command(name="chattiness")
    async def chattiness(self, ctx: commands.Context[Any], level: str | None = None) -> None:
        """Show or set (Manage Server) how chatty the bot is: off, low, normal or high."""
        guild_id = ctx.guild.id if ctx.guild else None
        scope = self.settings.guild(guild_id)
        described = {
            level_: ", ".join(KIND_LABELS[k] for k in COMMENT_LEVEL if comments_on(level_, k))
            or "nothing"
            for level_ in LEVELS
        }
        if level is None:
            current = scope.get("chattiness")
            await ctx.reply(
                f"Chattiness here is `{current}` (comments on {described.get(current, '?')}). "
                "Levels: " + "; ".join(f"`{k}`: {v}" for k, v in described.items()) + ".",
                mention_author=False,
            )
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        level = level.lower().strip()
        if level not in LEVELS:
            await ctx.reply(
                f"`{level}` is not a level; use one of: {', '.join(LEVELS)}.", mention_author=False
            )
            return
        await self.settings.guild(ctx.guild.id).set("chattiness", level)
        await ctx.reply(
            f"Chattiness is now `{level}`: comments on {described[level]}.", mention_author=False
        )

    @twitch.command(name="interval")
    async def interval(self, ctx: commands.Context[Any], seconds: float | None = None) -> None:
        """Show or set (Manage Server) the minimum seconds between two comments."""
        guild_id = ctx.guild.id if ctx.guild else None
        if seconds is None:
            current = float(self.settings.guild(guild_id).get("min_interval") or 0)
            await ctx.reply(f"At most one comment every {current:g}s here.", mention_author=False)
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        if not 0 <= seconds <= 86_400:
            await ctx.reply("Use a number of seconds from 0 to 86400.", mention_author=False)
            return
        await self.settings.guild(ctx.guild.id).set("min_interval", seconds)
        await ctx.reply(f"At most one comment every {seconds:g}s now.", mention_author=False)
