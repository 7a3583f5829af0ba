"""Voice-state bookkeeping: who is in which voice channel, per guild.

All voice state changes (the bot's op 4 and test helpers moving users) go
through ``VoiceStates.update`` so that one place owns the data. The voice
server (:mod:`.voice_server`) hooks in at ``FakeDiscord.after_bot_voice_state``
for the bot and through ``VoiceStates.listeners`` for everyone else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .payloads import member_payload
from .state import GuildRecord


@dataclass
class VoiceStateRecord:
    guild_id: int
    user_id: int
    channel_id: int | None
    session_id: str
    self_mute: bool = False
    self_deaf: bool = False
    self_video: bool = False
    self_stream: bool = False
    mute: bool = False
    deaf: bool = False
    suppress: bool = False

    def payload(self, *, with_guild: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": str(self.user_id),
            "channel_id": None if self.channel_id is None else str(self.channel_id),
            "session_id": self.session_id,
            "deaf": self.deaf,
            "mute": self.mute,
            "self_deaf": self.self_deaf,
            "self_mute": self.self_mute,
            "self_video": self.self_video,
            "self_stream": self.self_stream,
            "suppress": self.suppress,
            "request_to_speak_timestamp": None,
        }
        if with_guild:
            data["guild_id"] = str(self.guild_id)
        return data


class VoiceStates:
    def __init__(self) -> None:
        # (guild id, user id) -> current state; users who left are removed
        self._states: dict[tuple[int, int], VoiceStateRecord] = {}
        self.history: list[VoiceStateRecord] = []  # every update, in order
        # Called with every new state, after it was stored (the voice server's hook).
        self.listeners: list[Callable[[VoiceStateRecord], None]] = []

    def get(self, guild_id: int, user_id: int) -> VoiceStateRecord | None:
        return self._states.get((guild_id, user_id))

    def in_guild(self, guild_id: int) -> list[VoiceStateRecord]:
        return [s for (g, _), s in self._states.items() if g == guild_id]

    def update(
        self,
        guild_id: int,
        user_id: int,
        channel_id: int | None,
        *,
        session_id: str,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> VoiceStateRecord:
        state = VoiceStateRecord(
            guild_id=guild_id,
            user_id=user_id,
            channel_id=channel_id,
            session_id=session_id,
            self_mute=self_mute,
            self_deaf=self_deaf,
        )
        if channel_id is None:
            self._states.pop((guild_id, user_id), None)
        else:
            self._states[(guild_id, user_id)] = state
        self.history.append(state)
        for listener in self.listeners:
            listener(state)
        return state

    def event_payload(self, guild: GuildRecord, state: VoiceStateRecord) -> dict[str, Any]:
        """VOICE_STATE_UPDATE dispatch payload (includes the member object)."""
        data = state.payload()
        member = guild.member(state.user_id)
        if member is not None:
            data["member"] = member_payload(member)
        return data
