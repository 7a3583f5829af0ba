"""Hark's voice path on a DAVE call (end-to-end encrypted, as Discord requires).

The loopback voice server runs DAVE as Discord's voice gateway does (it is the MLS
external sender); every fake member is a real davey client that encrypts what it
says and decrypts what the bot plays. The providers are scriptable fakes; each
transcript names its speaker, so a test sees whom the bot heard.
"""

from __future__ import annotations

import asyncio
import logging

from voice_support import CONFIG, in_voice, plugin, session, wait_for_post

from hark.testing.fakes import FakeSynthesizer, FakeTranscriber
from hark.testing.harness import BotHarness


async def hears(h: BotHarness, member, speech, text: str, **speak) -> None:
    """``member`` speaks; the bot posts the scripted transcript under their name."""
    heard = asyncio.create_task(
        wait_for_post(h, f"🎙️ **{member.user.username}**: {text}", timeout=30)
    )
    await h.server.speak(member, speech, **speak)
    assert await heard


def harness(tmp_path, transcriber, **config) -> BotHarness:
    return BotHarness(
        tmp_path,
        plugins={"v": plugin(transcriber, FakeSynthesizer(seconds_per_char=0.01))},
        config={**CONFIG, **config},
    )


async def test_hears_speaks_encrypted_and_shows_the_privacy_code(tmp_path, speech):
    transcriber = FakeTranscriber("hello there")
    async with harness(tmp_path, transcriber) as h:
        await in_voice(h, h.member)
        call = await h.server.wait_for_dave(h.voice_channel, timeout=15)
        assert h.server.bot_user.id in call.group
        await hears(h, h.member, speech, "hello there")
        await wait_for_post(h, "🔊 hello there")
        # The reply went out DAVE-encrypted, and the member's client decrypts it.
        await h.server.wait_for_bot_audio(h.guild, seconds=0.1, timeout=10)
        packets = h.server.bot_audio_packets(h.guild)
        assert packets and all(p.dave for p in packets if not p.silence)
        heard = h.server.voice_member(h.member).heard_audio(h.server.bot_user.id)
        assert len(heard) >= int(0.05 * 48_000 * 4)
        status = (await h.ask("!voice")).content
        member = h.server.voice_member(h.member)
        assert f"epoch {member.epoch}" in status
        assert f"voice privacy code {member.privacy_code}" in status


async def test_commit_race_both_ways_and_members_joining_midway(tmp_path, speech):
    transcriber = FakeTranscriber(["from bob", "from carol"])
    async with harness(tmp_path, transcriber) as h:
        bob = h.server.create_member(h.guild, "bob")
        carol = h.server.create_member(h.guild, "carol")
        await in_voice(h, h.member)
        call = await h.server.wait_for_dave(h.voice_channel, timeout=15)
        bot_id = h.server.bot_user.id
        # The bot wins the commit race for bob's Add...
        call.let_commit_win(bot_id)
        h.server.set_voice_state(bob, h.voice_channel)
        await h.server.wait_for_dave(h.voice_channel, epoch=call.epoch + 1, timeout=15)
        assert any(c.user_id == bot_id and c.accepted for c in call.commits)
        await hears(h, bob, speech, "from bob")
        # ...and loses it for carol's.
        call.let_commit_win(h.member.id)
        epoch = call.epoch
        h.server.set_voice_state(carol, h.voice_channel)
        await h.server.wait_for_dave(h.voice_channel, epoch=epoch + 1, timeout=15)
        won = [c for c in call.commits if c.epoch == epoch and c.accepted]
        assert won and won[0].user_id == h.member.id
        await hears(h, carol, speech, "from carol")


async def test_a_member_leaving_and_the_bot_left_alone_then_rejoined(tmp_path, speech):
    transcriber = FakeTranscriber(["still alice", "alice is back"])
    async with harness(tmp_path, transcriber) as h:
        bob = h.server.create_member(h.guild, "bob")
        await h.ask("!voice set alone_timeout_s 60", author=h.admin)
        await in_voice(h, h.member, bob)
        call = await h.server.wait_for_dave(h.voice_channel, timeout=15)
        # bob leaves: a Remove proposal, a new epoch; the bot still hears alice.
        epoch = call.epoch
        h.server.set_voice_state(bob, None)
        await h.server.wait_for_dave(h.voice_channel, epoch=epoch + 1, timeout=15)
        await hears(h, h.member, speech, "still alice")
        # alice leaves too: the bot is alone (the group resets); she comes back.
        h.server.set_voice_state(h.member, None)
        await asyncio.sleep(1.0)
        h.server.set_voice_state(h.member, h.voice_channel)
        await h.server.wait_for_dave(h.voice_channel, timeout=15)
        assert set(call.group) == {h.member.id, h.server.bot_user.id}
        await hears(h, h.member, speech, "alice is back")


