"""The fake voice server with the real discord.py voice client (and voice-recv).

The bot trusts the voice server's TLS certificate through its connector
(``server.bot_connector()``); nothing in discord.py is patched.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import socket
import struct
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import davey
import discord
import numpy as np
import pytest
from discord.ext import commands, voice_recv
from discord.ext.voice_recv.reader import PacketDecryptor
from discord.ext.voice_recv.rtp import decode_rtp

from hark.testing.discord import FakeDiscord, eventually
from hark.testing.discord import rtp as fake_rtp

World = Any  # fixture type, defined in conftest.py
StartBot = Callable[..., Awaitable[discord.Client]]
MakeBot = Callable[..., commands.Bot]

pytestmark = pytest.mark.timeout(30)

RATE = 48_000
MODE = "aead_xchacha20_poly1305_rtpsize"


@pytest.fixture(autouse=True)
def _opus() -> None:
    if not discord.opus.is_loaded() and not discord.opus._load_default():
        pytest.fail(
            "libopus cannot be loaded, so discord.py cannot encode voice: install it "
            "(apt-get install libopus0; scripts/test does this)"
        )


def tone(frequency: float, seconds: float, *, rate: int = RATE, channels: int = 2) -> bytes:
    """A sine tone, s16le, a whole number of 20 ms frames long."""
    count = round(seconds * 50) * rate // 50
    mono = np.sin(2 * np.pi * frequency * np.arange(count) / rate) * 0.3 * 32767
    return np.repeat(mono.astype("<i2")[:, None], channels, axis=1).tobytes()


def dominant_frequency(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, 2)[:, 0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


def seconds_of(pcm: bytes) -> float:
    return len(pcm) / (RATE * 4)


@pytest.fixture
async def voice_bot(server: FakeDiscord, start_bot: StartBot, make_bot: MakeBot) -> commands.Bot:
    bot = make_bot(connector=server.bot_connector())
    await start_bot(bot)
    return bot


async def connect(bot: commands.Bot, world: World, **options: Any) -> discord.VoiceClient:
    channel = bot.get_channel(world.voice.id)
    assert isinstance(channel, discord.VoiceChannel)
    return await channel.connect(timeout=10, **options)


async def play(vc: discord.VoiceClient, pcm: bytes) -> None:
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[Exception | None] = loop.create_future()
    vc.play(
        discord.PCMAudio(io.BytesIO(pcm)),
        after=lambda error: loop.call_soon_threadsafe(finished.set_result, error),
    )
    assert await asyncio.wait_for(finished, 10) is None


class Received:
    """What a voice-recv BasicSink got, per user id (written from its router thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pcm: dict[int | None, bytearray] = defaultdict(bytearray)

    def __call__(self, user: discord.abc.User | None, data: voice_recv.VoiceData) -> None:
        with self.lock:
            self.pcm[None if user is None else user.id] += data.pcm

    def of(self, user_id: int | None) -> bytes:
        with self.lock:
            return bytes(self.pcm.get(user_id, b""))


# -- the bot joins, plays, leaves -------------------------------------------------------


async def test_bot_joins_plays_a_tone_and_leaves(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    vc = await connect(voice_bot, world)
    assert vc.is_connected() and vc.mode == MODE
    record = await server.wait_for_voice_connection(world.guild)
    assert record.channel_id == world.voice.id and record.ssrc == vc.ssrc
    assert record.mode == MODE and bytes(vc.secret_key) == record.secret_key
    assert record.max_dave_protocol_version == davey.DAVE_PROTOCOL_VERSION
    assert vc._connection.dave_protocol_version == 1  # DAVE is on, as on Discord
    assert vc.endpoint == server.voice_endpoint == record.endpoint
    names = [event.name for event in server.gateway_events]
    assert names.index("VOICE_STATE_UPDATE") < names.index("VOICE_SERVER_UPDATE")
    # discord.py says "not speaking" as soon as it has the key.
    await eventually(lambda: server.bot_speaking(world.guild) == 0)

    await play(vc, tone(440, 1.0))
    audio = await server.wait_for_bot_audio(world.guild, seconds=1.0, timeout=5)
    assert seconds_of(audio) == pytest.approx(1.0, abs=0.021)
    assert dominant_frequency(audio) == pytest.approx(440, abs=3)
    # After the audio, discord.py sends five Opus silence frames.
    await eventually(lambda: sum(p.silence for p in server.bot_audio_packets(world.guild)) == 5)
    packets = server.bot_audio_packets(world.guild)
    assert [p.silence for p in packets[-6:]] == [False] + [True] * 5
    # Paced in real time by discord.py's player (a lower bound only: load only slows it).
    assert packets[-6].received_at - packets[0].received_at > 0.5
    assert all(a.received_at <= b.received_at for a, b in itertools.pairwise(packets))
    assert all(p.ssrc == vc.ssrc for p in packets)
    await server.wait_for_bot_speaking(world.guild, False)
    assert [e.speaking for e in server.bot_speaking_events(world.guild)][-2:] == [1, 0]

    server.clear_bot_audio(world.guild)
    assert server.bot_audio(world.guild) == b"" and server.bot_audio_seconds(world.guild) == 0

    await vc.disconnect()
    assert not vc.is_connected()
    assert server.voice_connection(world.guild) is None
    assert server.voice_state(world.guild, server.bot_user) is None
    await eventually(lambda: not server.voice_server.gateway.sockets)
    assert record.ended
    assert not server.voice_server.rejected
    assert voice_bot.voice_clients == []


async def test_a_bot_without_the_trusting_connector_fails_on_the_certificate(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = await start_bot(make_bot())
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await connect(bot, world)  # type: ignore[arg-type]
    await eventually(lambda: server.voice_state(world.guild, server.bot_user) is None)
    assert server.voice_connection(world.guild) is None


async def test_voice_reconnects_after_a_voice_server_failover(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    vc = await connect(voice_bot, world)
    first = await server.wait_for_voice_connection(world.guild)
    second = await server.drop_voice(world.guild)  # new VOICE_SERVER_UPDATE, old socket 4014
    assert second is not None and second.token != first.token
    await server.wait_for_voice_connection(world.guild, timeout=10)
    await eventually(lambda: vc.is_connected() and vc.ssrc == second.ssrc, timeout=10)
    assert first.ended and vc.token == second.token
    await play(vc, tone(660, 0.4))
    audio = await server.wait_for_bot_audio(world.guild, seconds=0.4, timeout=5)
    assert dominant_frequency(audio) == pytest.approx(660, abs=5)
    assert {p.ssrc for p in server.bot_audio_packets(world.guild)} == {second.ssrc}
    await vc.disconnect()


async def test_listening_bot_moves_to_another_voice_channel(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    quiet = server.create_voice_channel(world.guild, "Quiet Room")
    # Plain voice-recv cannot decrypt DAVE (its issues #53, #64): test it without.
    server.set_dave(world.voice, False)
    server.set_dave(quiet, False)
    vc = await connect(voice_bot, world, cls=voice_recv.VoiceRecvClient)
    assert isinstance(vc, voice_recv.VoiceRecvClient)
    received = Received()
    vc.listen(voice_recv.BasicSink(received))
    first = await server.wait_for_voice_connection(world.guild)
    await eventually(lambda: voice_bot.get_channel(quiet.id) is not None)
    await vc.move_to(voice_bot.get_channel(quiet.id), timeout=10)  # type: ignore[arg-type]
    second = await server.wait_for_voice_connection(world.guild)
    assert second is not first and first.ended and second.channel_id == quiet.id
    await eventually(lambda: vc.is_connected() and vc.ssrc == second.ssrc, timeout=10)
    assert server.voice_state(world.guild, server.bot_user).channel_id == quiet.id  # type: ignore[union-attr]

    server.set_voice_state(world.alice, world.voice)  # the old channel
    with pytest.raises(ValueError, match="not in the bot's voice channel"):
        await server.speak(world.alice, tone(300, 0.1))
    server.set_voice_state(world.alice, quiet)
    await server.speak(world.alice, tone(350, 0.5))
    await eventually(lambda: seconds_of(received.of(world.alice.id)) >= 0.45, timeout=5)
    assert dominant_frequency(received.of(world.alice.id)) == pytest.approx(350, abs=10)
    await play(vc, tone(520, 0.2))
    audio = await server.wait_for_bot_audio(world.guild, seconds=0.2, timeout=5)
    assert dominant_frequency(audio) == pytest.approx(520, abs=10)
    vc.stop_listening()
    await vc.disconnect()


# -- members speaking to the bot --------------------------------------------------------


async def test_two_members_speak_and_voice_recv_attributes_their_audio(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    bob = server.create_member(world.guild, "bob")
    server.set_dave(world.voice, False)  # plain voice-recv cannot decrypt DAVE
    vc = await connect(voice_bot, world, cls=voice_recv.VoiceRecvClient)
    assert isinstance(vc, voice_recv.VoiceRecvClient)
    received = Received()
    vc.listen(voice_recv.BasicSink(received))
    server.set_voice_state(world.alice, world.voice)
    server.set_voice_state(bob, world.voice)
    guild = voice_bot.get_guild(world.guild.id)
    assert guild is not None
    await eventually(lambda: {m.id for m in guild.get_channel(world.voice.id).members} >= {bob.id})  # type: ignore[union-attr]

    # Bob's audio is a 24 kHz mono clip: the server converts it with hark.audio.
    bob_clip = SimpleNamespace(
        pcm=tone(700, 1.0, rate=24_000, channels=1), sample_rate=24_000, channels=1
    )
    alice_said, bob_said = await asyncio.gather(
        server.speak(world.alice, tone(300, 1.0)), server.speak(bob, bob_clip)
    )
    assert alice_said.ssrc != bob_said.ssrc and alice_said.frames == bob_said.frames == 50
    assert bob_said.finished_at - bob_said.started_at >= 0.95  # real time by default

    def heard_enough() -> bool:
        return all(seconds_of(received.of(u)) >= 0.95 for u in (world.alice.id, bob.id))

    await eventually(heard_enough, timeout=5)
    assert dominant_frequency(received.of(world.alice.id)) == pytest.approx(300, abs=5)
    assert dominant_frequency(received.of(bob.id)) == pytest.approx(700, abs=5)
    assert received.of(None) == b""
    assert vc._get_id_from_ssrc(alice_said.ssrc) == world.alice.id
    vc.stop_listening()
    await vc.disconnect()


async def test_speak_checks_the_channel_and_the_connection(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    with pytest.raises(RuntimeError, match="not connected to voice"):
        await server.speak(world.alice, tone(300, 0.1))
    vc = await connect(voice_bot, world)
    with pytest.raises(ValueError, match="not in the bot's voice channel"):
        await server.speak(world.alice, tone(300, 0.1))
    server.set_voice_state(world.alice, world.voice)
    with pytest.raises(ValueError, match="4-byte"):
        await server.speak(world.alice, b"\0\0\0")
    with pytest.raises(TypeError, match="AudioClip"):
        await server.speak(world.alice, "hello")
    # A plain VoiceClient does not listen: the packets are simply not read.
    said = await server.speak(world.alice, tone(300, 0.2), realtime=False)
    assert said.frames == 10
    await vc.disconnect()


# -- the protocol, raw --------------------------------------------------------------------


@pytest.fixture
async def raw_voice(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> AsyncIterator[SimpleNamespace]:
    """The bot in the voice channel without a voice client; a raw client talks instead."""
    bot = await start_bot(make_bot())
    guild = bot.get_guild(world.guild.id)
    assert guild is not None
    await guild.change_voice_state(channel=guild.get_channel(world.voice.id))  # type: ignore[arg-type]
    await eventually(lambda: bool(getattr(server.voice_connection(world.guild), "endpoint", "")))
    record = server.voice_connection(world.guild)
    assert record is not None
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    udp.bind(("127.0.0.1", 0))
    connector = aiohttp.TCPConnector(ssl=server.client_ssl_context())
    async with aiohttp.ClientSession(connector=connector) as http:
        yield SimpleNamespace(bot=bot, guild=guild, record=record, http=http, udp=udp)
    udp.close()


def identify(record: Any, **changes: Any) -> dict[str, Any]:
    data = {
        "server_id": str(record.guild_id),
        "user_id": str(record.user_id),
        "session_id": record.session_id,
        "token": record.token,
        "max_dave_protocol_version": 0,
    }
    return {"op": 0, "d": {**data, **changes}}


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
    return ws.close_code


async def test_raw_handshake_ip_discovery_and_rtp(
    server: FakeDiscord, world: World, raw_voice: SimpleNamespace
) -> None:
    record, http, udp = raw_voice.record, raw_voice.http, raw_voice.udp
    url = f"wss://{record.endpoint}/?v=8"
    loop = asyncio.get_running_loop()

    async with http.ws_connect(url) as ws:
        hello = await ws.receive_json()
        assert hello["op"] == 8 and hello["d"]["heartbeat_interval"] > 0 and "seq" not in hello
        await ws.send_json({"op": 3, "d": {"t": 1234, "seq_ack": -1}})
        assert await ws.receive_json() == {"op": 6, "d": {"t": 1234}}
        await ws.send_json(identify(record, token="wrong"))
        assert await closed_with(ws) == 4004
    async with http.ws_connect(url) as ws:
        await ws.receive_json()
        await ws.send_json({"op": 1, "d": {"protocol": "udp", "data": {}}})
        assert await closed_with(ws) == 4003
    async with http.ws_connect(url) as ws:
        await ws.receive_json()
        await ws.send_json(identify(record))
        ready = await ws.receive_json()
        assert ready["op"] == 2 and ready["seq"] == 1
        await ws.send_json(
            {
                "op": 1,
                "d": {
                    "protocol": "udp",
                    "data": {"address": "127.0.0.1", "port": 9, "mode": "xsalsa20_poly1305"},
                },
            }
        )
        assert await closed_with(ws) == 4016

    ws = await http.ws_connect(url)
    await ws.receive_json()
    await ws.send_json(identify(record))
    ready = (await ws.receive_json())["d"]
    assert ready["ip"] == "127.0.0.1" and MODE in ready["modes"]
    ssrc, server_udp = ready["ssrc"], (ready["ip"], ready["port"])

    # IP discovery, byte for byte as discord.py does it.
    request = bytearray(74)
    struct.pack_into(">HHI", request, 0, 1, 70, ssrc)
    await loop.sock_sendto(udp, bytes(request), server_udp)
    response, _ = await asyncio.wait_for(loop.sock_recvfrom(udp, 2048), 5)
    assert len(response) == 74 and response[1] == 0x02
    address = response[8 : response.index(0, 8)].decode("ascii")
    port = struct.unpack_from(">H", response, len(response) - 2)[0]
    assert (address, port) == udp.getsockname()

    await ws.send_json(
        {
            "op": 1,
            "d": {"protocol": "udp", "data": {"address": address, "port": port, "mode": MODE}},
        }
    )
    description = await ws.receive_json()
    assert description["op"] == 4 and description["seq"] == 2
    assert description["d"]["mode"] == MODE and description["d"]["dave_protocol_version"] == 0
    key = bytes(description["d"]["secret_key"])
    assert len(key) == 32 and record.ready

    # RTP from the client, encrypted by discord.py's own code, decoded by the server.
    sender = SimpleNamespace(secret_key=list(key), _incr_nonce=0, checked_add=lambda *a: None)
    encoder = discord.opus.Encoder()
    pcm = tone(500, 0.2)
    for index in range(10):
        header = bytearray(12)
        header[0], header[1] = 0x80, 0x78
        struct.pack_into(">HII", header, 2, index, index * 960, ssrc)
        frame = encoder.encode(pcm[index * 3840 : (index + 1) * 3840], 960)
        packet = discord.VoiceClient._encrypt_aead_xchacha20_poly1305_rtpsize(
            sender,  # type: ignore[arg-type]
            header,
            frame,
        )
        sender._incr_nonce += 1
        await loop.sock_sendto(udp, packet, server_udp)
    await loop.sock_sendto(udp, (7).to_bytes(8, "big"), server_udp)  # voice-recv's keep-alive
    audio = await server.wait_for_bot_audio(world.guild, seconds=0.2, timeout=5)
    assert dominant_frequency(audio) == pytest.approx(500, abs=10)
    await ws.send_json({"op": 5, "d": {"speaking": 1, "delay": 0, "ssrc": ssrc}})
    await eventually(lambda: server.bot_speaking(world.guild) == 1)

    # Members coming and speaking: CLIENTS_CONNECT, SPEAKING, then RTP that voice-recv reads.
    server.set_voice_state(world.alice, world.voice)
    connect_msg = await ws.receive_json()
    assert connect_msg == {"op": 11, "d": {"user_ids": [str(world.alice.id)]}, "seq": 3}
    said = await server.speak(world.alice, tone(800, 0.1), realtime=False, trailing_silence=2)
    speaking = await ws.receive_json()
    assert speaking["op"] == 5 and speaking["seq"] == 4
    assert speaking["d"] == {"user_id": str(world.alice.id), "ssrc": said.ssrc, "speaking": 1}
    decryptor = PacketDecryptor(MODE, key)
    decoder = discord.opus.Decoder()
    payloads = []
    for _ in range(7):
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(udp, 2048), 5)
        packet = decode_rtp(data)
        payloads.append(decryptor.decrypt_rtp(packet))
        assert packet.ssrc == said.ssrc and packet.extension_data.get(1) is not None
    assert payloads[-2:] == [fake_rtp.OPUS_SILENCE] * 2
    heard = b"".join(decoder.decode(p, fec=False) for p in payloads[:5])
    assert dominant_frequency(heard) == pytest.approx(800, abs=60)

    # Dropped socket, RESUME with seq_ack: the missed messages come again, then RESUMED.
    await ws.close(code=4000)
    server.set_voice_state(world.alice, None)
    async with http.ws_connect(url) as ws2:
        await ws2.receive_json()
        await ws2.send_json(
            {
                "op": 7,
                "d": {
                    "token": record.token,
                    "server_id": str(record.guild_id),
                    "session_id": record.session_id,
                    "seq_ack": 3,
                },
            }
        )
        assert (await ws2.receive_json())["seq"] == 4  # SPEAKING again
        assert await ws2.receive_json() == {
            "op": 13,
            "d": {"user_id": str(world.alice.id)},
            "seq": 5,
        }
        assert await ws2.receive_json() == {"op": 9, "d": None}
        assert record.resume_count == 1

        # The bot leaves the channel: its voice socket is closed with 4014.
        await raw_voice.guild.change_voice_state(channel=None)
        assert await closed_with(ws2) == 4014
    assert record.ended and server.voice_connection(world.guild) is None
    assert not server.voice_server.rejected
