"""The plugin's tools, read-only: ``twitch_status`` (is the stream live, what is on)
and ``twitch_recent_events`` (who raided, followed, subscribed or cheered lately).

A tool is declared once per process (``hark.Plugin(tools=...)``), but the Twitch
connection belongs to a bot's Cog. So the Cog attaches itself under its host when
it loads (:func:`attach`), and a tool finds it through ``ctx.host``: the same host
object the core hands every tool of that bot. The core offers the tools only in
servers where the plugin is on; a server reads only the events it saw itself.

What goes wrong (Twitch not set up or unreachable, Helix refusing, a channel the
bot does not follow) is a :class:`TwitchToolError`: the core turns it into an
error result the model reads (``error: twitch_status failed (...)``), never an
error of the turn.
"""

from __future__ import annotations

import datetime
import re
import time
import weakref
from typing import Any, Protocol

from pydantic import BaseModel, Field

import hark
from hark_twitch.activity import RECENT_PER_SERVER, RecentEvents
from hark_twitch.connection import TwitchConnection
from hark_twitch.events import TwitchEvent
from hark_twitch.helix import Helix, TwitchUserInfo

# Each tool makes at most two Helix requests; Helix answers in well under a second.
TOOL_TIMEOUT = 10.0
# Titles and event sentences come from Twitch users: keep them short in the result.
_MAX_TEXT = 200
# What Discord would read as a mention; a zero-width space after "@" defuses it
# (discord.py's escape_mentions), the model still reads the same words.
_MENTION = re.compile(r"@(everyone|here|[!&]?[0-9]{17,20})")
_CHANNEL_URL = re.compile(r"^(?:https?://)?(?:www\.|m\.)?twitch\.tv/", re.IGNORECASE)


class TwitchToolError(Exception):
    """A failure the model should read as the tool's result (``user_message``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message


class StreamSource(Protocol):
    """What the tools read of a running bot (its :class:`~hark_twitch.cog.TwitchCog`)."""

    connection: TwitchConnection
    recent: RecentEvents


_SOURCES: weakref.WeakKeyDictionary[Any, StreamSource] = weakref.WeakKeyDictionary()


def attach(host: Any, source: StreamSource) -> None:
    """Make ``source`` what this plugin's tools read in turns of the bot behind ``host``."""
    _SOURCES[host] = source


def detach(host: Any, source: StreamSource) -> None:
    if _SOURCES.get(host) is source:
        del _SOURCES[host]


def _source(ctx: hark.ToolContext) -> StreamSource:
    try:
        source = _SOURCES.get(ctx.host) if ctx.host is not None else None
    except TypeError:  # a host that cannot be a key: not one a Cog attached to
        source = None
    if source is None:
        raise TwitchToolError("the Twitch plugin is not running in this bot")
    return source


def _plain(text: str, limit: int = _MAX_TEXT) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MENTION.sub("@\u200b\\1", text)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _ago(seconds: float) -> str:
    return "just now" if seconds < 10 else f"{_duration(seconds)} ago"


def _configured(connection: TwitchConnection) -> str:
    """The login of the channel the bot follows (Twitch's spelling once looked up)."""
    if not connection.config.configured:
        raise TwitchToolError(
            "Twitch is not set up on this bot (no channel or credentials), so there is no"
            " stream to look at"
        )
    if connection.broadcaster is not None:
        return connection.broadcaster.login
    return connection.config.settings.twitch_channel


def _asked_login(text: str) -> str:
    """``twitch.tv/Name``, ``#name``, ``@Name`` or ``name`` -> ``name``."""
    text = _CHANNEL_URL.sub("", text.strip()).strip("/")
    return text.lstrip("#@").strip().lower()


async def _helix(connection: TwitchConnection) -> tuple[Helix, TwitchUserInfo]:
    """The Helix client and channel to look things up with: the connection's own, or,
    in a process where another process of the bot holds the connection, one of this
    process's (:meth:`TwitchConnection.lookup`)."""
    if connection.state == "standby":
        try:
            return await connection.lookup()
        except hark.ProviderError as exc:
            raise TwitchToolError(_failure(exc)) from None
    helix = connection.helix
    broadcaster = connection.broadcaster
    if broadcaster is None or helix is None or helix.twitch is None:
        why = connection.state + (f": {connection.error}" if connection.error else "")
        raise TwitchToolError(f"the bot is not connected to Twitch right now ({why})")
    return helix, broadcaster


