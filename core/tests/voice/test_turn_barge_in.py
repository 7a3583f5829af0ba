"""Barge-in in two steps, end to end (real discord.py voice client, loopback voice
server, real speech): a member speaking over the bot pauses it at once; a false
interruption (too short, no words, "mm-hm") resumes where it paused and is no turn;
a confirmed one (words, ``barge_in_ms`` of speech) cancels the rest of the reply.
Also the word checks it judges with."""

from __future__ import annotations

import asyncio

import pytest
from voice_support import (
    CONFIG,
    bot_posts,
    in_voice,
    loud_runs,
    plugin,
    session,
    wait_for_post,
    wait_until,
)

from hark import TurnDetector
from hark.testing.fakes import FakeSynthesizer, FakeTranscriber, split_sentences, tone
from hark.testing.harness import BotHarness
from hark.voice.barge_in import has_words, is_filler

LONG = " ".join(f"This is sentence number {i} of a long answer." for i in range(8))


async def long_reply_playing(h: BotHarness, speech) -> None:
    """Ask (LONG is the transcript, echoed back) and wait until the bot is talking."""
    await h.server.speak(h.member, speech)
    await h.server.wait_for_bot_audio(h.guild, seconds=0.6, timeout=20)


def expected_seconds(synthesizer: FakeSynthesizer, text: str) -> float:
    return sum(synthesizer.clip_for(s).duration for s in split_sentences(text))


async def test_a_noise_burst_pauses_the_bot_which_resumes_and_it_is_no_turn(tmp_path, speech):
    transcriber = FakeTranscriber([LONG, "a noise became a turn"])
    synthesizer = FakeSynthesizer(seconds_per_char=0.01)
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, synthesizer)}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        await long_reply_playing(h, speech)
        s = session(h)
        trace = s.trace  # the reply's stage trace (a new turn would get a new one)
        # 300 ms of a 300 Hz tone: voiced for webrtcvad, too short to interrupt.
        burst = await h.server.speak(h.member, tone(0.3, 48_000, 2, frequency=300.0))
        said = await wait_for_post(h, "🔊", timeout=30)
        # Step 1: playback paused while the burst went on; step 2: it resumed.
        assert burst.started_at < trace["paused_at"] < burst.finished_at
        assert trace["paused_at"] < trace["resumed_at"]
        assert s.interruptions == 0 and s.counts["false_interruptions"] == 1
        # What the bot sent: the tone, a silent stretch while paused, the tone again.
        runs = loud_runs(h.server.bot_audio_packets(h.guild))
        gaps = [r for r in runs if not r[0] and burst.started_at <= r[1] <= burst.finished_at]
        assert gaps, runs
        # It resumed where it paused: the whole answer was played, nothing skipped.
        assert said == f"🔊 {LONG}"
        played = sum(seconds for loud, _, seconds in runs if loud)
        assert played == pytest.approx(expected_seconds(synthesizer, LONG), abs=0.15)
        # The burst never became a turn: not transcribed, not answered.
        await asyncio.sleep(1.0)
        assert transcriber.calls == 1
        assert bot_posts(h, "🎙️") == [f"🎙️ **alice**: {LONG}"]


@pytest.mark.parametrize("heard", ["", "Mm-hmm."])
async def test_speech_with_no_words_over_the_bot_resumes_it(tmp_path, speech, heard):
    # Long enough to interrupt (~2 s of speech), but it transcribes to nothing (a
    # cough, laughter) or to a backchannel: the bot plays on.
    transcriber = FakeTranscriber([LONG, heard, "later question"])
    synthesizer = FakeSynthesizer(seconds_per_char=0.02)
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, synthesizer)}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        await long_reply_playing(h, speech)
        s = session(h)
        trace = s.trace
        await h.server.speak(h.member, speech)
        said = await wait_for_post(h, "🔊", timeout=40)
        assert said == f"🔊 {LONG}"  # all of it
        assert trace["paused_at"] < trace["resumed_at"]
        assert s.interruptions == 0 and s.counts["false_interruptions"] == 1
        await asyncio.sleep(1.0)
        assert bot_posts(h, "🎙️") == [f"🎙️ **alice**: {LONG}"]


