"""The loopback voice server: voice connections, the bot's audio, fake members speaking.

``VoiceServer`` is the engine behind ``FakeDiscord``'s voice helpers
(:mod:`.voice_helpers`). It starts on first use, when the bot first joins a
voice channel: a TLS WebSocket server (:mod:`.voice_ws`, certificate from
:mod:`.tls`) and one UDP socket (:mod:`.voice_udp`), both on 127.0.0.1.

Flow: the bot's op 4 join creates a :class:`VoiceConnectionRecord` and sends
VOICE_SERVER_UPDATE {token, guild_id, endpoint "127.0.0.1:<port>"} to the
bot's gateway session (after the VOICE_STATE_UPDATE, as on Discord); a move
replaces the record, leaving ends it (its WebSocket is closed with 4014 if the
bot does not close it itself within a second). RTP from the bot is decrypted
and decoded to PCM per guild; members' speech is encoded, encrypted and sent
to the address the bot declared in SELECT_PROTOCOL.

One deliberate extra: when a connection ends, and when the next one
identifies, the server sends the bot's old UDP socket one harmless datagram
(see ``VoiceServer.nudge``): discord.py's socket reader can otherwise sit for
up to 30 s in ``select()`` on a socket it no longer uses, stalling the next IP
discovery (moves and rejoins). Real Discord may not do this; the stall is
discord.py's.

DAVE (end-to-end encryption, on by default as on Discord): each voice channel
has a call (:mod:`.voice_calls`, :mod:`.voice_dave`) where the server is the
MLS external sender, and each fake member a real davey client
(:mod:`.voice_member`). Members' speech is DAVE-encrypted by their own
session; the bot's audio is DAVE-decrypted by the members in its channel
before it is decoded, so ``bot_audio`` is what they hear.

Opus comes from discord.py's own ctypes binding (libopus). Without libopus the
handshake still works, but ``speak`` raises and audio from the bot ends up in
``FakeDiscord.internal_errors``, both saying how to install it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from . import rtp
from .base import ServerCore
from .gateway import GatewaySession
from .state import MemberRecord
from .tls import server_ssl_context
from .voice import VoiceStateRecord
from .voice_calls import VoiceCalls
from .voice_member import FakeVoiceMember, is_dave_frame
from .voice_records import (
    BotAudioPacket,
    MemberStream,
    SpeakingEvent,
    SpokenAudio,
    VoiceConnectionRecord,
)
from .voice_udp import Address, VoiceUdpProtocol, open_udp
from .voice_ws import CLIENT_DISCONNECT, CLIENTS_CONNECT, CLOSE_DISCONNECTED, SPEAKING, VoiceGateway

log = logging.getLogger(__name__)

LEAVE_GRACE_SECONDS = 1.0  # how long a bot that left may keep its voice socket open


def require_opus() -> Any:
    """discord.opus, with libopus loaded, or a RuntimeError that says how to get it."""
    import discord.opus

    if not discord.opus.is_loaded() and not discord.opus._load_default():
        raise RuntimeError(
            "libopus could not be loaded (discord.opus): the fake voice server needs it "
            "to encode and decode audio. Install it (Debian/Ubuntu: apt-get install libopus0; "
            "scripts/test does this) or call discord.opus.load_opus(path)."
        )
    return discord.opus


def to_discord_pcm(audio: Any) -> bytes:
    """48 kHz stereo s16le bytes, or an AudioClip-like object (pcm, sample_rate, channels)."""
    if isinstance(audio, bytes | bytearray | memoryview):
        pcm = bytes(audio)
    elif all(hasattr(audio, name) for name in ("pcm", "sample_rate", "channels")):
        if (audio.sample_rate, audio.channels) == (rtp.SAMPLE_RATE, rtp.CHANNELS):
            pcm = bytes(audio.pcm)
        else:
            from hark.audio import convert

            pcm = convert(audio, rtp.SAMPLE_RATE, rtp.CHANNELS).pcm
    else:
        raise TypeError(
            f"expected 48 kHz stereo s16le bytes or an AudioClip, not {type(audio).__name__}"
        )
    if len(pcm) % 4:
        raise ValueError("48 kHz stereo s16le PCM must be a whole number of 4-byte samples")
    return pcm


def audio_level(frame: bytes) -> int:
    """RFC 6464 level of a PCM frame: 0 (loudest) .. 127 (silence), in -dBov."""
    import numpy as np

    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    if rms < 1.0:
        return 127
    return max(0, min(127, round(-20 * math.log10(rms / 32768))))


class VoiceServer:
    def __init__(
        self,
        core: ServerCore,
        *,
        host: str,
        internal_errors: list[str],
        heartbeat_interval_ms: int = 13750,
        dave: bool = True,
        dave_transition_timeout: float = 2.0,
    ) -> None:
        self.core = core
        self.host = host
        self.internal_errors = internal_errors
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.gateway = VoiceGateway(self)
        self.port = 0  # TLS WebSocket port, once started
        self.udp_port = 0
        self.connections: dict[int, VoiceConnectionRecord] = {}  # guild id -> current
        self.history: list[VoiceConnectionRecord] = []  # every connection, in order
        self.bot_packets: dict[int, list[BotAudioPacket]] = {}  # guild id -> packets
        self.bot_pcm_bytes: dict[int, int] = {}  # guild id -> len(bot_audio(guild))
        self.bot_speaking: dict[int, list[SpeakingEvent]] = {}  # guild id -> SPEAKING ops
        self.rejected: list[str] = []  # RTP the server could not use, with the reason
        self.ignored_datagrams = 0  # RTCP, keep-alives, junk
        self._by_ssrc: dict[int, VoiceConnectionRecord] = {}
        self._previous: dict[int, VoiceConnectionRecord] = {}  # guild -> last ended connection
        self._streams: dict[tuple[int, int], MemberStream] = {}  # (guild, user) -> stream
        self._ssrcs = itertools.count(random.randrange(1000, 50_000))
        self._runner: web.AppRunner | None = None
        self._udp: VoiceUdpProtocol | None = None
        self._start_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.dave = VoiceCalls(
            enabled=dave,
            transition_timeout=dave_transition_timeout,
            on_change=self.changed,
            on_error=self._dave_error,
        )
        core.voice.listeners.append(self._on_voice_state)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._runner is not None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Start the TLS WebSocket and the UDP socket (once; later calls return at once)."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._runner is not None:
                return
            ssl_context = server_ssl_context()
            app = web.Application()
            app.router.add_get("/", self.gateway.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, self.host, 0, ssl_context=ssl_context).start()
                self._udp = await open_udp(self.host, self._on_datagram)
            except BaseException:
                await runner.cleanup()
                raise
            self.port = runner.addresses[0][1]
            assert self._udp.transport is not None
            self.udp_port = self._udp.transport.get_extra_info("sockname")[1]
            self._runner = runner

    async def close(self) -> None:
        self.dave.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.gateway.close()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def changed(self) -> None:
        self.core._changed()

    def _dave_error(self, message: str) -> None:
        self.internal_errors.append(message)
        self.changed()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("fake voice server task %s failed: %r", task.get_name(), exc)
            self.internal_errors.append(f"voice server {task.get_name()}: {exc!r}")
            self.changed()

    # -- the bot joining, moving, leaving ---------------------------------------------

    def on_bot_voice_state(self, session: GatewaySession, state: VoiceStateRecord) -> None:
        """After the bot's op 4 was applied (and VOICE_STATE_UPDATE dispatched)."""
        current = self.connections.get(state.guild_id)
        if state.channel_id is None:
            if current is not None:
                self.end(current)
            return
        if (
            current is not None
            and current.channel_id == state.channel_id
            and current.session_id == state.session_id
            and not current.invalid
        ):
            return  # only mute/deaf changed: Discord sends no new voice server
        if current is not None:
            self.end(current)
        self._open(session, state.guild_id, state.channel_id, state.user_id, state.session_id)

    def _open(
        self, session: GatewaySession, guild_id: int, channel_id: int, user_id: int, session_id: str
    ) -> VoiceConnectionRecord:
        record = VoiceConnectionRecord(
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            session_id=session_id,
            token=f"fake-voice-{random.getrandbits(64):016x}",
        )
        record.users = set(self.users_in_channel(record))
        self.connections[record.guild_id] = record
        self.history.append(record)
        if self.started:
            self._announce(session, record)
        else:
            self._spawn(self._start_and_announce(session, record), "voice-server-start")
        return record

    def migrate(self, record: VoiceConnectionRecord) -> VoiceConnectionRecord:
        """Move the bot to a "new voice server", as Discord does on failover.

        VOICE_SERVER_UPDATE with a new token goes to the bot's gateway session and
        the old voice socket is closed with 4014; the bot identifies again.
        """
        session = self.core.gateway.sessions.get(record.session_id)
        if session is None or session.ended:
            raise LookupError(f"the bot's gateway session {record.session_id} is gone")
        self.end(record, close_delay=0.1)
        return self._open(
            session, record.guild_id, record.channel_id, record.user_id, record.session_id
        )

    async def _start_and_announce(
        self, session: GatewaySession, record: VoiceConnectionRecord
    ) -> None:
        await self.start()
        if self.connections.get(record.guild_id) is record:
            self._announce(session, record)

    def _announce(self, session: GatewaySession, record: VoiceConnectionRecord) -> None:
        record.endpoint = self.endpoint
        session.push(
            "VOICE_SERVER_UPDATE",
            {"token": record.token, "guild_id": str(record.guild_id), "endpoint": record.endpoint},
        )
        self.changed()

    def end(
        self,
        record: VoiceConnectionRecord,
        *,
        close_code: int = CLOSE_DISCONNECTED,
        close_delay: float = LEAVE_GRACE_SECONDS,
    ) -> None:
        """The bot left (or moved): no more audio either way; the socket closes soon."""
        record.ended = True
        self.dave.bot_leave(record)
        if self.connections.get(record.guild_id) is record:
            del self.connections[record.guild_id]
        if record.ssrc is not None and self._by_ssrc.get(record.ssrc) is record:
            del self._by_ssrc[record.ssrc]
        conn = self.gateway.detach_record(record)
        if conn is not None and conn.open:
            self._spawn(self._close_later(conn, close_code, close_delay), "voice-close-after-end")
        self.nudge(record)
        self._previous[record.guild_id] = record
        self.changed()

    def nudge(self, record: VoiceConnectionRecord) -> None:
        """Wake discord.py's socket reader, which may sit in ``select()`` on this socket.

        discord.py's reader thread waits up to 30 s in ``select()`` on the UDP socket
        it last saw, even after the socket was replaced (a move) or closed (a
        rejoin), and the next IP discovery is only read when it comes back. One
        datagram to the old socket while it is still open lets it return at once.
        The datagram is a valid IP discovery response for that socket (what
        discord.py and voice-recv already expect and ignore), so it is harmless.
        """
        address = record.discovered_address or record.bot_address
        if address is None or record.ssrc is None or self._udp is None:
            return
        kind = rtp.IP_DISCOVERY_RESPONSE
        self._udp.sendto(rtp.ip_discovery_packet(kind, record.ssrc, *address), address)

    async def _close_later(self, conn: Any, code: int, delay: float) -> None:
        await asyncio.sleep(delay)
        conn.close_after_flush(code, "Disconnected.")

    def assign_ssrc(self, record: VoiceConnectionRecord) -> int:
        """IDENTIFY: a new SSRC. The bot now uses its new socket: wake the old one's reader."""
        previous = self._previous.pop(record.guild_id, None)
        if previous is not None:
            self.nudge(previous)
        if record.ssrc is not None and self._by_ssrc.get(record.ssrc) is record:
            del self._by_ssrc[record.ssrc]
        record.ssrc = next(self._ssrcs)
        self._by_ssrc[record.ssrc] = record
        return record.ssrc

    def users_in_channel(self, record: VoiceConnectionRecord) -> list[int]:
        return [
            s.user_id
            for s in self.core.voice.in_guild(record.guild_id)
            if s.channel_id == record.channel_id and s.user_id != record.user_id
        ]

    # -- members joining and leaving ------------------------------------------------------

    def _on_voice_state(self, state: VoiceStateRecord) -> None:
        """Every voice-state change: tell the bot's voice socket who came and went."""
        if state.user_id == self.core.bot_user.id:
            return
        record = self.connections.get(state.guild_id)
        if record is not None:
            inside = state.channel_id == record.channel_id
            if inside and state.user_id not in record.users:
                record.users.add(state.user_id)
                if record.ready:
                    self.gateway.send(record, CLIENTS_CONNECT, {"user_ids": [str(state.user_id)]})
            elif not inside and state.user_id in record.users:
                record.users.discard(state.user_id)
                if record.ready:
                    self.gateway.send(record, CLIENT_DISCONNECT, {"user_id": str(state.user_id)})
        stream = self._streams.get((state.guild_id, state.user_id))
        if stream is not None and (record is None or state.channel_id != record.channel_id):
            # Left the bot's channel: a new SSRC next time, as for a new connection.
            del self._streams[(state.guild_id, state.user_id)]
        # After CLIENTS_CONNECT / CLIENT_DISCONNECT: the member's client joins or leaves
        # the channel's DAVE call (its key package, or its Remove, follows).
        self.dave.on_voice_state(state)

    # -- the bot's side ------------------------------------------------------------------

    def on_bot_speaking(self, record: VoiceConnectionRecord, data: dict[str, Any]) -> None:
        try:
            flags = int(data.get("speaking") or 0)
        except (TypeError, ValueError):
            flags = 0
        ssrc = data.get("ssrc")
        self.bot_speaking.setdefault(record.guild_id, []).append(
            SpeakingEvent(time.monotonic(), flags, ssrc if isinstance(ssrc, int) else None)
        )

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        try:
            self._route_datagram(data, addr)
        except Exception as exc:
            log.exception("fake voice server failed on a %d-byte datagram", len(data))
            self.internal_errors.append(f"voice datagram from {addr}: {exc!r}")
        self.changed()

    def _route_datagram(self, data: bytes, addr: Address) -> None:
        if rtp.is_ip_discovery_request(data):
            _, ssrc, _, _ = rtp.parse_ip_discovery(data)
            record = self._by_ssrc.get(ssrc)
            if record is not None:
                record.discovered_address = addr
            assert self._udp is not None
            response = rtp.ip_discovery_packet(rtp.IP_DISCOVERY_RESPONSE, ssrc, addr[0], addr[1])
            self._udp.sendto(response, addr)
            return
        if len(data) < 12 or data[0] >> 6 != 2 or rtp.is_rtcp(data):
            self.ignored_datagrams += 1
            return
        ssrc = rtp.peek_ssrc(data)
        record = self._by_ssrc.get(ssrc)
        if record is None or record.secret_key is None:
            self.rejected.append(f"RTP from unknown SSRC {ssrc} ({addr[0]}:{addr[1]})")
            return
        try:
            packet = rtp.decrypt_rtpsize(record.secret_key, data)
        except rtp.RtpError as exc:
            self.rejected.append(f"RTP from SSRC {ssrc}: {exc}")
            return
        dave = is_dave_frame(packet.payload)
        payload = self._heard_from_bot(record, packet.payload, dave)
        if payload is None:
            listeners = self.dave.in_channel(record.guild_id, record.channel_id)
            why = [m.undecryptable[-1][1] for m in listeners if m.undecryptable][:1]
            kind = "DAVE frame" if dave else "unencrypted frame"
            self.rejected.append(
                f"RTP from SSRC {ssrc}: a {kind} no member in the channel could decrypt "
                f"({why[0] if why else 'no member to hear it'})"
            )
            return
        pcm = b""
        if not packet.is_silence:
            try:
                opus = require_opus()
            except RuntimeError as exc:
                if str(exc) not in self.internal_errors:  # once, not 50 times a second
                    self.internal_errors.append(str(exc))
                self.rejected.append(f"RTP from SSRC {ssrc}: no libopus to decode it")
                return
            if record.decoder is None:
                record.decoder = opus.Decoder()
            try:
                pcm = record.decoder.decode(payload, fec=False)
            except opus.OpusError as exc:
                self.rejected.append(f"RTP from SSRC {ssrc}: undecodable Opus ({exc})")
                return
        self.bot_pcm_bytes[record.guild_id] = self.bot_pcm_bytes.get(record.guild_id, 0) + len(pcm)
        self.bot_packets.setdefault(record.guild_id, []).append(
            BotAudioPacket(
                received_at=time.monotonic(),
                ssrc=ssrc,
                sequence=packet.sequence,
                timestamp=packet.timestamp,
                opus=payload,
                pcm=pcm,
                silence=packet.is_silence,
                dave=dave,
            )
        )

    def _heard_from_bot(
        self, record: VoiceConnectionRecord, payload: bytes, dave: bool
    ) -> bytes | None:
        """The bot's frame as the members in its channel hear it (each decrypts it).

        The first member that could decrypt it speaks for ``bot_audio``. With
        nobody there, only an unencrypted frame can be used.
        """
        heard = None
        listeners = self.dave.in_channel(record.guild_id, record.channel_id)
        for member in listeners:
            opus = member.receive(record.user_id, payload)
            if heard is None:
                heard = opus
        if not listeners and not dave:
            heard = payload
        return heard

    # -- members speaking -------------------------------------------------------------------

    def in_channel(self, record: VoiceConnectionRecord, user_id: int) -> bool:
        state = self.core.voice.get(record.guild_id, user_id)
        return state is not None and state.channel_id == record.channel_id

    def _stream(self, guild_id: int, user_id: int) -> MemberStream:
        stream = self._streams.get((guild_id, user_id))
        if stream is None:
            stream = MemberStream(
                user_id=user_id,
                ssrc=next(self._ssrcs),
                sequence=random.randrange(0, 10_000),
                timestamp=random.randrange(0, 1 << 24),
                encoder=require_opus().Encoder(application="audio", fec=False),
            )
            self._streams[(guild_id, user_id)] = stream
        return stream

    def voice_member(self, guild_id: int, user_id: int) -> FakeVoiceMember:
        client = self.dave.members.get((guild_id, user_id))
        if client is None:
            raise LookupError(
                f"user {user_id} is not in a voice channel of guild {guild_id} "
                "(server.set_voice_state(member, channel) connects their voice client)"
            )
        return client

    async def wait_for_member_dave(self, client: FakeVoiceMember, timeout: float) -> None:
        """Wait until ``client`` may send media: in the group, or DAVE not in use.

        A client in an E2EE call does not send media before its session is
        ready (discord.py would send it unencrypted, which receivers refuse). Alone
        in the call there is no group to wait for.
        """
        call = client.call

        def ready() -> bool | None:
            if not client.connected:
                raise RuntimeError(f"user {client.user_id} left voice while waiting for DAVE")
            if (
                client.dave_ready
                or call.protocol_version == 0
                or client.protocol_version == 0
                or len([m for m in call.members.values() if m.supports_dave]) < 2
            ):
                return True
            return None

        def describe() -> str:
            return (
                f"{client!r} to join the DAVE group (epoch {call.epoch}, group {call.group}, "
                f"pending transition {call.pending_transition}, commits {call.commits[-3:]}, "
                f"key packages {call.key_packages[-3:]}, refused {client.refused[-3:]})"
            )

        await self.core._waiters.wait_for(ready, timeout=timeout, describe=describe)

    async def speak(
        self,
        member: MemberRecord,
        audio: Any,
        *,
        realtime: bool = True,
        trailing_silence: int = 5,
        speaking_after: int = 0,
        to_bot: bool = True,
        dave_timeout: float = 10.0,
    ) -> SpokenAudio:
        require_opus()
        pcm = to_discord_pcm(audio)
        record = self.connections.get(member.guild_id)
        if to_bot:
            if record is None or not record.ready or record.address is None:
                raise RuntimeError(
                    f"the bot is not connected to voice in guild {member.guild_id} "
                    "(no voice connection has finished its handshake)"
                )
            if not self.in_channel(record, member.id):
                raise ValueError(
                    f"{member.user.username} is not in the bot's voice channel "
                    f"{record.channel_id}: move them there first with "
                    "server.set_voice_state(member, channel)"
                )
        client = self.voice_member(member.guild_id, member.id)
        await self.wait_for_member_dave(client, dave_timeout)
        size = rtp.FRAME_BYTES
        frames = [pcm[i : i + size].ljust(size, b"\0") for i in range(0, len(pcm), size)]
        stream = self._stream(member.guild_id, member.id)
        async with stream.lock:
            return await self._send_speech(
                member,
                client,
                stream,
                frames,
                realtime=realtime,
                trailing_silence=trailing_silence,
                speaking_after=speaking_after,
                to_bot=to_bot,
            )

    async def send_wire_frames(
        self, member: MemberRecord, payloads: list[bytes], *, realtime: bool = True
    ) -> SpokenAudio:
        """Send ``payloads`` as they are (no Opus encoding, no DAVE) from ``member``."""
        client = self.voice_member(member.guild_id, member.id)
        stream = self._stream(member.guild_id, member.id)
        async with stream.lock:
            return await self._send_speech(
                member,
                client,
                stream,
                payloads,
                realtime=realtime,
                trailing_silence=0,
                speaking_after=0,
                to_bot=False,
                raw=True,
            )

    async def _announce_speaking(self, member: MemberRecord, stream: MemberStream) -> None:
        record = self.connections.get(member.guild_id)
        if record is None or not record.ready or not self.in_channel(record, member.id):
            return
        self.gateway.send(
            record, SPEAKING, {"user_id": str(member.id), "ssrc": stream.ssrc, "speaking": 1}
        )
        if record.socket is not None:
            await record.socket.flush()

    async def _send_speech(
        self,
        member: MemberRecord,
        client: FakeVoiceMember,
        stream: MemberStream,
        frames: list[bytes],
        *,
        realtime: bool,
        trailing_silence: int,
        speaking_after: int,
        to_bot: bool,
        raw: bool = False,
    ) -> SpokenAudio:
        if speaking_after <= 0:
            await self._announce_speaking(member, stream)
            # Give the bot a frame's time to read SPEAKING, so it knows the SSRC's user
            # before the first packet: the socket and UDP are read by different threads.
            await asyncio.sleep(rtp.FRAME_SECONDS)
        loop = asyncio.get_running_loop()
        start = loop.time()
        if stream.last_sent_at is not None:
            # RTP timestamps keep counting through silence, as the sender's clock runs on.
            missed = int((start - stream.last_sent_at) / rtp.FRAME_SECONDS) - 1
            if missed > 0:
                stream.timestamp = (stream.timestamp + missed * rtp.SAMPLES_PER_FRAME) % (1 << 32)
        started_at: float | None = None
        finished_at: float | None = None
        for index in range(len(frames) + max(0, trailing_silence)):
            if realtime:
                delay = start + index * rtp.FRAME_SECONDS - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif index:
                await asyncio.sleep(0)
            if not client.connected or not self._still_speaking(member, to_bot):
                break  # the member left the channel (or the bot moved away)
            if raw:
                wire, level = frames[index], 60
            elif index < len(frames):
                opus = stream.encoder.encode(frames[index], rtp.SAMPLES_PER_FRAME)
                wire, level = client.encrypt(opus), audio_level(frames[index])
            else:
                wire, level = rtp.OPUS_SILENCE, 127  # DAVE passes silence through as it is
            self._send_frame(member, client, stream, wire, level)
            now = time.monotonic()
            started_at = started_at or now
            if index < len(frames):
                finished_at = now
            if index + 1 == speaking_after:
                await self._announce_speaking(member, stream)
        now = time.monotonic()
        return SpokenAudio(
            user_id=member.id,
            ssrc=stream.ssrc,
            frames=len(frames),
            started_at=started_at or now,
            finished_at=finished_at or started_at or now,
        )

    def _still_speaking(self, member: MemberRecord, to_bot: bool) -> bool:
        if not to_bot:
            return True
        record = self.connections.get(member.guild_id)
        return record is not None and self.in_channel(record, member.id)

    def _send_frame(
        self,
        member: MemberRecord,
        client: FakeVoiceMember,
        stream: MemberStream,
        payload: bytes,
        level: int,
    ) -> None:
        # To the bot, if it is in the channel: frames are dropped (but the stream's
        # clock advances) while it is not connected, e.g. during a voice reconnect,
        # like audio sent into an empty room.
        record = self.connections.get(member.guild_id)
        address = record.address if record is not None else None
        if (
            record is not None
            and record.channel_id == client.channel_id
            and record.ready
            and record.secret_key is not None
            and address is not None
            and self._udp
        ):
            packet = rtp.encrypt_rtpsize(
                record.secret_key,
                sequence=stream.sequence,
                timestamp=stream.timestamp,
                ssrc=stream.ssrc,
                payload=payload,
                nonce=stream.nonce,
                extension=rtp.audio_level_extension(level),
            )
            self._udp.sendto(packet, address)
            stream.nonce = (stream.nonce + 1) % (1 << 32)
        # To the other members in the channel (the SFU forwards it; they decrypt it).
        for other in self.dave.in_channel(member.guild_id, client.channel_id, exclude=member.id):
            other.receive(member.id, payload)
        stream.sequence = (stream.sequence + 1) % (1 << 16)
        stream.timestamp = (stream.timestamp + rtp.SAMPLES_PER_FRAME) % (1 << 32)
        stream.last_sent_at = asyncio.get_running_loop().time()

    # -- the bot's audio -----------------------------------------------------------------

    def bot_audio(self, guild_id: int) -> bytes:
        return b"".join(p.pcm for p in self.bot_packets.get(guild_id, ()))

    def clear_bot_audio(self, guild_id: int) -> None:
        self.bot_packets.pop(guild_id, None)
        self.bot_pcm_bytes.pop(guild_id, None)