def _failure(exc: hark.ProviderError) -> str:
    """A Helix error as the model reads it (the connection's Helix client already
    translated it, naming the request, with every token replaced)."""
    text = exc.message
    status = getattr(exc, "status", None)
    if status is not None and f"HTTP {status}" not in text:
        text += f" [HTTP {status}]"
    return text + ("; it may work again in a moment" if exc.retryable else "")


# -- twitch_status ----------------------------------------------------------------


class StatusArgs(BaseModel):
    channel: str = Field(
        "",
        max_length=100,
        description="the Twitch channel's login name, as in twitch.tv/NAME; leave it empty"
        " for the channel this Discord server follows (the only one the bot can look up)",
    )


@hark.tool(timeout=TOOL_TIMEOUT)
async def twitch_status(args: StatusArgs, ctx: hark.ToolContext) -> str:
    """Whether the Twitch stream this Discord server follows is live right now. Live:
    its title, category (game), viewer count, when it started and for how long it has
    been live. Offline: says so, with the channel's last title and category. Use it
    when someone asks if the stream is on, what is being played or streamed, how many
    are watching, or how long the stream has been going."""
    source = _source(ctx)
    connection = source.connection
    login = _configured(connection)
    asked = _asked_login(args.channel)
    if asked and asked != login:
        raise TwitchToolError(
            f"twitch.tv/{asked} is not a channel this server follows; the bot follows only"
            f" twitch.tv/{login} (leave channel empty for it)"
        )
    helix, broadcaster = await _helix(connection)
    try:
        live = await helix.stream(broadcaster.id, broadcaster.login)
        info = None if live is not None else await helix.channel(broadcaster.id, broadcaster.login)
    except hark.ProviderError as exc:
        raise TwitchToolError(_failure(exc)) from None

    name = broadcaster.display_name
    who = f"twitch.tv/{broadcaster.login}"
    if name and name.lower() != broadcaster.login:
        who = f"{_plain(name, 50)} ({who})"
    if live is None:
        lines = [f"{who} is offline."]
        if info is not None and info.title:
            lines.append(f'Last title: "{_plain(info.title)}"')
        if info is not None and info.game_name:
            lines.append(f"Last category: {_plain(info.game_name, 100)}")
        return "\n".join(lines)
    lines = [f"{who} is live now."]
    if live.title:
        lines.append(f'Title: "{_plain(live.title)}"')
    if live.game_name:
        lines.append(f"Category: {_plain(live.game_name, 100)}")
    lines.append(f"Viewers: {live.viewer_count}")
    if live.started_at is not None:
        started = live.started_at
        if started.tzinfo is None:  # Helix sends UTC ("...Z")
            started = started.replace(tzinfo=datetime.UTC)
        up = datetime.datetime.now(datetime.UTC) - started
        when = started.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(f"Started: {when} (live for {_duration(up.total_seconds())})")
    return "\n".join(lines)


# -- twitch_recent_events -----------------------------------------------------------


class RecentArgs(BaseModel):
    count: int = Field(
        5,
        ge=1,
        le=RECENT_PER_SERVER,
        description=f"how many events to return, newest first (1 to {RECENT_PER_SERVER})",
    )


def _event_line(event: TwitchEvent, now: float) -> str:
    return f"- {_ago(now - event.at)} ({event.kind}): {_plain(event.text)}"


@hark.tool(timeout=TOOL_TIMEOUT)
async def twitch_recent_events(args: RecentArgs, ctx: hark.ToolContext) -> str:
    """The latest events on the Twitch channel this Discord server follows, newest
    first, each with how long ago it happened: raids, follows, subs, resubs, gift subs
    and cheers (chat messages are not included). Only events since the bot started.
    Use it when someone asks who raided, followed, subscribed or cheered recently."""
    source = _source(ctx)
    login = _configured(source.connection)
    events = source.recent.latest(ctx.guild_id, args.count)
    where = "in this server" if ctx.guild_id is not None else "by the bot"
    if not events:
        return (
            f"No events from twitch.tv/{login} seen {where} since the bot started"
            " (raids, follows, subs, resubs, gift subs, cheers)."
        )
    now = time.time()
    head = (
        f"The last {len(events)} event{'s' if len(events) != 1 else ''} on"
        f" twitch.tv/{login} seen {where}, newest first:"
    )
    return "\n".join([head, *(_event_line(e, now) for e in events)])


TOOLS = (twitch_status, twitch_recent_events)
