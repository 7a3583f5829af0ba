"""The Twitch connection's configuration, read from the environment (``.env`` included).

One Twitch channel per bot process. Secrets are held in :class:`hark.config.Secret`
(never shown by ``repr``) and registered with the log redactor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from hark.chat.ratelimit import parse_rate
from hark.config import Secret
from hark.logs import register_secret

EVENTSUB_URL = "wss://eventsub.wss.twitch.tv/ws"
API_BASE = "https://api.twitch.tv/helix/"
AUTH_BASE = "https://id.twitch.tv/oauth2/"

DEFAULT_CHAT_RATE = "3/60"


@dataclass(frozen=True, slots=True)
class Topic:
    """One EventSub subscription type the plugin asks for."""

    key: str  # short name used in status lines and settings
    type: str  # EventSub subscription type
    version: str
    scope: str | None  # the user token scope Twitch requires (None: none)
    label: str  # what a person calls it

    def condition(self, broadcaster_id: str, user_id: str) -> dict[str, str]:
        if self.type == "channel.raid":
            return {"to_broadcaster_user_id": broadcaster_id}
        if self.type == "channel.follow":
            return {"broadcaster_user_id": broadcaster_id, "moderator_user_id": user_id}
        if self.type == "channel.chat.message":
            return {"broadcaster_user_id": broadcaster_id, "user_id": user_id}
        return {"broadcaster_user_id": broadcaster_id}


# What the plugin subscribes to, in status order. Scopes are Twitch's documented
# authorization for each type with a user access token over a WebSocket transport.
TOPICS: tuple[Topic, ...] = (
    Topic("chat", "channel.chat.message", "1", "user:read:chat", "chat messages"),
    Topic("follow", "channel.follow", "2", "moderator:read:followers", "follows"),
    Topic("subscribe", "channel.subscribe", "1", "channel:read:subscriptions", "subscriptions"),
    Topic("resub", "channel.subscription.message", "1", "channel:read:subscriptions", "resubs"),
    Topic("gift", "channel.subscription.gift", "1", "channel:read:subscriptions", "gift subs"),
    Topic("cheer", "channel.cheer", "1", "bits:read", "cheers"),
    Topic("raid", "channel.raid", "1", None, "raids"),
)
TOPIC_BY_TYPE: dict[str, Topic] = {t.type: t for t in TOPICS}

# Needed only to answer in Twitch chat.
CHAT_WRITE_SCOPE = "user:write:chat"


def _bool(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _float(value: str | None, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default


def _base(url: str) -> str:
    """twitchAPI joins paths onto its base URLs, so they must end with a slash."""
    return url if url.endswith("/") else url + "/"


@dataclass(slots=True)
class TwitchConfig:
    client_id: str = ""
    access_token: Secret = field(default_factory=lambda: Secret(""))
    channel: str = ""
    # The channel's user id, when known: skips the Helix user lookup (handy against
    # the Twitch CLI's mock EventSub server, which serves no /users).
    channel_id: str = ""
    refresh_token: Secret = field(default_factory=lambda: Secret(""))
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    eventsub_url: str = EVENTSUB_URL
    api_base: str = API_BASE
    auth_base: str = AUTH_BASE
    # Answer Twitch chat messages that contain a callsign, in Twitch chat.
    chat_replies: bool = False
    # Words that make a Twitch chat message a question for the bot (case-insensitive);
    # empty: the bot's trigger names (BOT_TRIGGER_NAMES), else the token's login.
    callsigns: tuple[str, ...] = ()
    # "N/SECONDS" for Twitch chat replies, bot-wide.
    chat_rate: str = DEFAULT_CHAT_RATE
    # Seconds: first reconnect delay, and the ceiling of the exponential backoff.
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    # Seconds to wait for Helix / the token endpoint / the WebSocket welcome.
    request_timeout: float = 15.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TwitchConfig:
        env = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            return (env.get(name) or default).strip()

        callsigns = tuple(w.strip() for w in get("TWITCH_CALLSIGNS").split(",") if w.strip())
        config = cls(
            client_id=get("TWITCH_CLIENT_ID"),
            access_token=Secret(get("TWITCH_ACCESS_TOKEN").removeprefix("oauth:")),
            channel=get("TWITCH_CHANNEL").lstrip("#").lower(),
            channel_id=get("TWITCH_CHANNEL_ID"),
            refresh_token=Secret(get("TWITCH_REFRESH_TOKEN")),
            client_secret=Secret(get("TWITCH_CLIENT_SECRET")),
            eventsub_url=get("TWITCH_EVENTSUB_URL", EVENTSUB_URL),
            api_base=_base(get("TWITCH_API_BASE", API_BASE)),
            auth_base=_base(get("TWITCH_AUTH_BASE", AUTH_BASE)),
            chat_replies=_bool(env.get("TWITCH_CHAT_REPLIES"), False),
            callsigns=callsigns,
            chat_rate=get("TWITCH_CHAT_RATE", DEFAULT_CHAT_RATE),
            backoff_base=max(0.01, _float(env.get("TWITCH_BACKOFF_BASE"), 1.0)),
            backoff_max=max(0.01, _float(env.get("TWITCH_BACKOFF_MAX"), 300.0)),
        )
        config.register_secrets()
        return config

    def register_secrets(self) -> None:
        for secret in (self.access_token, self.refresh_token, self.client_secret):
            register_secret(secret.get())

    def missing(self) -> list[str]:
        """The required variables that are not set (empty: configured)."""
        return [
            name
            for name, value in (
                ("TWITCH_CLIENT_ID", self.client_id),
                ("TWITCH_ACCESS_TOKEN", self.access_token.get()),
                ("TWITCH_CHANNEL", self.channel),
            )
            if not value
        ]

    @property
    def configured(self) -> bool:
        return not self.missing()

    @property
    def can_refresh(self) -> bool:
        return bool(self.refresh_token and self.client_secret)

    def chat_rate_limit(self) -> tuple[int, float] | None:
        try:
            return parse_rate(self.chat_rate)
        except ValueError:
            return parse_rate(DEFAULT_CHAT_RATE)

    def required_scopes(self) -> list[str]:
        scopes = [t.scope for t in TOPICS if t.scope]
        if self.chat_replies:
            scopes.append(CHAT_WRITE_SCOPE)
        return list(dict.fromkeys(scopes))
