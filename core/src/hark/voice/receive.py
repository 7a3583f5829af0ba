"""Hark's voice-recv client: DAVE-aware, and hard to deafen.

discord-ext-voice-recv 0.5.2a179 (pinned) has three ways to stop hearing for good,
each worked around here:

- It hands every payload from an SSRC it cannot map to a user yet straight to the
  Opus decoder (its reader's "unknown ssrc" branch, with a TODO to buffer). With
  DAVE on, such a payload is still encrypted: it cannot be decoded. Here encrypted
  frames from an unmapped SSRC are held (up to :data:`HOLD_PACKETS` per SSRC, for
  :data:`HOLD_SECONDS`) and replayed once SPEAKING maps the SSRC, else dropped.
- One ``OpusError`` in its packet router thread ends the thread and stops
  listening. Here the decoder turns an undecodable frame into 20 ms of silence.
- An exception while a packet is unpacked is logged with a traceback per packet,
  and the half-built packet is still routed. Here the frame is dropped.

Frames that are dropped (undecryptable, undecodable, held too long) are counted
per speaker, with one log line per speaker per minute. Listening that stops anyway
is noticed by :class:`hark.voice.session.VoiceSession` (the ``after`` callback and a
watchdog), which starts it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from typing import Any

import davey
import discord
from discord.ext import voice_recv
from discord.ext.voice_recv import rtp
from discord.ext.voice_recv.opus import PacketDecoder
from discord.ext.voice_recv.reader import AudioReader
from discord.ext.voice_recv.router import PacketRouter
from discord.opus import OpusError
from nacl.exceptions import CryptoError

from hark.voice.dave import Verdict, dave_decrypt, guard_mls_messages

log = logging.getLogger(__name__)

HOLD_PACKETS = 50  # per SSRC: one second of 20 ms frames
HOLD_SECONDS = 2.0
# Held-frame counts at which the sender is looked for by key: SPEAKING normally comes
# within a few frames; after that, try (a few times, the group may be changing).
IDENTIFY_AFTER = frozenset({5, 15, 30})
SILENT_FRAME = b"\x00" * 3840  # 20 ms of 48 kHz stereo 16-bit PCM
LOG_EVERY = 60.0  # seconds between two log lines about one speaker's dropped frames


class DropCounter:
    """Counts dropped frames per speaker; logs one line per speaker per minute."""

    def __init__(self, guild_id: int | None) -> None:
        self.guild_id = guild_id
        self.total: dict[str, int] = defaultdict(int)  # reason -> frames
        self._pending: dict[tuple[int | str, str], int] = defaultdict(int)
        self._last_log: dict[int | str, float] = {}
        self._lock = threading.Lock()

    def drop(self, who: int | str | None, reason: str) -> None:
        """``who``: the speaker's user id, else what is known ("ssrc 1234"), else None."""
        key = who if who is not None else "an unknown sender"
        with self._lock:
            self.total[reason] += 1
            self._pending[(key, reason)] += 1
            now = time.monotonic()
            if now - self._last_log.get(key, -LOG_EVERY) < LOG_EVERY:
                return
            self._last_log[key] = now
            counts = {r: n for (k, r), n in self._pending.items() if k == key}
            for reason_ in counts:
                del self._pending[(key, reason_)]
        summary = ", ".join(f"{n} {r}" for r, n in counts.items())
        log.warning(
            "guild %s: dropped frames from %s (%s); listening goes on",
            self.guild_id,
            f"user {key}" if isinstance(key, int) else key,
            summary,
        )


