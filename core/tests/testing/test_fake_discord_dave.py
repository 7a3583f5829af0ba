"""DAVE (Discord's MLS end-to-end encryption) on the loopback voice server.

First with fake members only: each is a real davey client, the server is the
MLS external sender and delivery service. Then with the real discord.py 2.7
voice client (its own DAVE implementation), and raw, byte for byte.
"""

from __future__ import annotations

import asyncio
import io
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import davey
import discord
import numpy as np
import pytest
from discord.ext import commands

from hark.testing.discord import FakeDiscord, eventually
from hark.testing.discord import dave_mls as mls
from hark.testing.discord import rtp as fake_rtp
from hark.testing.discord.voice_member import is_dave_frame

World = Any  # fixture type, defined in conftest.py
StartBot = Callable[..., Awaitable[discord.Client]]
MakeBot = Callable[..., commands.Bot]

pytestmark = pytest.mark.timeout(60)

RATE = 48_000


@pytest.fixture(autouse=True)
def _opus() -> None:
    if not discord.opus.is_loaded() and not discord.opus._load_default():
        pytest.fail("libopus cannot be loaded: install it (apt-get install libopus0)")


def tone(frequency: float, seconds: float) -> bytes:
    """A stereo s16le sine tone, a whole number of 20 ms frames long."""
    count = round(seconds * 50) * RATE // 50
    mono = np.sin(2 * np.pi * frequency * np.arange(count) / RATE) * 0.3 * 32767
    return np.repeat(mono.astype("<i2")[:, None], 2, axis=1).tobytes()


