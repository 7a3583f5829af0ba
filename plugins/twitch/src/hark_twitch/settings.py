"""What the plugin can be told: its settings model and its secrets.

The core resolves each value (default < bot.toml ``[plugin.twitch]`` < the
environment variable < the owner's bot-wide value < the server's) and generates
``!config twitch`` / ``/config``. The stream, its endpoints and Twitch chat replies
are bot-wide (one Twitch connection per bot process); the commentary channel,
chattiness and interval are per server. The credentials are secrets, read from
the environment only.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict

import hark
from hark_twitch.events import LEVELS

EVENTSUB_URL = "wss://eventsub.wss.twitch.tv/ws"
API_BASE = "https://api.twitch.tv/helix/"
AUTH_BASE = "https://id.twitch.tv/oauth2/"
DEFAULT_CHAT_RATE = "3/60"
DEFAULT_MIN_INTERVAL = 60.0

BOT_WIDE = ("global",)
PER_SERVER = ("global", "server")

CLIENT_ID = hark.Secret("TWITCH_CLIENT_ID", "the Twitch application's client id")
ACCESS_TOKEN = hark.Secret(
    "TWITCH_ACCESS_TOKEN", "a user access token of the channel (an `oauth:` prefix is accepted)"
)
REFRESH_TOKEN = hark.Secret(
    "TWITCH_REFRESH_TOKEN",
    "refreshes an expired access token (with the client secret)",
    required=False,
)
CLIENT_SECRET = hark.Secret(
    "TWITCH_CLIENT_SECRET", "the application's secret, used only for refreshing", required=False
)
SECRETS = (CLIENT_ID, ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET)


def _login(text: str) -> str:
    return text.strip().lstrip("#").lower()


def _base(url: str) -> str:
    """twitchAPI joins paths onto its base URLs, so they must end with a slash."""
    url = url.strip()
    return url if url.endswith("/") else url + "/"


def _rate(text: str) -> str:
    hark.parse_rate_limit(text)  # ValueError: "must look like 8/60"
    return text.strip()


def _words(words: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(w.strip() for w in words if w.strip())


def _mention(value: Any) -> Any:
    """``<#123>`` (what Discord makes of ``#general`` in a message) or ``123`` -> ``123``."""
    if isinstance(value, str):
        match = re.fullmatch(r"<#(\d+)>|(\d+)", value.strip())
        if match is None:
            raise ValueError("must be a text channel, such as #stream")
        return int(match.group(1) or match.group(2))
    return value


def _at_least(floor: float) -> AfterValidator:
    return AfterValidator(lambda seconds: max(floor, seconds))


Login = Annotated[str, AfterValidator(_login)]
BaseUrl = Annotated[str, AfterValidator(_base)]
Rate = Annotated[str, AfterValidator(_rate)]
Backoff = Annotated[float, _at_least(0.01)]
Words = Annotated[tuple[str, ...], AfterValidator(_words)]
ChannelId = Annotated[int | None, BeforeValidator(_mention)]


class TwitchSettings(hark.Settings):
    model_config = ConfigDict(str_strip_whitespace=True)

    # -- this server's commentary ----------------------------------------------
    channel_id: ChannelId = hark.setting(
        None,
        scopes=("server",),
        description="the Discord text channel for commentary on stream events (e.g. #stream);"
        " none: no commentary, events still reach the replies",
    )
    chattiness: str = hark.setting(
        "normal",
        choices=LEVELS,
        scopes=PER_SERVER,
        description="which events get a comment: off (none), low (raids, gift subs),"
        " normal (and subs, resubs, cheers), high (and follows)",
    )
    min_interval: float = hark.setting(
        DEFAULT_MIN_INTERVAL,
        ge=0,
        le=86_400,
        scopes=PER_SERVER,
        description="minimum seconds between two comments in a server",
    )
    # -- the stream (bot-wide; read when the connection starts) ----------------
    twitch_channel: Login = hark.setting(
        "",
        env="TWITCH_CHANNEL",
        scopes=BOT_WIDE,
        description="the Twitch channel to follow (its login name)",
    )
    twitch_channel_id: str = hark.setting(
        "",
        env="TWITCH_CHANNEL_ID",
        scopes=BOT_WIDE,
        description="the channel's Twitch user id, if known: skips the Helix user lookup",
    )
    eventsub_url: str = hark.setting(
        EVENTSUB_URL,
        env="TWITCH_EVENTSUB_URL",
        scopes=BOT_WIDE,
        min_length=1,
        description="the EventSub WebSocket",
    )
    api_base: BaseUrl = hark.setting(
        API_BASE,
        env="TWITCH_API_BASE",
        scopes=BOT_WIDE,
        min_length=1,
        description="Helix (users, EventSub subscriptions, chat messages, streams, channels)",
    )
    auth_base: BaseUrl = hark.setting(
        AUTH_BASE,
        env="TWITCH_AUTH_BASE",
        scopes=BOT_WIDE,
        min_length=1,
        description="Twitch's OAuth endpoints (validate, token)",
    )
    backoff_base: Backoff = hark.setting(
        1.0,
        env="TWITCH_BACKOFF_BASE",
        scopes=BOT_WIDE,
        description="seconds before the first reconnect (at least 0.01)",
    )
    backoff_max: Backoff = hark.setting(
        300.0,
        env="TWITCH_BACKOFF_MAX",
        scopes=BOT_WIDE,
        description="seconds: the ceiling of the exponential reconnect backoff",
    )
    request_timeout: float = hark.setting(
        15.0,
        gt=0,
        scopes=BOT_WIDE,
        description="seconds to wait for Helix, the token endpoint and the WebSocket welcome",
    )
    # -- Twitch chat replies (bot-wide) -----------------------------------------
    chat_replies: bool = hark.setting(
        False,
        env="TWITCH_CHAT_REPLIES",
        scopes=BOT_WIDE,
        description="answer Twitch chat messages that contain a callsign, in Twitch chat"
        " (the token needs user:write:chat)",
    )
    callsigns: Words = hark.setting(
        (),
        env="TWITCH_CALLSIGNS",
        scopes=BOT_WIDE,
        description="words that make a Twitch chat message a question for the bot;"
        " empty: the bot's trigger names (else its Discord name) and @<token login>",
    )
    chat_rate: Rate = hark.setting(
        DEFAULT_CHAT_RATE,
        env="TWITCH_CHAT_RATE",
        scopes=BOT_WIDE,
        description="Twitch chat replies per period for the whole bot, N/SECONDS (0: no limit)",
    )