class _QuietExtraKeys(logging.Filter):
    """voice-recv logs every voice gateway v8 message at INFO because it carries the
    ``seq`` key, which its hook does not expect: on a real call, one line per event."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("WS payload has extra keys"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_voice_recv_gateway_log = logging.getLogger("discord.ext.voice_recv.gateway")
if not any(isinstance(f, _QuietExtraKeys) for f in _voice_recv_gateway_log.filters):
    _voice_recv_gateway_log.addFilter(_QuietExtraKeys())


class _SafeDecoder(PacketDecoder):
    """A frame that will not decode becomes silence instead of ending the router."""

    def _decode_packet(self, packet: Any) -> tuple[Any, bytes]:
        try:
            return super()._decode_packet(packet)
        except OpusError:
            reader = self.router.reader
            if isinstance(reader, HarkReader):
                user_id = self._cached_id or reader.voice_client._ssrc_to_id.get(self.ssrc)
                reader.drops.drop(user_id if user_id else f"ssrc {self.ssrc}", "undecodable")
            return packet, SILENT_FRAME


class _SafeRouter(PacketRouter):
    def get_decoder(self, ssrc: int) -> PacketDecoder | None:
        with self._lock:
            decoder = self.decoders.get(ssrc)
            if decoder is None:
                decoder = self.decoders[ssrc] = _SafeDecoder(self, ssrc)
            return decoder


class HarkReader(AudioReader):
    """voice-recv's reader, with DAVE decryption, held frames and contained errors."""

    def __init__(
        self, sink: voice_recv.AudioSink, voice_client: HarkVoiceClient, **kwargs: Any
    ) -> None:
        super().__init__(sink, voice_client, **kwargs)
        self.packet_router = _SafeRouter(sink, self)
        self.drops = DropCounter(getattr(voice_client.guild, "id", None))
        self._held: dict[int, deque[tuple[float, Any]]] = {}
        # Re-entrant: a replay (SPEAKING, on the event loop) and a search by key (on
        # the socket thread) must not decrypt the same held frame twice.
        self._held_lock = threading.RLock()
        self._plain: set[int] = set()  # ids of held packets already DAVE-decrypted
        #: Monotonic time of the last audio frame routed (for the session's watchdog).
        self.last_frame_at: float | None = None

    def callback(self, packet_data: bytes) -> None:
        # Runs on discord.py's socket reader thread for every UDP packet.
        try:
            if rtp.is_rtcp(packet_data):
                packet = rtp.decode_rtcp(self.decryptor.decrypt_rtcp(packet_data))
                self.packet_router.feed_rtcp(packet)
                return
            packet = rtp.decode_rtp(packet_data)
            packet.decrypted_data = self.decryptor.decrypt_rtp(packet)
        except CryptoError:
            self.drops.drop(None, "transport-undecryptable")
            return
        except Exception:
            if not self._is_ip_discovery_packet(packet_data):
                self.drops.drop(None, "malformed")
                log.debug("unreadable voice packet (%d bytes)", len(packet_data), exc_info=True)
            return
        self._route(packet)

    def _route(self, packet: Any) -> None:
        vc = self.voice_client
        user_id = vc._ssrc_to_id.get(packet.ssrc)
        if id(packet) in self._plain:  # decrypted while finding its sender
            self._plain.discard(id(packet))
            verdict: bytes | Verdict = packet.decrypted_data
        else:
            verdict = dave_decrypt(vc._connection, user_id, packet.decrypted_data)
        if verdict is Verdict.HOLD:
            self._hold(packet)
            return
        if verdict is Verdict.DROP:
            self.drops.drop(user_id or f"ssrc {packet.ssrc}", "undecryptable")
            return
        packet.decrypted_data = verdict
        if user_id is None and packet.is_silence():
            return  # voice-recv skips these too: nothing to hear, nobody to map
        self.speaking_timer.notify(packet.ssrc)
        self.last_frame_at = time.monotonic()
        try:
            self.packet_router.feed_rtp(packet)
        except Exception:
            self.drops.drop(user_id, "unroutable")
            log.debug("voice packet could not be routed", exc_info=True)

    # -- frames from senders not known yet ---------------------------------------

    def _hold(self, packet: Any) -> None:
        now = time.monotonic()
        with self._held_lock:
            queue = self._held.setdefault(packet.ssrc, deque())
            while queue and (len(queue) >= HOLD_PACKETS or now - queue[0][0] > HOLD_SECONDS):
                self._plain.discard(id(queue.popleft()[1]))
                self.drops.drop(f"ssrc {packet.ssrc}", "unmapped")
            queue.append((now, packet))
            if len(queue) not in IDENTIFY_AFTER:
                return
            # SPEAKING may come late or not at all. Only the sender's key decrypts a
            # DAVE frame, so trying the key of each member without an SSRC finds the
            # sender. The oldest frame: decrypting a newer one first would make the
            # older ones look replayed to DAVE's nonce check.
            user_id = self._identify(queue[0][1])
            if user_id is not None:
                log.info(
                    "guild %s: ssrc %s identified as user %s by its DAVE key (no SPEAKING yet)",
                    self.drops.guild_id,
                    packet.ssrc,
                    user_id,
                )
                self.voice_client._add_ssrc(user_id, packet.ssrc)

    def _identify(self, packet: Any) -> int | None:
        vc = self.voice_client
        session = getattr(vc._connection, "dave_session", None)
        channel = getattr(vc, "channel", None)
        if session is None or not session.ready or channel is None:
            return None
        mapped = set(vc._id_to_ssrc)
        for member in list(getattr(channel, "members", [])):
            if member.bot or member.id in mapped:
                continue
            try:
                plain = session.decrypt(member.id, davey.MediaType.audio, packet.decrypted_data)
            except Exception:
                continue
            # Keep the result: the same frame cannot be decrypted twice (nonce reuse).
            # (RTPPacket has __slots__: remember which packet by its id.)
            packet.decrypted_data = plain
            self._plain.add(id(packet))
            return member.id
        return None

    def replay_held(self, ssrc: int) -> int:
        """SPEAKING mapped ``ssrc``: route what it sent before; returns how many."""
        with self._held_lock:
            queue = self._held.pop(ssrc, None)
            if not queue:
                return 0
            now = time.monotonic()
            fresh = [p for at, p in queue if now - at <= HOLD_SECONDS]
            for at, stale in queue:
                if now - at > HOLD_SECONDS:
                    self._plain.discard(id(stale))
                    self.drops.drop(f"ssrc {ssrc}", "unmapped")
            for packet in fresh:
                self._route(packet)
            return len(fresh)


