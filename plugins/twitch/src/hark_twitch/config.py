"""What the connection runs with: the EventSub topics, and :class:`TwitchConfig`
(the bot-wide settings plus the secrets' values, read when the connection starts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import hark
from hark_twitch.settings import (
    ACCESS_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    TwitchSettings,
)


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


@dataclass(slots=True)
class TwitchConfig:
    """The connection's configuration: one Twitch channel per bot process.

    The secrets' values are kept out of ``repr`` and registered with the log redaction.
    """

    settings: TwitchSettings = field(default_factory=TwitchSettings)
    client_id: str = field(default="", repr=False)
    access_token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    client_secret: str = field(default="", repr=False)

    @classmethod
    def read(
        cls, settings: TwitchSettings, environ: Mapping[str, str] | None = None
    ) -> TwitchConfig:
        """``settings`` with the secrets from ``environ`` (default: the process's)."""
        token = ACCESS_TOKEN.value(environ).removeprefix("oauth:")
        hark.register_secret(token)
        return cls(
            settings=settings,
            client_id=CLIENT_ID.value(environ),
            access_token=token,
            refresh_token=REFRESH_TOKEN.value(environ),
            client_secret=CLIENT_SECRET.value(environ),
        )

    def missing(self) -> list[str]:
        """The required variables that are not set (empty: configured)."""
        return [
            name
            for name, value in (
                (CLIENT_ID.env, self.client_id),
                (ACCESS_TOKEN.env, self.access_token),
                ("TWITCH_CHANNEL", self.settings.twitch_channel),
            )
            if not value
        ]

    @property
    def configured(self) -> bool:
        return not self.missing()

    @property
    def can_refresh(self) -> bool:
        return bool(self.refresh_token and self.client_secret)

    def required_scopes(self) -> list[str]:
        scopes = [t.scope for t in TOPICS if t.scope]
        if self.settings.chat_replies:
            scopes.append(CHAT_WRITE_SCOPE)
        return list(dict.fromkeys(scopes))
