"""Who takes part in each voice channel's DAVE call: the bot's connection and fake members.

:class:`VoiceCalls` is the voice server's glue between voice states, the bot's
voice connections and the per-channel :class:`~.voice_dave.DaveCall`. A call
exists for any voice channel someone is in, bot or not, so fake members form
an E2EE group among themselves as people do; the bot joins it when its voice
handshake reaches SELECT_PROTOCOL and leaves it when the connection ends or
identifies again (a new voice session is a new MLS member, as on Discord).

DAVE is on for every channel unless switched off (``FakeDiscord(dave=False)``
or ``set_dave(channel, False)``), as on Discord since March 2026.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .voice import VoiceStateRecord
from .voice_dave import DAVE_VERSION, DaveCall
from .voice_member import FakeVoiceMember
from .voice_records import VoiceConnectionRecord

if TYPE_CHECKING:
    from .voice_ws import VoiceGateway

log = logging.getLogger(__name__)


class BotEndpoint:
    """The bot's side of a call: DAVE messages go out on its voice WebSocket (numbered)."""

    def __init__(self, gateway: VoiceGateway, record: VoiceConnectionRecord) -> None:
        self.gateway = gateway
        self.record = record
        self.user_id = record.user_id

    def dave_send_json(self, op: int, data: dict[str, object]) -> None:
        if not self.record.ended:
            self.gateway.send(self.record, op, data)

    def dave_send_binary(self, op: int, payload: bytes) -> None:
        if not self.record.ended:
            self.gateway.send_binary(self.record, op, payload)

    # The voice server sends the bot CLIENTS_CONNECT / CLIENT_DISCONNECT from voice states.
    def dave_client_connect(self, user_id: int) -> None:
        pass

    def dave_client_disconnect(self, user_id: int) -> None:
        pass


class VoiceCalls:
    def __init__(
        self,
        *,
        enabled: bool,
        transition_timeout: float,
        on_change: Callable[[], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.default_enabled = enabled
        self.transition_timeout = transition_timeout
        self.overrides: dict[int, bool] = {}  # channel id -> DAVE on/off
        self.calls: dict[int, DaveCall] = {}  # channel id -> its call (kept after it empties)
        self.members: dict[tuple[int, int], FakeVoiceMember] = {}  # (guild, user) -> client
        self.member_support: dict[tuple[int, int], bool] = {}  # set_voice_state(dave=...)
        self._on_change = on_change
        self._on_error = on_error

    def enabled_for(self, channel_id: int) -> bool:
        return self.overrides.get(channel_id, self.default_enabled)

    def call(self, guild_id: int, channel_id: int) -> DaveCall:
        call = self.calls.get(channel_id)
        if call is None:
            call = DaveCall(
                guild_id,
                channel_id,
                enabled=self.enabled_for(channel_id),
                transition_timeout=self.transition_timeout,
                on_change=self._on_change,
                on_error=self._on_error,
            )
            self.calls[channel_id] = call
        return call

    def set_enabled(self, guild_id: int, channel_id: int, enabled: bool) -> DaveCall:
        self.overrides[channel_id] = enabled
        call = self.call(guild_id, channel_id)
        call.set_enabled(enabled)
        return call

    # -- the bot ------------------------------------------------------------------------

    def bot_join(self, gateway: VoiceGateway, record: VoiceConnectionRecord) -> int:
        """SELECT_PROTOCOL: the bot joins the channel's call; the version to announce."""
        self.bot_leave(record)
        endpoint = BotEndpoint(gateway, record)
        record.dave_endpoint = endpoint
        supports = (record.max_dave_protocol_version or 0) >= DAVE_VERSION
        version = self.call(record.guild_id, record.channel_id).join(
            endpoint, supports_dave=supports
        )
        record.dave_protocol_version = version
        return version

    def bot_start(self, record: VoiceConnectionRecord) -> None:
        call = self.calls.get(record.channel_id)
        if call is not None and record.dave_endpoint is not None:
            call.start(record.user_id)

    def bot_leave(self, record: VoiceConnectionRecord) -> None:
        """The connection ended or identified again: its MLS member is gone."""
        endpoint, record.dave_endpoint = record.dave_endpoint, None
        call = self.calls.get(record.channel_id)
        if endpoint is None or call is None:
            return
        member = call.members.get(record.user_id)
        if member is not None and member.endpoint is endpoint:
            call.leave(record.user_id)

    # -- fake members -------------------------------------------------------------------

    def on_voice_state(self, state: VoiceStateRecord) -> None:
        key = (state.guild_id, state.user_id)
        member = self.members.get(key)
        if member is not None and member.channel_id != state.channel_id:
            del self.members[key]
            member.disconnect()
        if state.channel_id is None or key in self.members:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # DAVE needs the event loop (transition timers, message delivery).
            log.warning("voice state for %s set outside the event loop: no voice client", key)
            return
        member = FakeVoiceMember(
            user_id=state.user_id,
            guild_id=state.guild_id,
            channel_id=state.channel_id,
            supports_dave=self.member_support.get(key, True),
            call=self.call(state.guild_id, state.channel_id),
            on_change=self._on_change,
            on_error=self._on_error,
        )
        self.members[key] = member
        member.connect()

    def in_channel(
        self, guild_id: int, channel_id: int, *, exclude: int | None = None
    ) -> list[FakeVoiceMember]:
        return [
            m
            for (g, u), m in self.members.items()
            if g == guild_id and m.channel_id == channel_id and u != exclude
        ]

    def close(self) -> None:
        for member in self.members.values():
            member.connected = False
        for call in self.calls.values():
            call.close()
