"""When the bot answers a message: a mention, a reply to it, a DM, or a callsign."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import discord


def callsign_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """Whole-word, case-insensitive match of any name ("mr robot" matches across spaces)."""
    cleaned = sorted({n.strip().lower() for n in names if n and n.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, n.split())) for n in cleaned)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


@dataclass(slots=True)
class Trigger:
    reason: str  # "mention", "reply", "dm", "callsign"
    text: str  # the message with the bot's mention turned into its name


class TriggerPolicy:
    def __init__(self, names: Iterable[str] | None, *, answer_dms: bool = True) -> None:
        self._configured = list(names) if names else None
        self.answer_dms = answer_dms
        self._pattern: re.Pattern[str] | None = None
        self._pattern_for: tuple[str, ...] = ()

    def names_for(self, me: discord.abc.User) -> list[str]:
        if self._configured:
            return self._configured
        return [n for n in {me.name, getattr(me, "global_name", None)} if n]

    def _callsigns(self, me: discord.abc.User) -> re.Pattern[str] | None:
        names = tuple(self.names_for(me))
        if names != self._pattern_for:
            self._pattern, self._pattern_for = callsign_pattern(names), names
        return self._pattern

    def match(
        self,
        message: discord.Message,
        me: discord.ClientUser,
        *,
        own_message_ids: set[int] = frozenset(),
    ) -> Trigger | None:
        if message.author.bot or message.author.id == me.id:
            return None
        if message.type not in _CONVERSATION:
            return None  # system messages ("thread created", pins...) are not spoken
        text = self._clean(message, me)
        if me in message.mentions or any(u.id == me.id for u in message.mentions):
            return Trigger("mention", text)
        ref = message.reference
        if ref is not None and ref.message_id is not None:
            resolved = ref.resolved
            if isinstance(resolved, discord.Message) and resolved.author.id == me.id:
                return Trigger("reply", text)
            if ref.message_id in own_message_ids:
                return Trigger("reply", text)
        if message.guild is None:
            return Trigger("dm", text) if self.answer_dms else None
        pattern = self._callsigns(me)
        if pattern is not None and pattern.search(message.content):
            return Trigger("callsign", text)
        return None

    @staticmethod
    def _clean(message: discord.Message, me: discord.ClientUser) -> str:
        return clean_text(message, me)


# Messages people write (in a thread, a forum post's first message is a default one).
_CONVERSATION = (discord.MessageType.default, discord.MessageType.reply)


def clean_text(message: discord.Message, me: discord.abc.User) -> str:
    """A message's words as the model reads them: the bot's mention becomes its name."""
    name = getattr(me, "display_name", None) or me.name
    if message.guild is not None:
        member = message.guild.me
        name = member.display_name if member else name
    text = re.sub(rf"<@!?{me.id}>", name, message.content or "")
    return text.strip()