async def test_downgrade_to_passthrough_and_back(tmp_path, speech):
    transcriber = FakeTranscriber(["in the clear", "encrypted again"])
    async with harness(tmp_path, transcriber) as h:
        await in_voice(h, h.member)
        await h.server.wait_for_dave(h.voice_channel, timeout=15)
        await h.server.downgrade_to_passthrough(h.voice_channel, timeout=15)
        await hears(h, h.member, speech, "in the clear")
        assert "off" in (await h.ask("!voice")).content.split("encryption:")[1]
        await h.server.upgrade_to_dave(h.voice_channel, timeout=15)
        await hears(h, h.member, speech, "encrypted again")


async def test_a_forged_proposal_does_not_deafen_the_bot(tmp_path, speech, caplog):
    caplog.set_level(logging.INFO)
    transcriber = FakeTranscriber(["after the forgery", "bob too"])
    async with harness(tmp_path, transcriber) as h:
        bob = h.server.create_member(h.guild, "bob")
        await in_voice(h, h.member)
        call = await h.server.wait_for_dave(h.voice_channel, timeout=15)
        h.server.forge_proposal(h.voice_channel, to=[h.server.bot_user.id])
        await asyncio.sleep(0.5)
        await hears(h, h.member, speech, "after the forgery")
        # The bot still reads its voice socket: it follows the next epoch.
        h.server.set_voice_state(bob, h.voice_channel)
        await h.server.wait_for_dave(h.voice_channel, epoch=call.epoch + 1, timeout=15)
        await hears(h, bob, speech, "bob too")
    ignored = [r for r in caplog.records if "ignored an MLS message" in r.getMessage()]
    assert len(ignored) == 1 and ignored[0].levelno == logging.WARNING


async def test_undecryptable_frames_are_dropped_and_counted(tmp_path, speech, caplog):
    caplog.set_level(logging.INFO)
    transcriber = FakeTranscriber("clear speech")
    async with harness(tmp_path, transcriber) as h:
        await in_voice(h, h.member)
        await h.server.wait_for_dave(h.voice_channel, timeout=15)
        await h.server.send_undecryptable(h.member, 40)
        await hears(h, h.member, speech, "clear speech")
        reader = session(h).vc.reader
        assert reader.drops.total["undecryptable"] == 40
        assert reader.packet_router.is_alive()
    dropped = [r for r in caplog.records if "dropped frames" in r.getMessage()]
    assert len(dropped) == 1
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]


async def test_speaking_after_the_first_packets_still_hears_the_speaker(tmp_path, speech):
    transcriber = FakeTranscriber("late speaking")
    async with harness(tmp_path, transcriber) as h:
        await in_voice(h, h.member)
        await h.server.wait_for_dave(h.voice_channel, timeout=15)
        await hears(h, h.member, speech, "late speaking", speaking_after=15)
        clip = transcriber.clips[0]
        # The held frames were replayed: the utterance is (nearly) whole.
        assert clip.duration > speech.duration - 0.5
        assert session(h).vc.reader.drops.total.get("undecryptable", 0) == 0


async def test_a_speaker_whose_speaking_never_arrives_is_found_by_their_key(
    tmp_path, speech, caplog
):
    caplog.set_level(logging.INFO)
    transcriber = FakeTranscriber("no speaking at all")
    async with harness(tmp_path, transcriber) as h:
        await in_voice(h, h.member)
        await h.server.wait_for_dave(h.voice_channel, timeout=15)
        await hears(h, h.member, speech, "no speaking at all", speaking_after=100_000)
        assert any("identified as user" in r.getMessage() for r in caplog.records)
        assert transcriber.clips[0].duration > speech.duration - 0.5


async def test_an_epoch_change_during_playback_keeps_the_reply_audible(tmp_path, speech):
    transcriber = FakeTranscriber(
        " ".join(f"This is sentence {i} of a long answer." for i in range(8))
    )
    async with harness(tmp_path, transcriber) as h:
        bob = h.server.create_member(h.guild, "bob")
        await in_voice(h, h.member)
        call = await h.server.wait_for_dave(h.voice_channel, timeout=15)
        await h.server.speak(h.member, speech)
        await h.server.wait_for_bot_audio(h.guild, seconds=0.3, timeout=20)
        epoch = call.epoch
        h.server.set_voice_state(bob, h.voice_channel)  # a new epoch mid-reply
        await h.server.wait_for_dave(h.voice_channel, epoch=epoch + 1, timeout=15)
        alice = h.server.voice_member(h.member)
        before = len(alice.heard_audio(h.server.bot_user.id))
        await asyncio.sleep(1.0)
        assert session(h).speaking  # still talking, under the new epoch's keys
        assert len(alice.heard_audio(h.server.bot_user.id)) > before + 0.5 * 48_000 * 4
        assert not alice.undecryptable
        assert len(h.server.voice_member(bob).heard_audio(h.server.bot_user.id)) > 0
