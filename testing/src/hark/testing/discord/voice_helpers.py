"""Voice test helpers on ``FakeDiscord``: speak as a member, read what the bot plays.

The real, unpatched discord.py voice client connects to the loopback voice
server (:mod:`.voice_server`). discord.py hard-codes ``wss://`` for the voice
WebSocket, so the bot must trust the kit's test CA. It opens that WebSocket
through ``client.http`` (its aiohttp session, built on the ``connector`` given
to ``discord.Client``), so creating the bot with a trusting connector is enough;
nothing is patched. The connector needs a running event loop::

    bot = commands.Bot(command_prefix="!", intents=intents, connector=server.bot_connector())
    # same as: connector=aiohttp.TCPConnector(limit=0, ssl=server.client_ssl_context())

Then, with the bot in a voice channel (``await channel.connect()``, or a command
of the bot's)::

    server.set_voice_state(alice, lounge)
    await server.wait_for_voice_connection(guild)
    await server.speak(alice, pcm)  # 48 kHz stereo s16le, or an AudioClip; real time
    audio = await server.wait_for_bot_audio(guild, seconds=1.0)  # decoded PCM

Audio needs libopus (discord.py's Opus binding); the TLS certificate needs
``trustme``. Both are only needed once the bot joins a voice channel.

DAVE (Discord's end-to-end encryption, required on every call since March 2026)
is on by default, as on Discord: the bot's discord.py negotiates it with the
voice server, and every fake member in a voice channel is a real DAVE client
(``voice_member(member)``, a davey session) that encrypts what it speaks and
decrypts what it hears. Turn it off with ``FakeDiscord(dave=False)`` or per
channel with ``set_dave(channel, False)`` (live: a downgrade to transport-only
encryption). The call's server side is ``dave_call(channel)``::

    server.set_voice_state(alice, lounge)
    await server.wait_for_dave(lounge)       # the bot and alice share an MLS group
    call = server.dave_call(lounge)          # epoch, group (user id -> leaf), commits, ...
    alice_client = server.voice_member(alice)
    await server.speak(alice, pcm)           # DAVE-encrypted by alice's session
    alice_client.heard_audio(server.bot_user.id)  # what alice heard from the bot

Tools for DAVE edge cases: ``downgrade_to_passthrough`` / ``upgrade_to_dave``,
``forge_proposal``, ``send_undecryptable``, ``speak(..., speaking_after=n)``
(SPEAKING only after n packets), ``DaveCall.let_commit_win`` (decide the
commit race) and ``FakeVoiceMember.commits = False``.
"""

from __future__ import annotations

import ssl
from typing import Any

from .base import ChannelLike, GuildLike, ServerCore
from .rtp import PCM_BYTES_PER_SECOND
from .state import MemberRecord
from .tls import client_ssl_context
from .voice_dave import DAVE_VERSION, DaveCall, TransitionRecord
from .voice_member import FakeVoiceMember, undecryptable_frame
from .voice_records import BotAudioPacket, SpeakingEvent, SpokenAudio, VoiceConnectionRecord
from .voice_server import VoiceServer
from .voice_ws import CLOSE_SESSION_INVALID


