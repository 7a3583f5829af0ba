"""Twitch: stream events (chat, follows, subs, cheers, raids) as context and commentary.

One EventSub WebSocket connection per bot follows ``TWITCH_CHANNEL`` (in a bot of
several processes, held by one of them and its events relayed to the others).
Recent activity becomes part of every prompt (:class:`TwitchActivityContext`),
servers that link a channel (``!config twitch channel_id #channel``) get the bot's
comments on raids, subs, cheers and follows, and Twitch chat messages that name
the bot can be answered in Twitch chat. Two read-only tools let the model look
things up: ``twitch_status`` (live now? title, category, viewers, uptime) and
``twitch_recent_events`` (the server's latest raids, follows, subs, cheers).
Without ``TWITCH_CLIENT_ID`` / ``TWITCH_ACCESS_TOKEN`` / ``TWITCH_CHANNEL`` the
plugin loads, logs one line and stays idle.
"""

from __future__ import annotations

import hark
from hark_twitch.activity import ActivityLog, RecentEvents, TwitchActivityContext
from hark_twitch.cog import TwitchCog
from hark_twitch.config import TOPICS, TwitchConfig
from hark_twitch.connection import TwitchConnection
from hark_twitch.events import LEVELS, TwitchEvent, comments_on, parse_notification
from hark_twitch.eventsub import EventSubSession
from hark_twitch.relay import MIGRATIONS, EventRelay
from hark_twitch.settings import SECRETS, TwitchSettings
from hark_twitch.tools import TOOLS, TwitchToolError, twitch_recent_events, twitch_status

__all__ = [
    "LEVELS",
    "SECRETS",
    "TOOLS",
    "TOPICS",
    "ActivityLog",
    "EventRelay",
    "EventSubSession",
    "RecentEvents",
    "TwitchActivityContext",
    "TwitchCog",
    "TwitchConfig",
    "TwitchConnection",
    "TwitchEvent",
    "TwitchSettings",
    "TwitchToolError",
    "comments_on",
    "parse_notification",
    "plugin",
    "twitch_recent_events",
    "twitch_status",
]

plugin = hark.Plugin(
    description="Twitch stream events (chat, follows, subs, cheers, raids) as context"
    " and commentary",
    settings=TwitchSettings,
    secrets=SECRETS,
    providers=[TwitchActivityContext],
    cogs=[TwitchCog],
    tools=list(TOOLS),
    migrations=MIGRATIONS,
)
