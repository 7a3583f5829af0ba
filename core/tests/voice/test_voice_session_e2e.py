"""Voice sessions end to end: real discord.py voice client, loopback voice server
(TLS WebSocket, UDP, encrypted RTP, Opus), real speech from espeak-ng.

The providers are scriptable fakes, so these tests pin the session's behaviour;
tests/e2e/test_voice_e2e.py runs the same path with real Whisper and Piper.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from discord.opus import OpusError
from voice_support import CONFIG, in_voice, plugin, session, wait_for_post

from hark.providers.errors import BadOutputError
from hark.testing.fakes import FakeGenerator, FakeSynthesizer, FakeTranscriber
from hark.testing.harness import BotHarness
from hark.voice import receive

LONG = " ".join(f"This is sentence number {i} of a long answer." for i in range(12))


async def test_join_needs_the_caller_in_voice(tmp_path):
    async with BotHarness(
        tmp_path, plugins={"v": plugin(FakeTranscriber(), FakeSynthesizer())}
    ) as h:
        assert "Join a voice channel first" in (await h.ask("!join")).content
        assert "not in a voice channel" in (await h.ask("!listen")).content


async def test_speech_is_heard_answered_and_spoken(tmp_path, speech):
    transcriber = FakeTranscriber("what time is it")
    synthesizer = FakeSynthesizer(seconds_per_char=0.02)
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, synthesizer)}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        heard = asyncio.create_task(wait_for_post(h, "🎙️"))
        said = asyncio.create_task(wait_for_post(h, "🔊"))
        await h.server.speak(h.member, speech)
        assert await heard == "🎙️ **alice**: what time is it"
        assert await said == "🔊 what time is it"
        # The utterance reached the transcriber whole: ~the spoken length, with pre-roll.
        clip = transcriber.clips[0]
        assert speech.duration - 0.3 < clip.duration < speech.duration + 1.5
        assert "alice" in transcriber.options[0]["prompt"]  # member names prime the STT
        # What the synthesizer made came back over RTP: "what time is it" = 15 chars * 20 ms.
        audio = await h.server.wait_for_bot_audio(h.guild, seconds=0.25)
        assert len(audio) >= int(0.25 * 48_000 * 4)
        # The voice turn is in the linked text channel's history, with the speaker's name.
        async with asyncio.timeout(5):
            while await h.bot.runtime.history.count(h.channel.id) < 2:
                await asyncio.sleep(0.05)
        entries = await h.bot.runtime.history.recent(h.channel.id, 2)
        first = entries[0]
        assert (first.role, first.author_name, first.content) == (
            "user",
            "alice",
            "what time is it",
        )


async def test_two_speakers_get_separate_transcripts(tmp_path, speech, two_sentences):
    transcriber = FakeTranscriber(lambda clip: "long one" if clip.duration > 3.0 else "short one")
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member, h.admin)
        posts = asyncio.create_task(_collect(h, "🎙️", 2))
        await asyncio.gather(
            h.server.speak(h.member, speech), h.server.speak(h.admin, two_sentences)
        )
        assert sorted(await posts) == ["🎙️ **alice**: short one", "🎙️ **boss**: long one"]


async def _collect(h: BotHarness, prefix: str, count: int) -> list[str]:
    seen: list[str] = []
    after = None
    while len(seen) < count:
        message = await h.server.wait_for_message(
            h.channel,
            author=h.server.bot_user,
            timeout=30,
            after=after,
            check=lambda m: m.content.startswith(prefix),
        )
        seen.append(message.content)
        after = message
    return seen


async def test_barge_in_stops_playback_and_history_keeps_what_was_said(tmp_path, speech):
    transcriber = FakeTranscriber([LONG, "stop please", "still listening?"])
    synthesizer = FakeSynthesizer(seconds_per_char=0.01)  # ~45 chars a sentence: ~0.45 s each
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, synthesizer)}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        await h.server.speak(h.member, speech)
        await h.server.wait_for_bot_audio(h.guild, seconds=0.6, timeout=20)
        await h.server.speak(h.member, speech)  # talk over the bot
        async with asyncio.timeout(10):
            while session(h).interruptions < 1:
                await asyncio.sleep(0.05)
        # The first reply was cut: far less audio than the whole answer (~5.5 s).
        first_reply = await wait_for_post(h, "🔊 This is sentence")
        assert first_reply.startswith("🔊 This is sentence number 0")
        assert "number 11" not in first_reply
        entries = await h.bot.runtime.history.recent(h.channel.id, 4)
        spoken = next(e.content for e in entries if e.role == "assistant")
        assert spoken.startswith("This is sentence number 0") and "number 11" not in spoken
        # ...and the interruption itself is heard and answered.
        assert await wait_for_post(h, "🎙️ **alice**: stop please")
        await wait_for_post(h, "🔊 stop please")
        # Stopping the player must not stop the listening (VoiceRecvClient.stop() does both).
        await asyncio.sleep(0.5)
        await h.server.speak(h.member, speech)
        assert await wait_for_post(h, "🎙️ **alice**: still listening?")


async def test_transcriber_failure_is_a_notice_and_the_session_goes_on(tmp_path, speech):
    transcriber = FakeTranscriber("second time lucky", fail_with=[BadOutputError("garbled")])
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        notice = asyncio.create_task(wait_for_post(h, "Sorry"))
        await h.server.speak(h.member, speech)
        assert "couldn't use" in await notice
        heard = asyncio.create_task(wait_for_post(h, "🎙️"))
        await h.server.speak(h.member, speech)
        assert await heard == "🎙️ **alice**: second time lucky"


async def test_callsign_mode_ignores_unaddressed_speech(tmp_path, speech):
    transcriber = FakeTranscriber(["just talking to friends", "robot what is up"])
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await h.ask("!voice set answer callsign", author=h.admin)
        await in_voice(h, h.member)
        heard = asyncio.create_task(wait_for_post(h, "🎙️"))
        await h.server.speak(h.member, speech)
        await asyncio.sleep(1.0)  # a pause longer than silence_ms: two utterances
        await h.server.speak(h.member, speech)
        assert await heard == "🎙️ **alice**: robot what is up"
        assert len(transcriber.clips) == 2


async def test_leaves_when_alone(tmp_path):
    async with BotHarness(
        tmp_path, plugins={"v": plugin(FakeTranscriber(), FakeSynthesizer())}, config=CONFIG
    ) as h:
        await h.ask("!voice set alone_timeout_s 0.3", author=h.admin)
        await in_voice(h, h.member)
        notice = asyncio.create_task(wait_for_post(h, "Everyone left"))
        h.server.set_voice_state(h.member, None)
        await notice
        async with asyncio.timeout(5):
            while h.bot.voice_clients or h.guild.id in h.bot.get_cog("Voice").sessions:
                await asyncio.sleep(0.05)
        # ...and it told Discord it left the channel.
        assert h.server.voice_state(h.guild, h.server.bot_user) is None or (
            h.server.voice_state(h.guild, h.server.bot_user).channel_id is None
        )


@pytest.mark.parametrize("command", ["!stop", "!leave"])
async def test_stop_and_leave(tmp_path, command):
    async with BotHarness(
        tmp_path, plugins={"v": plugin(FakeTranscriber(), FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        reply = await h.ask(command)
        assert ("Stopped" if command == "!stop" else "Left") in reply.content


async def test_session_survives_a_voice_server_failover(tmp_path, speech):
    transcriber = FakeTranscriber(["before", "after"])
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        await h.server.speak(h.member, speech)
        await wait_for_post(h, "🔊 before")
        # Discord moves the voice connection to another server; discord.py reconnects.
        await h.server.drop_voice(h.guild)
        await h.server.wait_for_voice_connection(h.guild, timeout=20)
        await asyncio.sleep(0.5)
        await h.server.speak(h.member, speech)
        assert await wait_for_post(h, "🎙️ **alice**: after", timeout=30)


async def test_disabling_voice_ends_the_session(tmp_path, speech):
    transcriber = FakeTranscriber("what time is it")
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        left = asyncio.create_task(wait_for_post(h, "The voice plugin was disabled"))
        assert "disabled" in (await h.ask("!plugins disable voice", author=h.admin)).content
        await left
        assert h.guild.id not in h.bot.get_cog("Voice").sessions
        await h.server.speak(h.member, speech)
        await asyncio.sleep(1.0)
        assert transcriber.clips == []


async def test_stop_drops_what_was_being_said(tmp_path, speech):
    transcriber = FakeTranscriber("what time is it")
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        talking = asyncio.create_task(h.server.speak(h.member, speech))
        await asyncio.sleep(1.0)
        assert "Stopped" in (await h.ask("!stop")).content
        await talking
        await asyncio.sleep(1.5)  # past silence_ms: an utterance would have ended by now
        posts = [
            m.content for m in h.server.messages(h.channel) if m.author.id == h.server.bot_user.id
        ]
        assert not any(p.startswith(("🎙️", "🔊")) for p in posts), posts


@pytest.mark.parametrize(
    ("key", "value"), [("aggressiveness", "5"), ("max_utterance_ms", "200"), ("silence_ms", "0")]
)
async def test_voice_set_refuses_values_the_detector_cannot_use(tmp_path, key, value):
    async with BotHarness(
        tmp_path, plugins={"v": plugin(FakeTranscriber(), FakeSynthesizer())}, config=CONFIG
    ) as h:
        reply = await h.ask(f"!voice set {key} {value}", author=h.admin)
        assert "out of range" in reply.content
        assert h.bot.get_cog("Voice").settings.guild(h.guild.id).get(key) != int(value)


# -- a session cannot go deaf --------------------------------------------------


async def test_a_killed_router_thread_is_restarted_and_the_bot_hears_again(
    tmp_path, speech, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    transcriber = FakeTranscriber(["after the restart"])
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        vc = session(h).vc
        first_reader = vc.reader
        original = receive._SafeDecoder._decode_packet
        calls = {"n": 0}

        def explode_once(self, packet):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("the router thread dies here")
            return original(self, packet)

        monkeypatch.setattr(receive._SafeDecoder, "_decode_packet", explode_once)
        await h.server.speak(h.member, speech)  # kills voice-recv's packet router
        async with asyncio.timeout(10):
            while vc.reader is None or vc.reader is first_reader or not vc.is_listening():
                await asyncio.sleep(0.05)
        assert not first_reader.packet_router.is_alive()
        await asyncio.sleep(0.3)
        await h.server.speak(h.member, speech)
        assert await wait_for_post(h, "🎙️ **alice**: after the restart", timeout=20)
        assert session(h).listening
    revived = [r for r in caplog.records if "listening again" in r.getMessage()]
    # The after= callback and the watchdog may both see it: one or two lines, no more.
    assert 1 <= len(revived) <= 2 and all(r.levelno == logging.WARNING for r in revived)
    assert not [r for r in caplog.records if r.name.startswith("hark") and r.exc_info]


async def test_frames_that_do_not_decode_become_silence_not_deafness(
    tmp_path, speech, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    transcriber = FakeTranscriber(["still hearing"])
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        vc = session(h).vc
        reader = vc.reader
        original = receive.PacketDecoder._decode_packet
        bad = {"left": 30}

        def corrupt(self, packet):
            if bad["left"] > 0:
                bad["left"] -= 1
                raise OpusError(-4)  # OPUS_INVALID_PACKET: "corrupted stream"
            return original(self, packet)

        monkeypatch.setattr(receive.PacketDecoder, "_decode_packet", corrupt)
        await h.server.speak(h.member, speech)
        assert await wait_for_post(h, "🎙️ **alice**: still hearing", timeout=20)
        assert vc.reader is reader and reader.packet_router.is_alive()  # never restarted
        assert reader.drops.total["undecodable"] == 30
    dropped = [r for r in caplog.records if "dropped frames" in r.getMessage()]
    assert len(dropped) == 1  # one line per speaker per minute, not one per frame
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]


LOOPING = "Dragons are old. " + "They are said to be made by an ancient being. " * 40


async def test_a_looping_reply_ends_at_its_first_repeated_sentence(tmp_path, speech):
    generator = FakeGenerator(LOOPING, delay=0.01)
    synthesizer = FakeSynthesizer(seconds_per_char=0.001)
    async with BotHarness(
        tmp_path,
        plugins={"v": plugin(FakeTranscriber("tell me about dragons"), synthesizer, generator)},
        config=CONFIG,
    ) as h:
        await in_voice(h, h.member)
        await h.server.speak(h.member, speech)
        said = await wait_for_post(h, "🔊")
        assert said == "🔊 Dragons are old. They are said to be made by an ancient being."
        # The rest was never generated: the stream was closed at the repeat.
        assert generator.open_streams == 0
        assert synthesizer.texts == [
            "Dragons are old.",
            "They are said to be made by an ancient being.",
        ]
        entries = await h.bot.runtime.history.recent(h.channel.id, 2)
        assert entries[-1].content == said.removeprefix("🔊 ")


async def test_max_reply_chars_caps_a_spoken_reply_at_a_sentence(tmp_path, speech):
    synthesizer = FakeSynthesizer(seconds_per_char=0.001)
    async with BotHarness(
        tmp_path,
        plugins={"v": plugin(FakeTranscriber(LONG), synthesizer)},
        config=CONFIG,
    ) as h:
        admin = h.server.owner
        assert (
            "`max_reply_chars`"
            in (await h.ask("!voice set max_reply_chars 100", author=admin)).content
        )
        refused = await h.ask("!voice set max_reply_chars -1", author=admin)
        assert "must be 0 or more" in refused.content
        await in_voice(h, h.member)
        await h.server.speak(h.member, speech)
        said = await wait_for_post(h, "🔊")
        # Sentences are ~45 characters: two fit in 100, the third would not.
        two = " ".join(f"This is sentence number {i} of a long answer." for i in range(2))
        assert said == f"🔊 {two}"
