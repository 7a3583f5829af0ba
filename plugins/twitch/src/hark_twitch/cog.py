"""``!twitch``: the connection's status. Everything it can be told is a setting
(``!config twitch``): the commentary channel, chattiness and interval per server,
the stream and Twitch chat replies bot-wide.

The Cog owns the bot's one Twitch connection: started in ``cog_load`` as the
bot's run_once job ``"twitch"``, so of a bot running as several processes only
the leader connects (another takes over when it dies); stopped in ``cog_unload``.
The leader relays every event to the other processes (:mod:`hark_twitch.relay`),
and each process fans it out to its own servers that linked a channel (and have
the plugin enabled), within that server's chattiness and minimum interval
between comments. Each server where the plugin is on also
keeps its last stream events for the ``twitch_recent_events`` tool, and the Cog
attaches itself under its host so the plugin's tools find this connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from typing import Any

import discord
from discord.ext import commands

from hark import (
    NO_PINGS,
    ContextRequest,
    PluginCog,
    ProviderError,
    RateLimiter,
    callsign_pattern,
    parse_rate_limit,
)
from hark.api import LeaderJob
from hark_twitch import tools
from hark_twitch.activity import ActivityLog, RecentEvents, TwitchActivityContext
from hark_twitch.config import TOPICS, TwitchConfig
from hark_twitch.connection import SUBSCRIBED, TwitchConnection
from hark_twitch.events import COMMENT_LEVEL, KIND_LABELS, TwitchEvent, comments_on
from hark_twitch.relay import EventRelay
from hark_twitch.settings import TwitchSettings

log = logging.getLogger("hark_twitch")

# Twitch rejects chat messages longer than this.
TWITCH_CHAT_LIMIT = 500
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

    def __init__(self, bot: Any) -> None:
        super().__init__(bot)
        self.activity = self._activity_log()
        # The last stream events each server saw (the twitch_recent_events tool).
        self.recent = RecentEvents()
        # Read in cog_load, once the bot's settings are open.
        self.config = TwitchConfig()
        self.connection = TwitchConnection(self.config, on_event=self.handle_event)
        self._chat_limiter: RateLimiter | None = None
        self._chat_limiter_for: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_comment: dict[int, float] = {}
        self._commenting: set[int] = set()
        # Counters, for status and tests.
        self.comments = 0
        self.skipped_comments = 0
        self.chat_replies = 0
        # Every event this process handled, its own or relayed (`!twitch status`).
        self.last_event: TwitchEvent | None = None
        self.counts: Counter[str] = Counter()
        # Set in cog_load when Twitch is configured: the relay between the bot's
        # processes, and this process's part in running the connection.
        self.relay: EventRelay | None = None
        self.leadership: LeaderJob | None = None

    def _activity_log(self) -> ActivityLog:
        """The context provider's log (so events reach prompts), or a private one."""
        context = self.provider(TwitchActivityContext)
        return context.activity if context is not None else ActivityLog()

    def here(self, guild_id: int | None = None) -> TwitchSettings:
        """The plugin's settings for a server (None: the bot-wide values)."""
        return self.host.settings(self.plugin_id, guild_id=guild_id).values

    # -- lifecycle -------------------------------------------------------------

    async def cog_load(self) -> None:
        # The connection's settings are read here: a change applies at the next start.
        self.config = TwitchConfig.read(self.here())
        self.connection = TwitchConnection(self.config, on_event=self.handle_event)
        # Even unconfigured: the tools then say Twitch is not set up.
        tools.attach(self.host, self)
        missing = self.config.missing()
        if missing:
            log.info(
                "Twitch: not configured (%s not set); the plugin stays idle.", ", ".join(missing)
            )
            return
        self.activity.channel = self.config.settings.twitch_channel
        # One process of the bot holds the connection (the leader of "twitch"); every
        # process, the leader too, handles the events the relay brings from the others.
        self.connection.state = "standby"
        self.relay = EventRelay(
            self.host.database(self.plugin_id),
            origin=secrets.token_hex(8),
            on_event=self._relayed,
        )
        await self.relay.open()
        self._spawn(self.relay.run(), "twitch-relay")
        self.leadership = self.host.run_once("twitch", self._lead)

    async def _lead(self) -> None:
        """The run_once job: hold the connection while this process leads."""
        try:
            await self.connection.run()
        finally:
            if self.connection.state == "stopped":
                self.connection.state = "standby"

    async def cog_unload(self) -> None:
        tools.detach(self.host, self)
        if self.leadership is not None:
            await self.leadership.stop()
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

    def handle_event(self, event: TwitchEvent, *, relayed: bool = False) -> None:
        """Called for every event, synchronously in the bot's loop: by the connection
        (this process leads; the event is passed on to the others) or by the relay
        (``relayed``: another process holds the connection)."""
        self.last_event = event
        self.counts[event.kind] += 1
        self.activity.add(event)
        if not relayed and self.relay is not None:
            self.relay.publish(event)
        if event.kind == "chat":
            # Answered in Twitch chat by the process holding the connection alone.
            if not relayed and self._wants_reply(event):
                self._spawn(self._reply_in_twitch(event), "twitch-chat-reply")
            return
        # Stream events (never chat: it would push them out) for the recent-events tool.
        # This process's servers (its shards'): the other processes comment in theirs.
        guilds = list(self.bot.guilds)
        self.recent.add(None, event)
        # Servers the bot left lose their events (a listener would not hear a server
        # where the plugin is off).
        self.recent.keep_only({g.id for g in guilds})
        for guild in guilds:
            if self.enabled_in(guild.id):
                self.recent.add(guild.id, event)
                if event.commentable:
                    self._maybe_comment(guild, event)

    def _relayed(self, event: TwitchEvent) -> None:
        self.handle_event(event, relayed=True)

    def _maybe_comment(self, guild: discord.Guild, event: TwitchEvent) -> None:
        settings = self.here(guild.id)
        channel_id = settings.channel_id
        if not channel_id or not comments_on(settings.chattiness, event.kind):
            return
        now = time.monotonic()
        last = self._last_comment.get(guild.id)
        if guild.id in self._commenting or (
            last is not None and now - last < settings.min_interval
        ):
            # The event still reaches the prompt through the activity log.
            self.skipped_comments += 1
            log.debug("twitch: no comment on %s in %s (rate limit)", event.kind, guild.id)
            return
        self._last_comment[guild.id] = now
        self._commenting.add(guild.id)
        self._spawn(self._comment(guild, channel_id, event), f"twitch-comment-{guild.id}")

    async def _comment(self, guild: discord.Guild, channel_id: int, event: TwitchEvent) -> None:
        try:
            # Only a channel of this server: a server's setting never posts in another's.
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
            text = await self.host.reply(channel.id, request, notify_errors=False)
            if text:
                self.comments += 1
                await self._speak(guild.id, text)
        finally:
            self._commenting.discard(guild.id)

    async def _speak(self, guild_id: int, text: str) -> bool:
        """Say ``text`` in the server's voice session, if the bot is in one there."""
        try:
            return await self.host.speak(guild_id, text)
        except Exception:
            log.warning("twitch: speaking the comment in server %s failed", guild_id, exc_info=True)
            return False

    # -- Twitch chat replies ------------------------------------------------------

    def callsigns(self) -> list[str]:
        configured = self.here().callsigns
        if configured:
            return list(configured)
        names = self.host.names()
        token = self.connection.token
        if token is not None:
            names.append(f"@{token.login}")
        return names

    def _wants_reply(self, event: TwitchEvent) -> bool:
        if not self.here().chat_replies or not event.chat_text:
            return False
        token = self.connection.token
        if token is not None and event.user_id == token.user_id:
            return False  # our own message, echoed back by Twitch
        pattern = callsign_pattern(self.callsigns())
        return bool(pattern and pattern.search(event.chat_text))

    def chat_limiter(self) -> RateLimiter | None:
        """The bot-wide limiter of Twitch chat replies (None: no limit)."""
        rate = self.here().chat_rate
        if rate != self._chat_limiter_for:
            parsed = parse_rate_limit(rate)
            self._chat_limiter = RateLimiter(*parsed) if parsed else None
            self._chat_limiter_for = rate
        return self._chat_limiter

    async def _reply_in_twitch(self, event: TwitchEvent) -> None:
        limiter = self.chat_limiter()
        if limiter is not None and not limiter.check(0).allowed:
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

        async def deliver(text: str) -> str | None:
            text = " ".join(text.split())
            if len(text) > TWITCH_CHAT_LIMIT:
                text = text[: TWITCH_CHAT_LIMIT - 1] + "…"
            try:
                dropped = await self.connection.send_chat(text, reply_to=event.chat_message_id)
            except ProviderError as exc:
                log.warning("twitch: could not post in Twitch chat: %s", exc)
                return None
            if dropped:
                log.warning("twitch: Twitch did not post the chat reply: %s", dropped)
                return None
            self.chat_replies += 1
            return text

        try:
            await self.host.answer(request, deliver)
        except ProviderError as exc:
            log.warning("twitch: no reply in Twitch chat: %s", exc)

    # -- commands ----------------------------------------------------------------

    @commands.group(name="twitch", invoke_without_command=True)
    async def twitch(self, ctx: commands.Context[Any]) -> None:
        """Twitch connection status and this server's commentary (settings: `!config twitch`)."""
        await self.status(ctx)

    @twitch.command(name="status")
    async def status(self, ctx: commands.Context[Any]) -> None:
        """Connected? Which channel, which subscriptions, the last event, which process."""
        leader = await self.leadership.holder() if self.leadership is not None else None
        lines = self.status_lines(
            ctx.guild.id if ctx.guild else None, ctx.clean_prefix, leader=leader
        )
        await ctx.send("\n".join(lines), allowed_mentions=NO_PINGS)

    def status_lines(
        self, guild_id: int | None, prefix: str = "!", *, leader: str | None = None
    ) -> list[str]:
        """The status; ``leader`` is the process holding the connection, if known."""
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
        login = conn.broadcaster.login if conn.broadcaster else config.settings.twitch_channel
        channel = f"twitch.tv/{login}"
        standby = conn.state == "standby"
        if standby and leader:
            head = (
                f"**Twitch**: {channel} is followed by another process of this bot"
                f" ({leader}), which passes its events on to this one."
            )
        elif standby:
            head = (
                f"**Twitch**: no process of this bot is connected to {channel} right now;"
                " one of them takes over in a few seconds."
            )
        elif conn.state == "connected":
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
        if not standby:
            if leader:
                lines.append(f"Connection held by this process ({leader}) for the whole bot.")
            subs = []
            for key, state in conn.topics.items():
                mark = "✅" if state == SUBSCRIBED else "❌"
                detail = "" if state == SUBSCRIBED else f" ({state})"
                subs.append(f"{_LABELS[key]} {mark}{detail}")
            lines.append("Subscriptions: " + ", ".join(subs))
            if conn.scope_error:
                lines.append(f"⚠ {conn.scope_error[0].upper()}{conn.scope_error[1:]}.")
        if self.last_event is not None:
            total = sum(self.counts.values())
            lines.append(
                f"Last event: {self.last_event.text} ({_ago(time.time() - self.last_event.at)});"
                f" {total} event{'s' if total != 1 else ''} so far."
            )
        else:
            lines.append("Last event: none yet.")
        if guild_id is not None:
            lines.append(self._server_line(guild_id, prefix))
        bot_wide = self.here()
        if bot_wide.chat_replies:
            rate = parse_rate_limit(bot_wide.chat_rate)
            limit = f", at most {rate[0]} per {rate[1]:g}s" if rate else ""
            names = ", ".join(self.callsigns()) or "none"
            lines.append(f"Twitch chat replies: on (callsigns: {names}{limit}).")
        return lines

    def _server_line(self, guild_id: int, prefix: str) -> str:
        settings = self.here(guild_id)
        level = settings.chattiness
        if not settings.channel_id:
            return (
                "This server: no channel linked for commentary"
                f" (`{prefix}config twitch channel_id #channel`, Manage Server);"
                " events still reach my replies."
            )
        kinds = [KIND_LABELS[k] for k in COMMENT_LEVEL if comments_on(level, k)]
        about = ", ".join(kinds) if kinds else "nothing"
        return (
            f"This server: commentary in <#{settings.channel_id}>, chattiness {level}"
            f" (comments on {about}), at most one comment every {settings.min_interval:g}s."
        )