async def test_a_confirmed_barge_in_pauses_first_then_cancels_the_reply(tmp_path, speech):
    transcriber = FakeTranscriber([LONG, "stop please"])
    synthesizer = FakeSynthesizer(seconds_per_char=0.01)
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, synthesizer)}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        await long_reply_playing(h, speech)
        s = session(h)
        trace = s.trace
        talk = await h.server.speak(h.member, speech)
        await wait_until(lambda: s.interruptions == 1, 10)
        first = await wait_for_post(h, "🔊 This is sentence")
        # The interruption is heard and answered as a turn of its own.
        assert await wait_for_post(h, "🎙️ **alice**: stop please")
        await wait_for_post(h, "🔊 stop please")
        # The reply was cut: only the sentences that had started are said and kept.
        assert first.startswith("🔊 This is sentence number 0") and "number 7" not in first
        entries = await h.bot.runtime.history.recent(h.channel.id, 4)
        kept = next(e.content for e in entries if e.role == "assistant")
        assert f"🔊 {kept}" == first
        # Paused at once (while the member talked), cancelled later (at their pause,
        # once words confirmed it), and never resumed in between.
        assert talk.started_at < trace["paused_at"] < trace["interrupted"]
        assert "resumed_at" not in trace
        runs = loud_runs(h.server.bot_audio_packets(h.guild), since=talk.started_at + 0.2)
        assert not any(loud and at < talk.finished_at for loud, at, _ in runs), runs


class DeafTurns:
    """A detector that hears sound but never speech, as Silero does a pure tone."""

    speaking = False
    speech_ms = 0

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id

    def feed(self, pcm, *, now=None):
        return None

    def poll(self, now=None):
        return None

    def reset(self) -> None:
        pass


class DeafDetector(TurnDetector):
    id = "deaf"

    def _open(self, user_id, *, guild_id, **settings):
        return DeafTurns(user_id)


async def test_a_loud_onset_pauses_before_the_detector_and_resumes_without_it(tmp_path):
    """A model-based detector is slow to be sure of speech: two loud frames over the
    bot pause it at once; the detector never hearing speech, it plays on after
    barge_in_onset_ms. With barge_in_onset_rms 0 the same sound pauses nothing."""
    transcriber = FakeTranscriber(["never heard"])
    synthesizer = FakeSynthesizer(seconds_per_char=0.02)
    voice = plugin(transcriber, synthesizer, detectors=[DeafDetector()])
    async with BotHarness(tmp_path, plugins={"v": voice}, config=CONFIG) as h:
        await in_voice(h, h.member)
        s = session(h)
        assert s.detector().id == "deaf"

        async def burst_over_the_bot() -> tuple[dict, object]:
            before = s.trace
            saying = asyncio.create_task(s.say(LONG))
            trace = await wait_until(lambda: s.trace is not before and s.trace, 20)
            await wait_until(lambda: "first_audio" in trace, 20)
            await asyncio.sleep(0.4)  # the bot is well into the reply
            burst = await h.server.speak(h.member, tone(0.3, 48_000, 2, frequency=300.0))
            assert await saying
            return trace, burst

        trace, burst = await burst_over_the_bot()
        assert burst.started_at < trace["paused_at"] < burst.finished_at
        assert trace["paused_at"] < trace["resumed_at"]
        assert s.interruptions == 0 and transcriber.calls == 0

        reply = await h.ask("!voice set barge_in_onset_rms 0", author=h.admin)
        assert "barge_in_onset_rms" in reply.content
        trace, burst = await burst_over_the_bot()
        assert "paused_at" not in trace and s.interruptions == 0


def test_fillers_are_not_words_that_take_the_turn():
    assert is_filler("Mm-hmm.") and is_filler("Yeah, okay.") and is_filler("mm mm")
    assert not is_filler("Stop, please.") and not is_filler("") and not is_filler("...")
    assert has_words("Stop.") and not has_words(" ... ")
