"""Receiving audio when Discord's DAVE end-to-end encryption is active.

discord.py 2.7 encrypts what it sends with DAVE, but discord-ext-voice-recv
0.5.2a179 does not decrypt what it receives (its issues #53 and #64). After the
transport layer is decrypted, each Opus payload must also go through the
connection's DAVE session, keyed by the speaker's user id (the approach of that
project's PRs #58/#62). With no DAVE session, payloads pass through unchanged.

The patch is confined to this module: :class:`HarkVoiceClient` is a
``VoiceRecvClient`` whose reader wraps the transport decryptor.
"""

from __future__ import annotations

import logging
from typing import Any

import davey
import discord
from discord.ext import voice_recv
from discord.ext.voice_recv.reader import AudioReader

log = logging.getLogger(__name__)


def dave_decrypt(connection: Any, user_id: int | None, payload: bytes) -> bytes:
    """DAVE-decrypt one received Opus payload, or return it unchanged when DAVE is off."""
    session = getattr(connection, "dave_session", None)
    if (
        session is None
        or getattr(connection, "dave_protocol_version", 0) == 0
        or not session.ready
        or user_id is None
    ):
        return payload
    try:
        return session.decrypt(user_id, davey.MediaType.audio, payload)
    except Exception:
        # During a protocol transition unencrypted frames are still legitimate.
        if session.can_passthrough(user_id):
            return payload
        raise


class DaveAwareReader(AudioReader):
    def __init__(
        self, sink: voice_recv.AudioSink, voice_client: HarkVoiceClient, **kwargs: Any
    ) -> None:
        super().__init__(sink, voice_client, **kwargs)
        transport_decrypt = self.decryptor.decrypt_rtp

        def decrypt_rtp(packet: Any) -> bytes:
            payload = transport_decrypt(packet)
            user_id = voice_client._ssrc_to_id.get(packet.ssrc)
            return dave_decrypt(voice_client._connection, user_id, payload)

        self.decryptor.decrypt_rtp = decrypt_rtp


class HarkVoiceClient(voice_recv.VoiceRecvClient):
    """``VoiceRecvClient`` that also undoes DAVE on received audio."""

    def _remove_ssrc(self, *, user_id: int) -> None:
        # voice-recv assumes a reader exists: a member leaving while nobody listens
        # would raise here and kill the voice websocket's poller task.
        if not self._reader:
            ssrc = self._id_to_ssrc.pop(user_id, None)
            if ssrc:
                self._ssrc_to_id.pop(ssrc, None)
            return
        super()._remove_ssrc(user_id=user_id)

    def listen(self, sink: voice_recv.AudioSink, *, after: Any = None) -> None:
        # Same as VoiceRecvClient.listen, with the DAVE-aware reader.
        if not self.is_connected():
            raise discord.ClientException("Not connected to voice.")
        if self.is_listening():
            raise discord.ClientException("Already receiving audio.")
        self._reader = DaveAwareReader(sink, self, after=after)
        self._reader.start()