class HarkVoiceClient(voice_recv.VoiceRecvClient):
    """``VoiceRecvClient`` with :class:`HarkReader`: DAVE decryption, held frames of
    unmapped speakers, and undecodable frames that cannot stop listening."""

    def _add_ssrc(self, user_id: int, ssrc: int) -> None:
        super()._add_ssrc(user_id, ssrc)
        reader = self._reader
        if isinstance(reader, HarkReader):
            held = reader.replay_held(ssrc)
            if held:
                log.debug(
                    "guild %s: replayed %d held frames of user %s", self.guild.id, held, user_id
                )

    def _remove_ssrc(self, *, user_id: int) -> None:
        # voice-recv assumes a reader exists: a member leaving while nobody listens
        # would raise here and kill the voice websocket's poller task.
        if not self._reader:
            ssrc = self._id_to_ssrc.pop(user_id, None)
            if ssrc:
                self._ssrc_to_id.pop(ssrc, None)
            return
        super()._remove_ssrc(user_id=user_id)

    def __init__(self, client: discord.Client, channel: Any) -> None:
        guard_mls_messages()
        super().__init__(client, channel)

    def listen(self, sink: voice_recv.AudioSink, *, after: Any = None) -> None:
        # Same as VoiceRecvClient.listen, with Hark's reader.
        if not self.is_connected():
            raise discord.ClientException("Not connected to voice.")
        if self.is_listening():
            raise discord.ClientException("Already receiving audio.")
        self._reader = HarkReader(sink, self, after=after)
        self._reader.start()

    @property
    def reader(self) -> HarkReader | None:
        reader = self._reader
        return reader if isinstance(reader, HarkReader) else None
