"""EventSub notifications turned into :class:`TwitchEvent`: one plain sentence each.

The sentence is what the model reads, in the prompt's recent-activity part and as
the "message" of a commentary turn, so it names who did what in plain words
("alice raided the channel with 42 viewers").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Chattiness levels, quietest first. A level comments on its own events and on
# every quieter level's.
LEVELS: tuple[str, ...] = ("off", "low", "normal", "high")
# The quietest level at which an event kind gets a comment (chat never does:
# it is context, and callsign questions are answered in Twitch chat).
COMMENT_LEVEL: dict[str, str] = {
    "raid": "low",
    "gift": "low",
    "subscribe": "normal",
    "resub": "normal",
    "cheer": "normal",
    "follow": "high",
}

# How a person calls each kind, for command answers.
KIND_LABELS: dict[str, str] = {
    "raid": "raids",
    "gift": "gift subs",
    "subscribe": "subs",
    "resub": "resubs",
    "cheer": "cheers",
    "follow": "follows",
}

_TIERS = {"1000": "Tier 1", "2000": "Tier 2", "3000": "Tier 3"}
_MAX_QUOTE = 200


def comments_on(chattiness: str, kind: str) -> bool:
    """Whether a server at ``chattiness`` gets a comment for an event of ``kind``."""
    needed = COMMENT_LEVEL.get(kind)
    if needed is None or chattiness not in LEVELS:
        return False
    return LEVELS.index(chattiness) >= LEVELS.index(needed) > 0


@dataclass(slots=True)
class TwitchEvent:
    kind: str  # chat | follow | subscribe | resub | gift | cheer | raid
    text: str  # the plain sentence, without the "Twitch: " prefix
    user_name: str | None = None
    user_id: str | None = None
    message_id: str = ""  # EventSub message id (deduplication)
    chat_text: str = ""  # chat messages: what was said
    chat_message_id: str = ""  # chat messages: Twitch's id, to reply to
    at: float = field(default_factory=time.time)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def description(self) -> str:
        """The event as the bot is told about it: ``Twitch: alice raided ...``."""
        return f"Twitch: {self.text}"

    @property
    def commentable(self) -> bool:
        return self.kind in COMMENT_LEVEL


def _name(event: dict[str, Any], prefix: str = "user") -> str | None:
    return event.get(f"{prefix}_name") or event.get(f"{prefix}_login") or None


def _quote(text: str | None) -> str:
    text = " ".join((text or "").split())
    if len(text) > _MAX_QUOTE:
        text = text[: _MAX_QUOTE - 1] + "…"
    return f': "{text}"' if text else ""


def _tier(event: dict[str, Any]) -> str:
    return _TIERS.get(str(event.get("tier")), f"tier {event.get('tier')}")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def parse_notification(message: dict[str, Any]) -> TwitchEvent | None:
    """A ``notification`` message as a :class:`TwitchEvent` (None for types not handled,
    and for gifted subs, which the ``channel.subscription.gift`` event already covers)."""
    metadata = message.get("metadata") or {}
    payload = message.get("payload") or {}
    sub_type = metadata.get("subscription_type") or (payload.get("subscription") or {}).get("type")
    event = payload.get("event")
    if not isinstance(event, dict):
        return None
    message_id = str(metadata.get("message_id") or "")

    def made(kind: str, text: str, user: str | None, user_id: Any = None, **kw: Any) -> TwitchEvent:
        return TwitchEvent(
            kind,
            text,
            user_name=user,
            user_id=str(user_id) if user_id is not None else None,
            message_id=message_id,
            raw=event,
            **kw,
        )

    if sub_type == "channel.chat.message":
        who = _name(event, "chatter_user") or "someone"
        said = ((event.get("message") or {}).get("text") or "").strip()
        return made(
            "chat",
            f"{who} in chat{_quote(said)}",
            who,
            event.get("chatter_user_id"),
            chat_text=said,
            chat_message_id=str(event.get("message_id") or ""),
        )
    if sub_type == "channel.follow":
        who = _name(event) or "someone"
        return made("follow", f"{who} followed the channel", who, event.get("user_id"))
    if sub_type == "channel.subscribe":
        if event.get("is_gift"):
            return None
        who = _name(event) or "someone"
        return made("subscribe", f"{who} subscribed at {_tier(event)}", who, event.get("user_id"))
    if sub_type == "channel.subscription.message":
        who = _name(event) or "someone"
        months = int(event.get("cumulative_months") or 0)
        span = f" for {_plural(months, 'month')}" if months else ""
        said = (event.get("message") or {}).get("text")
        return made(
            "resub",
            f"{who} resubscribed at {_tier(event)}{span}{_quote(said)}",
            who,
            event.get("user_id"),
        )
    if sub_type == "channel.subscription.gift":
        anonymous = bool(event.get("is_anonymous"))
        who = None if anonymous else _name(event)
        total = int(event.get("total") or 1)
        cumulative = event.get("cumulative_total")
        extra = f" ({cumulative} gifted in total)" if cumulative and not anonymous else ""
        text = f"{who or 'an anonymous viewer'} gifted {_plural(total, f'{_tier(event)} sub')}"
        return made("gift", text + extra, who, None if anonymous else event.get("user_id"))
    if sub_type == "channel.cheer":
        anonymous = bool(event.get("is_anonymous"))
        who = None if anonymous else _name(event)
        bits = int(event.get("bits") or 0)
        text = f"{who or 'an anonymous viewer'} cheered {_plural(bits, 'bit')}"
        return made(
            "cheer",
            text + _quote(event.get("message")),
            who,
            None if anonymous else event.get("user_id"),
        )
    if sub_type == "channel.raid":
        who = _name(event, "from_broadcaster_user") or "someone"
        viewers = int(event.get("viewers") or 0)
        return made(
            "raid",
            f"{who} raided the channel with {_plural(viewers, 'viewer')}",
            who,
            event.get("from_broadcaster_user_id"),
        )
    return None
