"""Receiving audio when Discord's DAVE end-to-end encryption is active.

discord.py 2.7 encrypts what it sends with DAVE, but discord-ext-voice-recv
0.5.2a179 does not decrypt what it receives (its issues #53 and #64). After the
transport layer is decrypted, each Opus payload must also go through the
connection's DAVE session, keyed by the speaker's user id (the approach of that
project's PRs #58/#62). :func:`dave_decrypt` decides what to do with one payload:
decrypt it, pass it through (DAVE off, or an unencrypted frame during a
transition), hold it (its sender is not known yet) or drop it. A DAVE frame is
never handed to the Opus decoder undecrypted: that is what made voice-recv's
router thread die on ``OpusError: corrupted stream``.
"""

from __future__ import annotations

import enum
import functools
import logging
from dataclasses import dataclass
from typing import Any

import davey
from discord.gateway import DiscordVoiceWebSocket

log = logging.getLogger(__name__)

# Every DAVE frame ends with this marker (the protocol's magic number).
DAVE_MARKER = b"\xfa\xfa"


class Verdict(enum.Enum):
    HOLD = "hold"  # an encrypted frame from a sender not mapped to a user yet
    DROP = "drop"  # an encrypted frame that cannot be decrypted


def dave_active(connection: Any) -> bool:
    """DAVE is negotiated on this connection (it may not be ready yet)."""
    return (
        getattr(connection, "dave_protocol_version", 0) > 0
        and getattr(connection, "dave_session", None) is not None
    )


def dave_decrypt(connection: Any, user_id: int | None, payload: bytes) -> bytes | Verdict:
    """The plain Opus payload, or a :class:`Verdict` to hold or drop it."""
    if not dave_active(connection):
        return payload
    encrypted = payload.endswith(DAVE_MARKER)
    if user_id is None:
        # Unencrypted frames (passthrough) decode as they are; encrypted ones need
        # the sender's key, which SPEAKING will tell.
        return Verdict.HOLD if encrypted else payload
    session = connection.dave_session
    if not session.ready:
        return Verdict.DROP if encrypted else payload
    try:
        return session.decrypt(user_id, davey.MediaType.audio, payload)
    except Exception:
        # During a protocol transition unencrypted frames are still legitimate.
        if not encrypted and session.can_passthrough(user_id):
            return payload
        return Verdict.DROP


@dataclass(frozen=True, slots=True)
class Encryption:
    """What ``!voice`` shows about a session's end-to-end encryption."""

    protocol_version: int  # 0: DAVE is off for this call
    ready: bool  # the MLS group is formed and media is encrypted
    epoch: int | None
    privacy_code: str | None  # the code Discord clients show for the call

    @property
    def end_to_end(self) -> bool:
        return self.protocol_version > 0 and self.ready

    def describe(self) -> str:
        if self.protocol_version == 0:
            return "off (DAVE was not negotiated for this call)"
        if not self.ready:
            return f"negotiating (DAVE v{self.protocol_version}, the group is forming)"
        code = self.privacy_code or "not available"
        return f"on (DAVE v{self.protocol_version}, epoch {self.epoch}, voice privacy code {code})"


def encryption_of(connection: Any) -> Encryption:
    session = getattr(connection, "dave_session", None)
    version = int(getattr(connection, "dave_protocol_version", 0) or 0)
    if version == 0 or session is None:
        return Encryption(0, False, None, None)
    ready = bool(getattr(session, "ready", False))
    return Encryption(
        version,
        ready,
        getattr(session, "epoch", None) if ready else None,
        getattr(session, "voice_privacy_code", None) if ready else None,
    )


def guard_mls_messages() -> None:
    """Keep one bad MLS message from deafening the bot (idempotent).

    discord.py 2.7.1's ``DiscordVoiceWebSocket.received_binary_message`` catches
    errors of commits and welcomes but not of proposals (op 27): one it cannot
    process (a forged signature, a batch it does not expect) escapes, ends the voice
    websocket's poller task, and the bot, still "connected", never reads its voice
    socket again: no SPEAKING, no new epochs, every frame unmapped. Here such a
    message is logged in one line and ignored, as a client must ignore proposals it
    cannot verify; the group carries on with the next valid commit.
    """
    original = DiscordVoiceWebSocket.received_binary_message
    if getattr(original, "_hark_guarded", False):
        return

    @functools.wraps(original)
    async def received_binary_message(self: DiscordVoiceWebSocket, msg: bytes) -> None:
        try:
            await original(self, msg)
        except Exception as exc:
            op = msg[2] if len(msg) > 2 else None
            log.warning(
                "ignored an MLS message (op %s) that could not be processed: %s",
                op,
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )

    received_binary_message._hark_guarded = True  # type: ignore[attr-defined]
    DiscordVoiceWebSocket.received_binary_message = received_binary_message  # type: ignore[method-assign]
