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
"""

from __future__ import annotations

import ssl
from typing import Any

from .base import GuildLike, ServerCore
from .rtp import PCM_BYTES_PER_SECOND
from .state import MemberRecord
from .tls import client_ssl_context
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
        """
        if member.user.id == self.bot_user.id:
            raise ValueError("the bot cannot speak through the fake server; play audio instead")
        return await self.voice_server.speak(
            member, audio, realtime=realtime, trailing_silence=trailing_silence
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