class VoiceHelpers(ServerCore):
    voice_server: VoiceServer

    # -- trusting the voice server ---------------------------------------------------

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the voice server's test CA (for the bot's connector)."""
        return client_ssl_context()

    def bot_connector(self, **options: Any) -> Any:
        """``aiohttp.TCPConnector(limit=0, ssl=self.client_ssl_context(), **options)``.

        Pass it as ``discord.Client(..., connector=...)``; call it inside a running
        event loop (aiohttp requires one). ``limit=0`` is discord.py's own default.
        """
        import aiohttp

        options.setdefault("limit", 0)
        return aiohttp.TCPConnector(ssl=self.client_ssl_context(), **options)

    # -- the bot's voice connection -------------------------------------------------------

    @property
    def voice_endpoint(self) -> str | None:
        """``"127.0.0.1:<port>"`` once the voice server has started (on the first join)."""
        return self.voice_server.endpoint if self.voice_server.started else None

    def voice_connection(self, guild: GuildLike) -> VoiceConnectionRecord | None:
        """The bot's current voice connection in ``guild`` (handshake done or not)."""
        return self.voice_server.connections.get(self._guild(guild).id)

    async def wait_for_voice_connection(
        self, guild: GuildLike, *, timeout: float = 10.0
    ) -> VoiceConnectionRecord:
        """Wait until the bot's voice handshake in ``guild`` is done (key sent)."""
        guild_id = self._guild(guild).id

        def ready() -> VoiceConnectionRecord | None:
            record = self.voice_server.connections.get(guild_id)
            return record if record is not None and record.ready else None

        def describe() -> str:
            record = self.voice_server.connections.get(guild_id)
            return f"the bot's voice connection in guild {guild_id} (now: {record!r})"

        return await self._waiters.wait_for(ready, timeout=timeout, describe=describe)

    async def drop_voice(
        self, guild: GuildLike, *, code: int | None = None, abnormal: bool = False
    ) -> VoiceConnectionRecord | None:
        """Interrupt the bot's voice connection in ``guild``, to test reconnects.

        By default this is Discord's voice-server failover: the connection is
        replaced (VOICE_SERVER_UPDATE with a new token to the bot's gateway
        session) and the old WebSocket closed with 4014. discord.py reconnects by
        itself within a second, keeping its UDP socket. Returns the new record.

        With ``code`` the socket is only closed with that code (4006 also
        invalidates the voice session); ``abnormal=True`` cuts the TCP connection.
        Returns None; the bot's reaction is its own. discord.py: after 4014 it
        waits for a VOICE_SERVER_UPDATE (none comes, so it gives up after its
        timeout); after anything else it waits 0-2 s, leaves and rejoins the
        channel with a new UDP socket. A plain VoiceClient is back within about
        two seconds; a *listening* voice-recv client can take up to 30 s more,
        because discord.py's socket-reader thread stays blocked in ``select()`` on
        the socket it closed (a discord.py quirk, not the fake's), so give its
        ``connect(timeout=...)`` room (the default is 60 s) or use the failover.
        """
        guild_id = self._guild(guild).id
        record = self.voice_server.connections.get(guild_id)
        if code is None and not abnormal:
            if record is None or not record.ready:
                raise LookupError(f"the bot has no voice connection in guild {guild_id}")
            new = self.voice_server.migrate(record)
            await self.gateway.flush()
            return new
        if record is None or record.socket is None:
            raise LookupError(f"the bot has no voice WebSocket in guild {guild_id}")
        if code == CLOSE_SESSION_INVALID:
            record.invalid = True
        self.voice_server.nudge(record)  # see VoiceServer.nudge: discord.py may close the socket
        conn = self.voice_server.gateway.detach_record(record)
        assert conn is not None
        if abnormal:
            conn.abort()
        else:
            conn.close_after_flush(code or CLOSE_SESSION_INVALID, "dropped by test")
            await conn.flush()
        self._changed()
        return None

    # -- members speaking -------------------------------------------------------------------

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
        """Speak ``audio`` into the bot's voice channel as ``member``.

        ``audio`` is 48 kHz stereo s16le bytes or an AudioClip-like object
        (``pcm``, ``sample_rate``, ``channels``; converted with ``hark.audio``).
        The member must be in the bot's channel (``set_voice_state``) and the
        bot's handshake done (``wait_for_voice_connection``).

        Sends SPEAKING (op 5: user_id, the member's SSRC) on the bot's voice
        socket, then one encrypted 20 ms Opus frame per RTP packet to the bot's
        UDP address, paced in real time unless ``realtime=False`` (as fast as
        possible: fine for a sink that takes every packet; jitter buffers such as
        voice-recv's, 10 packets deep, may drop some), then ``trailing_silence``
        Opus silence frames (what Discord clients send; they also flush
        receivers' jitter buffers), then nothing, as Discord sends nothing during
        silence. Each member has their own SSRC (new after leaving voice);
        several members may speak at once (run ``speak`` calls concurrently).
        Returns when the last packet was sent.

        With DAVE the frames are encrypted by the member's own session (the silence
        frames stay as they are, as DAVE allows), and the member first waits up to
        ``dave_timeout`` seconds to be in the call's MLS group, as a client would;
        the other fake members in the channel hear it too. ``speaking_after=n``
        sends SPEAKING only after the first ``n`` packets (the bot then gets
        packets from an SSRC it cannot map to a user yet). ``to_bot=False``
        speaks to the channel without the bot (members only).
        """
        if member.user.id == self.bot_user.id:
            raise ValueError("the bot cannot speak through the fake server; play audio instead")
        return await self.voice_server.speak(
            member,
            audio,
            realtime=realtime,
            trailing_silence=trailing_silence,
            speaking_after=speaking_after,
            to_bot=to_bot,
            dave_timeout=dave_timeout,
        )

    # -- DAVE ----------------------------------------------------------------------------------

    def voice_member(self, member: MemberRecord) -> FakeVoiceMember:
        """``member``'s voice client (DAVE session, what it heard) while it is in voice."""
        return self.voice_server.voice_member(member.guild_id, member.id)

    def dave_call(self, channel: ChannelLike) -> DaveCall | None:
        """The voice server's DAVE state for a voice channel (None before anyone joined)."""
        return self.voice_server.dave.calls.get(self._channel(channel).id)

    def set_dave(self, channel: ChannelLike, enabled: bool) -> DaveCall:
        """Switch DAVE on or off for one voice channel (overrides ``FakeDiscord(dave=...)``).

        On a live E2EE call, off is a downgrade to transport-only encryption (op 21
        version 0, then op 22 once everyone is ready); on again is an upgrade (op 24
        epoch 1: everyone sends a new key package and a new group forms). Clients
        joining later get ``dave_protocol_version`` 0 or 1 accordingly.
        """
        record = self._channel(channel)
        if not record.is_voice or record.guild_id is None:
            raise ValueError(f"#{record.name} is not a voice channel")
        return self.voice_server.dave.set_enabled(record.guild_id, record.id, enabled)

    async def downgrade_to_passthrough(
        self, channel: ChannelLike, *, timeout: float = 10.0
    ) -> TransitionRecord:
        """Downgrade the channel's call to transport-only encryption; wait until executed."""
        call = self.set_dave(channel, False)
        await self.wait_for_dave(channel, protocol_version=0, timeout=timeout)
        return next(t for t in reversed(call.transitions) if t.kind == "downgrade")

    async def upgrade_to_dave(self, channel: ChannelLike, *, timeout: float = 10.0) -> DaveCall:
        """Turn DAVE back on for the channel; wait until everyone is in the new group."""
        call = self.set_dave(channel, True)
        await self.wait_for_dave(channel, timeout=timeout)
        return call

    async def wait_for_dave(
        self,
        channel: ChannelLike,
        *,
        protocol_version: int = DAVE_VERSION,
        epoch: int | None = None,
        timeout: float = 10.0,
    ) -> DaveCall:
        """Wait until the channel's call is settled.

        For version 1: everyone in the channel with DAVE (the bot included) is in
        one MLS group, the last transition was executed with everyone ready, and
        every fake member's session is ready; ``epoch``: at least that epoch. For
        version 0: the call runs without DAVE and no transition is pending.
        """
        channel_id = self._channel(channel).id

        def settled() -> DaveCall | None:
            call = self.voice_server.dave.calls.get(channel_id)
            if call is None or call.protocol_version != protocol_version:
                return None
            if protocol_version == 0:
                return call if call.pending_transition is None else None
            if not call.settled() or (epoch is not None and call.epoch < epoch):
                return None
            members = self.voice_server.dave.in_channel(call.guild_id, channel_id)
            if not all(m.dave_ready for m in members if m.supports_dave):
                return None
            return call

        def describe() -> str:
            call = self.voice_server.dave.calls.get(channel_id)
            if call is None:
                return f"a DAVE call in channel {channel_id} (nobody joined)"
            members = self.voice_server.dave.in_channel(call.guild_id, channel_id)
            return (
                f"DAVE v{protocol_version} settled in channel {channel_id}: now v"
                f"{call.protocol_version}, epoch {call.epoch}, group {call.group}, connected "
                f"{call.connected_user_ids()}, pending transition {call.pending_transition}, "
                f"last transitions {call.transitions[-2:]}, last commits {call.commits[-3:]}, "
                f"members {members}"
            )

        return await self._waiters.wait_for(settled, timeout=timeout, describe=describe)

    def forge_proposal(self, channel: ChannelLike, *, to: list[int] | None = None) -> bytes:
        """Send an Add proposal with a wrong signature (not the external sender's).

        Goes to ``to`` (user ids; default: everyone in the call with DAVE). Clients
        must refuse it; fake members record that in ``voice_member(m).refused``.
        """
        call = self.dave_call(channel)
        if call is None:
            raise LookupError(f"no DAVE call in channel {self._channel(channel).id}")
        return call.forge_proposal(to, user_id=self.ids.next())

    async def send_undecryptable(
        self, member: MemberRecord, frames: int = 5, *, realtime: bool = True
    ) -> SpokenAudio:
        """Send ``frames`` packets that look like DAVE frames (marker 0xFAFA) but do not
        decrypt, from ``member`` to the bot and the channel: a receiver must drop
        them, not feed them to its Opus decoder."""
        return await self.voice_server.send_wire_frames(
            member, [undecryptable_frame(i) for i in range(frames)], realtime=realtime
        )

    # -- what the bot plays -----------------------------------------------------------------

    def bot_audio(self, guild: GuildLike) -> bytes:
        """Decoded PCM (48 kHz stereo s16le) the bot has sent in ``guild`` so far.

        Frames are concatenated in arrival order; pauses between them are not filled
        in, and Opus silence frames (0xF8 0xFF 0xFE) add nothing. Use
        ``bot_audio_packets`` for timing.
        """
        return self.voice_server.bot_audio(self._guild(guild).id)

    def bot_audio_packets(self, guild: GuildLike) -> list[BotAudioPacket]:
        """Every packet the bot sent in ``guild``, with arrival times (``time.monotonic()``)."""
        return list(self.voice_server.bot_packets.get(self._guild(guild).id, ()))

    def bot_audio_seconds(self, guild: GuildLike) -> float:
        return self.voice_server.bot_pcm_bytes.get(self._guild(guild).id, 0) / PCM_BYTES_PER_SECOND

    async def wait_for_bot_audio(
        self, guild: GuildLike, seconds: float = 0.5, *, timeout: float = 10.0
    ) -> bytes:
        """Wait until the bot has sent at least ``seconds`` of audio; returns ``bot_audio``."""
        guild_id = self._guild(guild).id
        wanted = int(seconds * PCM_BYTES_PER_SECOND)

        def enough() -> bool | None:
            return True if self.voice_server.bot_pcm_bytes.get(guild_id, 0) >= wanted else None

        def describe() -> str:
            have = self.voice_server.bot_pcm_bytes.get(guild_id, 0) / PCM_BYTES_PER_SECOND
            rejected = self.voice_server.rejected[-3:]
            return f"{seconds:.2f}s of audio from the bot in guild {guild_id}, have {have:.2f}s" + (
                f"; rejected packets: {rejected}" if rejected else ""
            )

        await self._waiters.wait_for(enough, timeout=timeout, describe=describe)
        return self.voice_server.bot_audio(guild_id)

    def clear_bot_audio(self, guild: GuildLike) -> None:
        """Forget the bot's audio (and packets) in ``guild`` so far."""
        self.voice_server.clear_bot_audio(self._guild(guild).id)

    def bot_speaking(self, guild: GuildLike) -> int | None:
        """The last SPEAKING flags the bot sent in ``guild`` (1 voice, 0 none); None if never."""
        events = self.voice_server.bot_speaking.get(self._guild(guild).id)
        return events[-1].speaking if events else None

    def bot_speaking_events(self, guild: GuildLike) -> list[SpeakingEvent]:
        return list(self.voice_server.bot_speaking.get(self._guild(guild).id, ()))

    async def wait_for_bot_speaking(
        self, guild: GuildLike, speaking: bool = True, *, timeout: float = 10.0
    ) -> None:
        """Wait until the bot's last SPEAKING says it is (or, ``speaking=False``, is not)."""
        guild_id = self._guild(guild).id

        def matches() -> bool | None:
            events = self.voice_server.bot_speaking.get(guild_id)
            flags = events[-1].speaking if events else 0
            return True if bool(flags) == speaking else None

        await self._waiters.wait_for(
            matches,
            timeout=timeout,
            describe=lambda: f"the bot's SPEAKING to be {int(speaking)} in guild {guild_id}",
        )
