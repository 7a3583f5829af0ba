"""Speculative transcription and preemptive generation, end to end with real speech.

Transcription starts at the detector's ``pause`` (200 ms of trailing silence), so
it overlaps the wait for the end of the turn (700 ms); a speaker who goes on
makes it stale (discarded), and the end reuses the one that covers the whole turn.
"""

from __future__ import annotations

import asyncio

from voice_support import (
    CONFIG,
    bot_posts,
    clip_of,
    in_voice,
    plugin,
    session,
    speech_only,
    wait_for_post,
    wait_until,
)

from hark.testing.fakes import EchoGenerator, FakeSynthesizer, FakeTranscriber
from hark.testing.harness import BotHarness


def by_length(clip) -> str:
    # The first burst alone is ~2 s; both bursts with the gap ~5 s.
    return "the whole thing" if clip.duration > 3.5 else "only the start"


async def test_a_speculative_transcript_is_discarded_when_the_speaker_goes_on(tmp_path, speech):
    transcriber = FakeTranscriber(by_length)
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        s = session(h)
        # A 400 ms gap: past pause_ms (200), short of silence_ms (700): one turn.
        await h.server.speak(h.member, clip_of(speech_only(speech), 0.4, speech))
        assert await wait_for_post(h, "🎙️") == "🎙️ **alice**: the whole thing"
        await wait_for_post(h, "🔊 the whole thing")
        # Transcribed at the gap (then discarded) and at the final pause (then used).
        assert [by_length(c) for c in transcriber.clips] == ["only the start", "the whole thing"]
        assert s.counts["speculative_discarded"] == 1 and s.counts["speculative_used"] == 1
        await asyncio.sleep(1.0)
        assert bot_posts(h, "🎙️") == ["🎙️ **alice**: the whole thing"]


async def test_transcription_overlaps_the_end_of_turn_wait(tmp_path, speech):
    # 150 ms of "transcription": done well before the end of turn, 500 ms after the pause.
    transcriber = FakeTranscriber("what time is it", delay=0.15)
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        s = session(h)
        await h.server.speak(h.member, speech)
        await wait_for_post(h, "🔊 what time is it")
        trace = s.trace
        assert trace["speech_start"] < trace["turn_pause"] < trace["turn_end"]
        assert trace["turn_pause"] < trace["speculative_transcribed"] < trace["turn_end"]
        assert trace["turn_end"] <= trace["transcribed"]
        assert transcriber.calls == 1 and s.counts["speculative_used"] == 1


async def test_pause_ms_zero_turns_speculation_off(tmp_path, speech):
    transcriber = FakeTranscriber("what time is it")
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        assert "now `0`" in (await h.ask("!voice set pause_ms 0", author=h.admin)).content
        await in_voice(h, h.member)
        s = session(h)
        await h.server.speak(h.member, speech)
        await wait_for_post(h, "🔊 what time is it")
        assert "turn_pause" not in s.trace and s.counts["speculative_used"] == 0
        assert transcriber.calls == 1


async def test_preemptive_generation_is_held_until_the_end_and_cancelled_if_it_goes_on(
    tmp_path, speech
):
    transcriber = FakeTranscriber(by_length)
    generator = EchoGenerator()
    synthesizer = FakeSynthesizer()
    async with BotHarness(
        tmp_path,
        plugins={"v": plugin(transcriber, synthesizer, generator)},
        config=CONFIG,
    ) as h:
        assert "now `True`" in (await h.ask("!voice set preemptive on", author=h.admin)).content
        await in_voice(h, h.member)
        s = session(h)
        h.server.clear_bot_audio(h.guild)
        talk = await h.server.speak(h.member, clip_of(speech_only(speech), 0.4, speech))
        said = await wait_for_post(h, "🔊", timeout=20)
        assert said == "🔊 the whole thing"
        trace = s.trace
        # The LLM ran from the speculative transcript, before the turn ended, but
        # nothing was played before the end.
        assert trace["first_delta"] < trace["turn_end"]
        packets = h.server.bot_audio_packets(h.guild)
        assert packets and min(p.received_at for p in packets) > trace["turn_end"]
        assert talk.finished_at < trace["turn_end"]
        # Two generations: the one for "only the start" was cancelled when the
        # speaker went on; the one for the whole turn was used.
        assert generator.calls == 2
        assert s.counts["preemptive_discarded"] == 1 and s.counts["preemptive_used"] == 1
        await wait_until(lambda: generator.open_streams == 0, 5)
        entries = await h.bot.runtime.history.recent(h.channel.id, 4)
        assert [e.content for e in entries] == ["the whole thing", "the whole thing"]
        assert bot_posts(h, "🔊") == ["🔊 the whole thing"]


async def test_preemptive_generation_is_off_by_default(tmp_path, speech):
    generator = EchoGenerator()
    transcriber = FakeTranscriber(by_length)
    async with BotHarness(
        tmp_path,
        plugins={"v": plugin(transcriber, FakeSynthesizer(), generator)},
        config=CONFIG,
    ) as h:
        await in_voice(h, h.member)
        s = session(h)
        await h.server.speak(h.member, clip_of(speech_only(speech), 0.4, speech))
        await wait_for_post(h, "🔊 the whole thing", timeout=20)
        assert generator.calls == 1 and s.counts["preemptive_started"] == 0
        assert s.trace["first_delta"] > s.trace["turn_end"]
