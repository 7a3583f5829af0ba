"""Turn detection is a provider kind: chosen per server with `!plugins use turn ID`,
the built-in webrtcvad detector (`voice`) as the default and the fallback, and the
detector's speech probability / the transcript's confidence keep non-speech out."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from voice_support import (
    CONFIG,
    bot_posts,
    in_voice,
    plugin,
    session,
    wait_for_post,
    wait_until,
)

from hark.providers import Transcript, TurnDetector, TurnUpdate
from hark.testing.fakes import FakeSynthesizer, FakeTranscriber
from hark.testing.harness import BotHarness
from hark.voice.turns import TurnSettings, VadTurns


class _Probable(VadTurns):
    """VadTurns that reports a speech probability, as a model-based detector would."""

    def __init__(self, user_id: int, settings: TurnSettings, probability: float) -> None:
        super().__init__(user_id, settings)
        self.probability = probability

    def _tag(self, update: TurnUpdate | None) -> TurnUpdate | None:
        if update is None or update.utterance is None:
            return update
        utterance = dataclasses.replace(update.utterance, speech_probability=self.probability)
        return TurnUpdate(update.kind, utterance)

    def feed(self, pcm: bytes, **kwargs: Any) -> TurnUpdate | None:
        return self._tag(super().feed(pcm, **kwargs))

    def poll(self, now: float | None = None) -> TurnUpdate | None:
        return self._tag(super().poll(now))


class RecordingDetector(TurnDetector):
    """A plugin's detector: webrtcvad underneath, records who it opened for."""

    default_priority = 10  # above the built-in one

    def __init__(self, *, probability: float = 0.9, fail: bool = False) -> None:
        super().__init__()
        self.probability = probability
        self.fail = fail
        self.opened: list[tuple[int, int | None, dict[str, Any]]] = []

    def _open(self, user_id: int, *, guild_id: int | None, **settings: Any) -> _Probable:
        self.opened.append((user_id, guild_id, settings))
        if self.fail:
            raise RuntimeError("no model here")
        return _Probable(user_id, TurnSettings.from_settings(settings), self.probability)


class ConfidentTranscriber(FakeTranscriber):
    """Like Whisper, says how sure it is."""

    def __init__(self, text: str, confidence: float) -> None:
        super().__init__(text)
        self.confidence = confidence

    async def _impl(self, clip, **kwargs) -> Transcript:
        result = await super()._impl(clip, **kwargs)
        return dataclasses.replace(result, confidence=self.confidence)


async def test_a_plugin_detector_wins_and_plugins_use_turn_voice_picks_the_builtin(
    tmp_path, speech
):
    detector = RecordingDetector()
    transcriber = FakeTranscriber(["first", "second"])
    module = plugin(transcriber, FakeSynthesizer(), detectors=[detector])
    async with BotHarness(tmp_path, plugins={"turn_test": module}, config=CONFIG) as h:
        await in_voice(h, h.member)
        s = session(h)
        await h.server.speak(h.member, speech)
        assert await wait_for_post(h, "🎙️ **alice**: first")
        assert s.detectors == {h.member.id: "turn_test"}
        user_id, guild_id, settings = detector.opened[0]
        assert (user_id, guild_id) == (h.member.id, h.guild.id)
        assert settings["silence_ms"] == 700 and settings["pause_ms"] == 200  # the server's
        reply = await h.ask("!plugins use turn voice", author=h.admin)
        assert "turn now uses `voice`" in reply.content
        # Idle speakers move to the new choice (within the watchdog's second).
        await wait_until(lambda: s.detectors.get(h.member.id) == "voice", 5)
        await h.server.speak(h.member, speech)
        assert await wait_for_post(h, "🎙️ **alice**: second")
        assert len(detector.opened) == 1  # not asked again


async def test_a_detector_that_fails_to_open_falls_back_to_the_builtin(tmp_path, speech):
    detector = RecordingDetector(fail=True)
    module = plugin(FakeTranscriber("still heard"), FakeSynthesizer(), detectors=[detector])
    async with BotHarness(tmp_path, plugins={"turn_test": module}, config=CONFIG) as h:
        await in_voice(h, h.member)
        notice = asyncio.create_task(wait_for_post(h, "The turn detector `turn_test` failed"))
        await h.server.speak(h.member, speech)
        assert "using `voice`" in await notice
        assert await wait_for_post(h, "🎙️ **alice**: still heard")
        assert session(h).detectors == {h.member.id: "voice"}


async def test_low_speech_probability_is_not_a_turn(tmp_path, speech):
    detector = RecordingDetector(probability=0.1)
    transcriber = FakeTranscriber("a door slammed")
    module = plugin(transcriber, FakeSynthesizer(), detectors=[detector])
    async with BotHarness(tmp_path, plugins={"turn_test": module}, config=CONFIG) as h:
        await in_voice(h, h.member)
        s = session(h)
        await h.server.speak(h.member, speech)
        await wait_until(lambda: s.counts["not_speech"] == 1, 10)
        # Not even transcribed (speculatively or not), and not answered.
        assert transcriber.calls == 0
        await asyncio.sleep(0.5)
        assert bot_posts(h, "🎙️") == [] and bot_posts(h, "🔊") == []
        await h.ask("!voice set min_speech_probability 0.05", author=h.admin)
        await h.server.speak(h.member, speech)
        assert await wait_for_post(h, "🎙️ **alice**: a door slammed")


async def test_a_low_confidence_transcript_is_not_a_turn(tmp_path, speech):
    # Whisper hallucinating on noise ("You") gives a low confidence.
    transcriber = ConfidentTranscriber("You", confidence=0.1)
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, FakeSynthesizer())}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        s = session(h)
        await h.server.speak(h.member, speech)
        await wait_until(lambda: s.counts["not_speech"] == 1, 10)
        await asyncio.sleep(0.5)
        assert bot_posts(h, "🎙️") == [] and bot_posts(h, "🔊") == []
        transcriber.confidence = 0.8
        await h.server.speak(h.member, speech)
        assert await wait_for_post(h, "🎙️ **alice**: You")


async def test_voice_set_checks_the_new_settings(tmp_path):
    async with BotHarness(
        tmp_path, plugins={"v": plugin(FakeTranscriber(), FakeSynthesizer())}, config=CONFIG
    ) as h:
        for key, value in [("pause_ms", "10"), ("min_confidence", "1.5")]:
            reply = await h.ask(f"!voice set {key} {value}", author=h.admin)
            assert "out of range" in reply.content, reply.content
        for key, value in [("barge_in_pause_ms", "-1"), ("barge_in_ms", "-5")]:
            reply = await h.ask(f"!voice set {key} {value}", author=h.admin)
            assert "0 or more" in reply.content, reply.content
        reply = await h.ask("!voice set preemptive maybe", author=h.admin)
        assert "on/off" in reply.content
        reply = await h.ask("!voice set min_speech_probability 0.7", author=h.admin)
        assert "now `0.7`" in reply.content
        listing = (await h.ask("!voice")).content
        for key in ("pause_ms", "barge_in_pause_ms", "preemptive", "min_confidence"):
            assert f"`{key}`" in listing
