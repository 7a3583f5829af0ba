"""Records of the loopback voice server: the bot's voice connections and its audio."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .gateway import GatewayConnection


class BotAudioPacket(NamedTuple):
    """One RTP packet the bot sent, decrypted and decoded.

    ``received_at`` is ``time.monotonic()`` (the clock of asyncio's default loop).
    ``pcm`` is 48 kHz stereo s16le, empty for Opus silence frames (``silence``).
    With DAVE, ``opus`` is the frame as the fake members in the channel decrypted
    it; with no member there, the server can only decode unencrypted frames.
    """

    received_at: float
    ssrc: int
    sequence: int
    timestamp: int
    opus: bytes
    pcm: bytes
    silence: bool
    dave: bool = False  # the frame was DAVE-encrypted (``opus`` is what members decrypted)


class SpeakingEvent(NamedTuple):
    """A SPEAKING (op 5) the bot sent: ``speaking`` is the flag set (1 = voice, 0 = none)."""

    at: float
    speaking: int
    ssrc: int | None


class SpokenAudio(NamedTuple):
    """What ``FakeDiscord.speak`` sent: times are ``time.monotonic()``."""

    user_id: int
    ssrc: int
    frames: int  # audio frames, not counting trailing silence frames
    started_at: float  # first packet sent
    finished_at: float  # last audio frame sent (before trailing silence)


@dataclass(eq=False)
class VoiceConnectionRecord:
    """The bot's voice connection in one guild: from its op 4 join until it leaves.

    Created when the bot joins (or moves), announced with VOICE_SERVER_UPDATE;
    IDENTIFY over the voice WebSocket assigns the SSRC, SELECT_PROTOCOL the key.
    """

    guild_id: int
    channel_id: int
    user_id: int
    session_id: str  # the bot's voice-state session id (its gateway session)
    token: str
    endpoint: str = ""
    ssrc: int | None = None
    mode: str | None = None
    secret_key: bytes | None = None
    bot_address: tuple[str, int] | None = None  # declared in SELECT_PROTOCOL
    discovered_address: tuple[str, int] | None = None  # source of the IP discovery request
    max_dave_protocol_version: int | None = None
    dave_protocol_version: int = 0  # what SESSION_DESCRIPTION announced
    identify_count: int = 0
    resume_count: int = 0
    heartbeat_count: int = 0
    last_seq_ack: int | None = None
    users: set[int] = field(default_factory=set)  # other users announced in the channel
    ended: bool = False
    invalid: bool = False  # dropped with 4006: IDENTIFY / RESUME refused, rejoin needed
    seq: int = 0  # v8: last sequence number sent
    socket: GatewayConnection | None = field(default=None, repr=False)
    # Numbered frames kept for RESUME: JSON text, or DAVE binary frames.
    buffer: deque[tuple[int, str | bytes]] = field(
        default_factory=lambda: deque(maxlen=200), repr=False
    )
    decoder: Any = field(default=None, repr=False)  # discord.opus.Decoder for the bot's stream
    dave_endpoint: Any = field(default=None, repr=False)  # voice_calls.BotEndpoint in a call

    @property
    def ready(self) -> bool:
        """Handshake done: the key was sent in SESSION_DESCRIPTION."""
        return self.secret_key is not None and not self.ended

    @property
    def address(self) -> tuple[str, int] | None:
        """Where audio for the bot goes: what it declared, else where it was discovered."""
        return self.bot_address or self.discovered_address


@dataclass(eq=False)
class MemberStream:
    """A fake member's outgoing RTP stream: one SSRC while they stay in voice."""

    user_id: int
    ssrc: int
    sequence: int = 0
    timestamp: int = 0
    nonce: int = 0
    last_sent_at: float | None = None
    encoder: Any = field(default=None, repr=False)  # discord.opus.Encoder
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