def dominant_frequency(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, 2)[:, 0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


def seconds_of(pcm: bytes) -> float:
    return len(pcm) / (RATE * 4)


# -- fake members only: davey clients and the server ---------------------------------------


async def test_two_members_form_a_group_and_hear_each_other_encrypted(
    server: FakeDiscord, world: World
) -> None:
    bob = server.create_member(world.guild, "bob")
    server.set_voice_state(world.alice, world.voice)
    server.set_voice_state(bob, world.voice)
    call = await server.wait_for_dave(world.voice, timeout=5)

    # The server checked both key packages, alice (first there) committed bob's Add.
    assert [(k.user_id, k.accepted) for k in call.key_packages] == [
        (world.alice.id, True),
        (bob.id, True),
    ]
    assert call.epoch == 1 and call.group == {world.alice.id: 0, bob.id: 1}
    [commit] = call.commits
    assert commit.accepted and commit.user_id == world.alice.id and commit.added == [bob.id]
    [transition] = call.transitions
    assert transition.kind == "commit" and transition.executed and not transition.timed_out
    assert transition.ready == {world.alice.id, bob.id}
    alice, bobs = server.voice_member(world.alice), server.voice_member(bob)
    assert alice.dave_ready and bobs.dave_ready and alice.epoch == bobs.epoch == 1
    assert alice.session is not None and bobs.session is not None
    assert alice.session.own_leaf_index == 0 and bobs.session.own_leaf_index == 1
    assert alice.privacy_code == bobs.privacy_code is not None
    assert sorted(alice.session.get_user_ids()) == sorted([str(world.alice.id), str(bob.id)])

    # On the wire every audio frame is a DAVE frame; bob decrypts and hears the tone.
    wire = alice.encrypt(b"\x78" * 40)
    assert is_dave_frame(wire) and wire.endswith(b"\xfa\xfa")
    assert alice.encrypt(fake_rtp.OPUS_SILENCE) == fake_rtp.OPUS_SILENCE  # passed through
    said = await server.speak(world.alice, tone(440, 0.5), to_bot=False, trailing_silence=2)
    assert said.frames == 25
    heard = bobs.heard_audio(world.alice.id)
    assert seconds_of(heard) == pytest.approx(0.5, abs=0.021)
    assert dominant_frequency(heard) == pytest.approx(440, abs=5)
    assert bobs.undecryptable == [] and alice.heard_audio(world.alice.id) == b""
    stats = bobs.session.get_decryption_stats(world.alice.id)
    assert stats is not None and stats.successes >= 25


async def test_members_join_midway_and_leave_with_tracked_leaves(
    server: FakeDiscord, world: World
) -> None:
    bob, carol, dave = (server.create_member(world.guild, n) for n in ("bob", "carol", "dave"))
    for member in (world.alice, bob):
        server.set_voice_state(member, world.voice)
    await server.wait_for_dave(world.voice, timeout=5)

    # Carol joins midway: both members get her Add; the first commit wins, epoch 2.
    server.set_voice_state(carol, world.voice)
    call = await server.wait_for_dave(world.voice, epoch=2, timeout=5)
    assert call.group == {world.alice.id: 0, bob.id: 1, carol.id: 2}
    winner, *others = [c for c in call.commits if c.epoch == 1]
    assert winner.accepted and winner.added == [carol.id]
    assert all(not c.accepted and "not 2" in c.reason for c in others)
    await server.speak(carol, tone(600, 0.3), to_bot=False)
    for member in (world.alice, bob):
        assert dominant_frequency(server.voice_member(member).heard_audio(carol.id)) == (
            pytest.approx(600, abs=10)
        )

    # Alice leaves: a Remove for leaf 0, signed by the external sender; epoch 3.
    alice = server.voice_member(world.alice)
    server.set_voice_state(world.alice, None)
    call = await server.wait_for_dave(world.voice, epoch=3, timeout=5)
    assert call.group == {bob.id: 1, carol.id: 2}
    assert [c.removed for c in call.commits if c.accepted][-1] == [0]
    assert not alice.connected
    with pytest.raises(LookupError, match="not in a voice channel"):
        server.voice_member(world.alice)
    carols = server.voice_member(carol)
    assert carols.session is not None and str(world.alice.id) not in carols.session.get_user_ids()

    # Dave joins: the leftmost blank leaf (alice's) is his.
    server.set_voice_state(dave, world.voice)
    call = await server.wait_for_dave(world.voice, epoch=4, timeout=5)
    assert call.group == {dave.id: 0, bob.id: 1, carol.id: 2}
    assert server.voice_member(dave).session.own_leaf_index == 0  # type: ignore[union-attr]
    await server.speak(bob, tone(350, 0.3), to_bot=False)
    assert dominant_frequency(server.voice_member(dave).heard_audio(bob.id)) == pytest.approx(
        350, abs=10
    )


async def test_the_last_member_gets_a_sole_member_reset_and_a_new_group_forms(
    server: FakeDiscord, world: World
) -> None:
    bob, carol = server.create_member(world.guild, "bob"), server.create_member(world.guild, "c")
    server.set_voice_state(world.alice, world.voice)
    server.set_voice_state(bob, world.voice)
    call = await server.wait_for_dave(world.voice, timeout=5)
    server.set_voice_state(world.alice, None)
    bobs = server.voice_member(bob)
    await eventually(lambda: call.transitions[-1].kind == "reset" and bobs.epoch == 0)
    # Op 24 epoch 1 then op 21 transition 0: bob starts over with a new key package.
    assert call.epoch == 0 and call.group == {} and not bobs.dave_ready
    assert [k.user_id for k in call.key_packages][-1] == bob.id
    assert 0 in bobs.executed_transitions

    server.set_voice_state(carol, world.voice)
    call = await server.wait_for_dave(world.voice, timeout=5)
    assert call.epoch == 1 and call.group == {bob.id: 0, carol.id: 1}
    assert call.commits[-1].user_id == bob.id  # the one already there creates the group


async def test_commit_race_the_first_commit_wins_or_the_one_a_test_picks(
    server: FakeDiscord, world: World
) -> None:
    bob, carol, dave = (server.create_member(world.guild, n) for n in ("bob", "carol", "dave"))
    for member in (world.alice, bob):
        server.set_voice_state(member, world.voice)
    call = await server.wait_for_dave(world.voice, timeout=5)
    # Bob's commit wins, though alice (leaf 0) gets the proposals first.
    call.let_commit_win(bob.id)
    server.set_voice_state(carol, world.voice)
    await server.wait_for_dave(world.voice, epoch=2, timeout=5)
    epoch1 = [c for c in call.commits if c.epoch == 1]
    assert [(c.user_id, c.accepted) for c in epoch1] == [(bob.id, True), (world.alice.id, False)]
    assert "for epoch 1, not 2" in epoch1[1].reason
    # Alice was the committer who lost: she applied bob's commit instead of her own.
    assert server.voice_member(world.alice).epoch == 2

    # A member that does not commit leaves the race to the others.
    call.let_commit_win(None)
    server.voice_member(world.alice).commits = False
    server.voice_member(bob).commits = False
    server.set_voice_state(dave, world.voice)
    await server.wait_for_dave(world.voice, epoch=3, timeout=5)
    assert [c.user_id for c in call.commits if c.epoch == 2] == [carol.id]


async def test_a_pending_members_add_is_revoked_when_they_leave(
    server: FakeDiscord, world: World
) -> None:
    bob, carol, dave = (server.create_member(world.guild, n) for n in ("bob", "carol", "dave"))
    for member in (world.alice, bob):
        server.set_voice_state(member, world.voice)
    call = await server.wait_for_dave(world.voice, timeout=5)
    for member in (world.alice, bob):
        server.voice_member(member).commits = False
    server.set_voice_state(carol, world.voice)
    await eventually(lambda: len(call.in_flight) == 2)
    server.set_voice_state(carol, None)  # before anyone committed her Add
    await asyncio.sleep(0.05)
    assert call.in_flight == {} and call.epoch == 1
    assert [(u, op) for u, _, op in call.proposals_sent[-2:]] == [
        (world.alice.id, 1),
        (bob.id, 1),
    ]
    server.voice_member(world.alice).commits = True
    server.set_voice_state(dave, world.voice)
    await server.wait_for_dave(world.voice, epoch=2, timeout=5)
    assert call.group == {world.alice.id: 0, bob.id: 1, dave.id: 2}
    assert server.voice_member(world.alice).refused == []


async def test_a_forged_proposal_is_refused_by_every_client(
    server: FakeDiscord, world: World
) -> None:
    bob = server.create_member(world.guild, "bob")
    server.set_voice_state(world.alice, world.voice)
    server.set_voice_state(bob, world.voice)
    call = await server.wait_for_dave(world.voice, timeout=5)
    message = server.forge_proposal(world.voice)
    assert message[:4] == struct.pack(">HH", mls.MLS10, mls.PUBLIC_MESSAGE)
    for member in (world.alice, bob):
        client = server.voice_member(member)
        await eventually(lambda client=client: bool(client.refused))  # type: ignore[misc]
        assert "InvalidSignature" in client.refused[0]
    assert len(call.commits) == 1 and call.epoch == 1  # nobody committed it
    # The group still works.
    await server.speak(bob, tone(500, 0.2), to_bot=False)
    assert dominant_frequency(server.voice_member(world.alice).heard_audio(bob.id)) == (
        pytest.approx(500, abs=10)
    )


async def test_bad_key_packages_are_refused(server: FakeDiscord, world: World) -> None:
    server.set_voice_state(world.alice, world.voice)
    call = server.dave_call(world.voice)
    assert call is not None
    someone_else = davey.DaveSession(1, world.admin.id, world.voice.id)
    call.on_key_package(world.alice.id, someone_else.get_serialized_key_package())
    call.on_key_package(world.alice.id, b"\x00\x01garbage")
    wrong, garbage = call.key_packages[-2:]
    assert not wrong.accepted and "is not user" in wrong.problems[0]
    assert not garbage.accepted and garbage.problems
    package = bytearray(server.voice_member(world.alice).session.get_serialized_key_package())  # type: ignore[union-attr]
    package[-5] ^= 0xFF  # inside the signature
    call.on_key_package(world.alice.id, bytes(package))
    assert call.key_packages[-1].problems == ["bad key package signature"]


async def test_undecryptable_frames_are_dropped_by_receivers(
    server: FakeDiscord, world: World
) -> None:
    bob = server.create_member(world.guild, "bob")
    server.set_voice_state(world.alice, world.voice)
    server.set_voice_state(bob, world.voice)
    await server.wait_for_dave(world.voice, timeout=5)
    said = await server.send_undecryptable(world.alice, 4, realtime=False)
    assert said.frames == 4
    bobs = server.voice_member(bob)
    assert [sender for sender, _ in bobs.undecryptable] == [world.alice.id] * 4
    assert "DecryptionFailed" in bobs.undecryptable[0][1]
    assert bobs.heard_audio(world.alice.id) == b""


async def test_downgrade_to_passthrough_and_back(server: FakeDiscord, world: World) -> None:
    bob = server.create_member(world.guild, "bob")
    server.set_voice_state(world.alice, world.voice)
    server.set_voice_state(bob, world.voice)
    await server.wait_for_dave(world.voice, timeout=5)
    transition = await server.downgrade_to_passthrough(world.voice, timeout=5)
    assert transition.kind == "downgrade" and transition.protocol_version == 0
    assert transition.ready == {world.alice.id, bob.id} and transition.executed
    alice, bobs = server.voice_member(world.alice), server.voice_member(bob)
    assert alice.downgraded and alice.protocol_version == bobs.protocol_version == 0
    assert alice.encrypt(b"\x78" * 40) == b"\x78" * 40  # transport encryption only
    await server.speak(world.alice, tone(300, 0.2), to_bot=False)
    assert dominant_frequency(bobs.heard_audio(world.alice.id)) == pytest.approx(300, abs=10)
    assert bobs.undecryptable == []

    # A member joining now is told version 0.
    carol = server.create_member(world.guild, "carol")
    server.set_voice_state(carol, world.voice)
    assert server.voice_member(carol).protocol_version == 0

    # Op 24 epoch 1: new key packages, a new group (one batch per epoch: alice
    # commits bob's Add, then carol's, whose package came after that batch).
    call = await server.upgrade_to_dave(world.voice, timeout=5)
    assert call.epoch >= 1 and set(call.group) == {world.alice.id, bob.id, carol.id}
    assert [t.kind for t in call.transitions][:3] == ["commit", "downgrade", "upgrade"]
    assert not alice.downgraded and is_dave_frame(alice.encrypt(b"\x78" * 40))
    await server.speak(carol, tone(700, 0.2), to_bot=False)
    assert dominant_frequency(alice.heard_audio(carol.id)) == pytest.approx(700, abs=10)


async def test_a_client_without_dave_downgrades_the_call_until_it_leaves(
    server: FakeDiscord, world: World
) -> None:
    bob, old = server.create_member(world.guild, "bob"), server.create_member(world.guild, "old")
    server.set_voice_state(world.alice, world.voice)
    server.set_voice_state(bob, world.voice)
    call = await server.wait_for_dave(world.voice, timeout=5)
    server.set_voice_state(old, world.voice, dave=False)
    await server.wait_for_dave(world.voice, protocol_version=0, timeout=5)
    assert server.voice_member(old).session is None
    await server.speak(old, tone(400, 0.2), to_bot=False)
    assert dominant_frequency(server.voice_member(bob).heard_audio(old.id)) == pytest.approx(
        400, abs=10
    )
    server.set_voice_state(old, None)
    await server.wait_for_dave(world.voice, timeout=5)
    assert [t.kind for t in call.transitions] == ["commit", "downgrade", "upgrade", "commit"]


async def test_dave_can_be_off_for_the_server_or_one_channel(world: World) -> None:
    async with FakeDiscord(dave=False) as off:
        guild = off.create_guild("g")
        lounge = off.create_voice_channel(guild, "lounge")
        members = [off.create_member(guild, n) for n in ("a", "b")]
        for member in members:
            off.set_voice_state(member, lounge)
        call = await off.wait_for_dave(lounge, protocol_version=0, timeout=5)
        assert call.transitions == [] and off.voice_member(members[0]).session is None
        off.set_dave(lounge, True)  # this channel only: an upgrade
        await off.wait_for_dave(lounge, timeout=5)
    assert not off.internal_errors


# -- the real discord.py voice client --------------------------------------------------------


@pytest.fixture
async def voice_bot(server: FakeDiscord, start_bot: StartBot, make_bot: MakeBot) -> commands.Bot:
    bot = make_bot(connector=server.bot_connector())
    await start_bot(bot)
    return bot


async def connect(bot: commands.Bot, world: World) -> discord.VoiceClient:
    channel = bot.get_channel(world.voice.id)
    assert isinstance(channel, discord.VoiceChannel)
    return await channel.connect(timeout=10)


async def play(vc: discord.VoiceClient, pcm: bytes) -> None:
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[Exception | None] = loop.create_future()
    vc.play(
        discord.PCMAudio(io.BytesIO(pcm)),
        after=lambda error: loop.call_soon_threadsafe(finished.set_result, error),
    )
    assert await asyncio.wait_for(finished, 10) is None


async def test_discord_py_joins_the_group_and_members_hear_its_encrypted_audio(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    server.set_voice_state(world.alice, world.voice)
    vc = await connect(voice_bot, world)
    record = await server.wait_for_voice_connection(world.guild)
    assert record.dave_protocol_version == vc._connection.dave_protocol_version == 1
    call = await server.wait_for_dave(world.voice, timeout=10)
    bot_id = server.bot_user.id
    # Alice was there first: her commit adds the bot, which is welcomed (op 30).
    assert call.group == {world.alice.id: 0, bot_id: 1}
    assert call.commits[0].user_id == world.alice.id
    session = vc._connection.dave_session
    assert session is not None and session.ready and session.epoch == 1
    assert vc.voice_privacy_code == server.voice_member(world.alice).privacy_code
    assert call.transitions[0].ready == {world.alice.id, bot_id}  # discord.py sent op 23

    await play(vc, tone(440, 0.6))
    audio = await server.wait_for_bot_audio(world.guild, seconds=0.6, timeout=5)
    assert dominant_frequency(audio) == pytest.approx(440, abs=5)
    packets = server.bot_audio_packets(world.guild)
    assert all(p.dave for p in packets if not p.silence) and not server.voice_server.rejected
    heard = server.voice_member(world.alice).heard_audio(bot_id)
    assert dominant_frequency(heard) == pytest.approx(440, abs=5)
    await vc.disconnect()
    # The bot's leaf is gone: alice is alone, so she gets the sole-member reset.
    await eventually(lambda: call.transitions[-1].kind == "reset")
    assert not server.internal_errors


async def test_discord_py_alone_creates_the_group_when_a_member_joins(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    vc = await connect(voice_bot, world)
    await server.wait_for_voice_connection(world.guild)
    # Alone, discord.py has no group and sends plain Opus: the server decodes it.
    await play(vc, tone(330, 0.2))
    audio = await server.wait_for_bot_audio(world.guild, seconds=0.2, timeout=5)
    assert dominant_frequency(audio) == pytest.approx(330, abs=10)
    assert not any(p.dave for p in server.bot_audio_packets(world.guild))

    server.set_voice_state(world.alice, world.voice)
    call = await server.wait_for_dave(world.voice, timeout=10)
    assert call.commits[0].user_id == server.bot_user.id and call.commits[0].accepted
    assert call.group == {server.bot_user.id: 0, world.alice.id: 1}
    server.clear_bot_audio(world.guild)
    await play(vc, tone(550, 0.3))
    audio = await server.wait_for_bot_audio(world.guild, seconds=0.3, timeout=5)
    assert dominant_frequency(audio) == pytest.approx(550, abs=10)
    assert all(p.dave for p in server.bot_audio_packets(world.guild) if not p.silence)
    await vc.disconnect()


async def test_commit_race_with_discord_py_both_ways(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    bob, carol = server.create_member(world.guild, "bob"), server.create_member(world.guild, "c")
    server.set_voice_state(world.alice, world.voice)
    vc = await connect(voice_bot, world)
    call = await server.wait_for_dave(world.voice, timeout=10)
    bot_id = server.bot_user.id

    # The bot's commit wins: alice's (which would come first) is held until then.
    call.let_commit_win(bot_id)
    server.set_voice_state(bob, world.voice)
    await server.wait_for_dave(world.voice, epoch=2, timeout=10)
    epoch1 = [(c.user_id, c.accepted) for c in call.commits if c.epoch == 1]
    assert epoch1 == [(bot_id, True), (world.alice.id, False)]

    # A member's commit wins: the bot's is held until alice's was accepted.
    call.let_commit_win(world.alice.id)
    server.set_voice_state(carol, world.voice)
    await server.wait_for_dave(world.voice, epoch=3, timeout=10)
    epoch2 = [(c.user_id, c.accepted) for c in call.commits if c.epoch == 2]
    assert epoch2[0] == (world.alice.id, True) and (bot_id, False) in epoch2
    assert vc._connection.dave_session.epoch == 3  # type: ignore[union-attr]
    await play(vc, tone(480, 0.3))
    await server.wait_for_bot_audio(world.guild, seconds=0.3, timeout=5)
    assert dominant_frequency(server.voice_member(carol).heard_audio(bot_id)) == (
        pytest.approx(480, abs=10)
    )
    await vc.disconnect()


async def test_discord_py_downgrades_to_passthrough_and_upgrades_again(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    server.set_voice_state(world.alice, world.voice)
    vc = await connect(voice_bot, world)
    await server.wait_for_dave(world.voice, timeout=10)
    transition = await server.downgrade_to_passthrough(world.voice, timeout=10)
    assert server.bot_user.id in transition.ready  # discord.py answered op 21 with op 23
    await eventually(lambda: vc._connection.dave_protocol_version == 0)
    assert vc._connection.dave_downgraded
    await play(vc, tone(250, 0.3))
    audio = await server.wait_for_bot_audio(world.guild, seconds=0.3, timeout=5)
    assert dominant_frequency(audio) == pytest.approx(250, abs=10)
    assert not any(p.dave for p in server.bot_audio_packets(world.guild))

    await server.upgrade_to_dave(world.voice, timeout=10)
    await eventually(lambda: not vc._connection.dave_downgraded)
    server.clear_bot_audio(world.guild)
    await play(vc, tone(750, 0.3))
    audio = await server.wait_for_bot_audio(world.guild, seconds=0.3, timeout=5)
    assert dominant_frequency(audio) == pytest.approx(750, abs=10)
    assert all(p.dave for p in server.bot_audio_packets(world.guild) if not p.silence)
    await vc.disconnect()


async def test_discord_py_rejoins_the_group_after_a_voice_server_failover(
    server: FakeDiscord, world: World, voice_bot: commands.Bot
) -> None:
    bob = server.create_member(world.guild, "bob")
    server.set_voice_state(world.alice, world.voice)
    server.set_voice_state(bob, world.voice)
    vc = await connect(voice_bot, world)
    call = await server.wait_for_dave(world.voice, timeout=10)
    leaf = call.group[server.bot_user.id]
    await server.drop_voice(world.guild)  # a new voice session: a new MLS member
    await server.wait_for_dave(world.voice, epoch=call.epoch + 1, timeout=15)
    assert set(call.group) == {world.alice.id, bob.id, server.bot_user.id}
    assert any(leaf in c.removed for c in call.commits if c.accepted)
    await eventually(lambda: vc.is_connected(), timeout=10)
    await play(vc, tone(620, 0.3))
    audio = await server.wait_for_bot_audio(world.guild, seconds=0.3, timeout=5)
    assert dominant_frequency(audio) == pytest.approx(620, abs=10)
    await vc.disconnect()


# -- the protocol, raw -------------------------------------------------------------------------


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


async def test_raw_dave_handshake_binary_frames_and_late_speaking(
    server: FakeDiscord, world: World, raw_voice: SimpleNamespace
) -> None:
    record, http, udp = raw_voice.record, raw_voice.http, raw_voice.udp
    loop = asyncio.get_running_loop()
    ws = await http.ws_connect(f"wss://{record.endpoint}/?v=8")
    await ws.receive_json()  # HELLO
    identify = {
        "server_id": str(record.guild_id),
        "user_id": str(record.user_id),
        "session_id": record.session_id,
        "token": record.token,
        "max_dave_protocol_version": 1,
    }
    await ws.send_json({"op": 0, "d": identify})
    ready = (await ws.receive_json())["d"]
    address, port = udp.getsockname()
    data = {"address": address, "port": port, "mode": ready["modes"][0]}
    await ws.send_json({"op": 1, "d": {"protocol": "udp", "data": data}})
    description = await ws.receive_json()
    assert description["seq"] == 2 and description["d"]["dave_protocol_version"] == 1
    key = bytes(description["d"]["secret_key"])

    # Op 25 is binary: [seq u16 BE][25][ExternalSender].
    frame = await ws.receive_bytes()
    assert struct.unpack_from(">H", frame)[0] == 3 and frame[2] == 25
    signature_key = mls.Reader(frame, 3).vec()
    assert len(signature_key) == 65 and signature_key[0] == 4  # uncompressed P-256 point
    session = davey.DaveSession(1, record.user_id, record.channel_id)
    session.set_external_sender(frame[3:])
    await ws.send_bytes(bytes([26]) + session.get_serialized_key_package())
    call = server.dave_call(world.voice)
    assert call is not None
    await eventually(lambda: [k.accepted for k in call.key_packages] == [True])

    # Alice joins: op 11, then her Add (op 27, binary) for us to commit.
    server.set_voice_state(world.alice, world.voice)
    assert (await ws.receive_json())["op"] == 11
    frame = await ws.receive_bytes()
    assert frame[2] == 27 and frame[3] == 0  # append
    result = session.process_proposals(davey.ProposalsOperationType.append, frame[4:])
    assert result is not None and result.welcome is not None
    await ws.send_bytes(bytes([28]) + result.commit + result.welcome)
    frame = await ws.receive_bytes()
    assert frame[2] == 29
    transition_id = struct.unpack_from(">H", frame, 3)[0]
    assert transition_id > 0 and frame[5:] == result.commit
    session.process_commit(frame[5:])
    await ws.send_json({"op": 23, "d": {"transition_id": transition_id}})
    execute = await ws.receive_json()
    assert execute["op"] == 22 and execute["d"] == {"transition_id": transition_id}
    assert call.settled() and session.ready
    assert server.voice_member(world.alice).dave_ready

    # SPEAKING only after three packets: the first ones come from an unknown SSRC.
    arrivals: list[tuple[str, float]] = []

    async def read_udp() -> None:
        while len([k for k, _ in arrivals if k == "rtp"]) < 8:
            data, _ = await loop.sock_recvfrom(udp, 2048)
            arrivals.append(("rtp", loop.time()))
            packet = fake_rtp.decrypt_rtpsize(key, data)
            if packet.payload != fake_rtp.OPUS_SILENCE:
                opus = session.decrypt(world.alice.id, davey.MediaType.audio, packet.payload)
                assert discord.opus.Decoder().decode(opus, fec=False)

    async def read_ws() -> None:
        message = await ws.receive_json()
        assert message["op"] == 5 and message["d"]["user_id"] == str(world.alice.id)
        arrivals.append(("speaking", loop.time()))

    reader = asyncio.gather(read_udp(), read_ws())
    await server.speak(world.alice, tone(440, 0.1), speaking_after=3, trailing_silence=3)
    await asyncio.wait_for(reader, 5)
    kinds = [k for k, _ in sorted(arrivals, key=lambda a: a[1])]
    assert kinds[:3] == ["rtp"] * 3 and "speaking" in kinds
    await ws.close()
