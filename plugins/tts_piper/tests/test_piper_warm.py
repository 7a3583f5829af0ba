"""warm(): the voice is loaded and has run one short inference before the first reply."""

from __future__ import annotations

import asyncio
import logging
import time

from hark_tts_piper.voice import LoadedVoice, warm_voice


class Counting:
    """Wraps a PiperVoice, counting ``synthesize`` calls."""

    def __init__(self, piper) -> None:
        self._piper = piper
        self.calls: list[str] = []

    def __getattr__(self, name):
        return getattr(self._piper, name)

    def synthesize(self, text, *args, **kwargs):
        self.calls.append(text)
        return self._piper.synthesize(text, *args, **kwargs)


def test_warm_voice_runs_one_inference_once(piper_voice):
    piper = Counting(piper_voice.piper)
    voice = LoadedVoice(piper, piper_voice.paths)  # a fresh, never-warmed voice
    assert warm_voice(voice) is True and voice.warmed
    assert warm_voice(voice) is False
    assert len(piper.calls) == 1


async def test_warm_loads_the_voice_and_is_cheap_the_second_time(synth, piper_voice):
    await synth.warm()
    assert synth.loaded_voice() is piper_voice and piper_voice.warmed
    started = time.perf_counter()
    await synth.warm()
    assert time.perf_counter() - started < 0.05


async def test_warm_beside_a_real_stream(synth, piper_voice):
    piper_voice.warmed = False  # as if just loaded: warm-up and a reply race
    clips, _ = await asyncio.gather(_speak(synth, "Hello there."), synth.warm())
    assert clips and sum(c.duration for c in clips) > 0.3
    assert piper_voice.warmed


async def test_warm_with_a_missing_voice_does_not_raise(make_synthesizer, tmp_path, caplog):
    synth = make_synthesizer(model_path=tmp_path / "missing.onnx")
    with caplog.at_level(logging.DEBUG, logger="hark.provider.tts_piper"):
        await synth.warm()
    assert "warm-up failed" in caplog.text


async def _speak(synth, text):
    return [clip async for clip in synth.synthesize(text)]
