"""warm(): the local model is loaded and run once before the first utterance; the
OpenAI mode opens its connection. And the local transcript's confidence, which tells
speech from what Whisper hallucinates on non-speech."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from fake_openai_audio import MODELS_PATH
from hark_stt_whisper.local import confidence_of
from hark_stt_whisper.models import BUNDLED, ModelCache
from whisper_support import KEY, KITCHEN, KITCHEN_WORDS

from hark import AudioClip
from hark.testing.loopback import unused_port


class CountingModel:
    """A stand-in WhisperModel that counts transcriptions and may be slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.runs = 0
        self.model = SimpleNamespace(is_multilingual=False)
        self._lock = threading.Lock()

    def transcribe(self, audio, **options):
        with self._lock:
            self.runs += 1
        if self.delay:
            time.sleep(self.delay)
        segment = SimpleNamespace(text=" hello", avg_logprob=-0.1, no_speech_prob=0.0, tokens=[1])
        return iter([segment]), SimpleNamespace(language="en")


async def test_warm_loads_and_runs_the_model_once(make_local):
    model = CountingModel()
    cache = ModelCache(loader=lambda key, **kw: model)
    transcriber = make_local(cache=cache)
    assert not transcriber.is_loaded(BUNDLED)
    await asyncio.gather(transcriber.warm(), transcriber.warm())  # concurrent: one run
    assert transcriber.is_loaded(BUNDLED)
    assert (cache.loads, cache.warm_ups, model.runs) == (1, 1, 1)
    await transcriber.warm()
    await make_local(cache=cache).warm()  # per model and process, not per transcriber
    assert (cache.loads, cache.warm_ups, model.runs) == (1, 1, 1)


async def test_warm_runs_off_the_event_loop_beside_a_real_transcription(make_local):
    model = CountingModel(delay=0.3)
    cache = ModelCache(loader=lambda key, **kw: model)
    transcriber = make_local(cache=cache)
    rng = np.random.default_rng(1)
    speech = AudioClip((rng.standard_normal(16_000) * 3000).astype("<i2").tobytes(), 16_000)
    warm = asyncio.create_task(transcriber.warm())
    call = asyncio.create_task(transcriber.transcribe(speech))
    started = time.perf_counter()
    await asyncio.sleep(0.05)  # the loop is free while the model works
    assert time.perf_counter() - started < 0.25
    await warm
    transcript = await call
    assert transcript.text == "hello" and model.runs == 2 and cache.loads == 1


async def test_warm_with_a_broken_model_does_not_raise(make_local, tmp_path, caplog):
    transcriber = make_local(model=str(tmp_path / "missing"), cache=ModelCache())
    with caplog.at_level(logging.DEBUG, logger="hark.provider"):
        await transcriber.warm()
    assert "warm-up" in caplog.text
    assert "does not exist" in transcriber.unavailable_reason()


def test_confidence_formula():
    assert confidence_of([]) is None
    assert confidence_of([(0.0, 0.0, 5)]) == 1.0
    assert confidence_of([(-0.5, 0.2, 3)]) == pytest.approx(math.exp(-0.5) * 0.8)
    # Token-weighted: the long segment counts three times as much as the short one.
    mixed = confidence_of([(0.0, 0.0, 3), (0.0, 1.0, 1)])
    assert mixed == pytest.approx(0.75)


async def test_real_warm_is_once_and_cheap_after(whisper_model, make_local):
    cache = ModelCache(loader=lambda key, **kw: whisper_model)
    transcriber = make_local(cache=cache)
    await transcriber.warm()
    assert cache.warm_ups == 1 and transcriber.is_loaded(BUNDLED)
    started = time.perf_counter()
    await transcriber.warm()
    assert time.perf_counter() - started < 0.05 and cache.warm_ups == 1


async def test_real_warm_beside_a_real_transcription(whisper_model, make_local, speaker):
    cache = ModelCache(loader=lambda key, **kw: whisper_model)
    transcriber = make_local(cache=cache)
    _, transcript = await asyncio.gather(
        transcriber.warm(), transcriber.transcribe(speaker.say(KITCHEN))
    )
    assert all(w in transcript.text.lower() for w in KITCHEN_WORDS), transcript.text
    assert cache.warm_ups == 1


async def test_real_speech_is_confident_and_babble_is_not(whisper_model, make_local, speaker):
    transcriber = make_local()
    clip = speaker.say(KITCHEN)
    speech = await transcriber.transcribe(clip)
    assert speech.confidence is not None and speech.confidence > 0.5, speech
    # The same voice cut into 40 pieces and shuffled: babble, on which Whisper tends to
    # hallucinate a stock phrase ("We'll see you next time.") with a high no-speech
    # probability. Either nothing is heard or it is markedly less confident than speech
    # (Piper's voice varies run to run, and so does the babble: 0-0.17 seen with one
    # decode per clip; the temperature fallback re-sampled it up to 0.41).
    pcm = np.frombuffer(clip.pcm, dtype="<i2")
    pieces = np.array_split(pcm, 40)
    order = np.random.default_rng(3).permutation(len(pieces))
    babble = np.concatenate([pieces[i] for i in order])
    heard = await transcriber.transcribe(AudioClip(babble.tobytes(), clip.sample_rate))
    assert heard.text == "" or (
        heard.confidence is not None and heard.confidence < 0.6 * speech.confidence
    ), (heard, speech)
    # Hiss: nothing at all.
    hiss = (np.random.default_rng(7).standard_normal(32_000) * 1000).astype("<i2")
    quiet = await transcriber.transcribe(AudioClip(hiss.tobytes(), 16_000))
    assert quiet.text == "" and quiet.confidence is None


# -- the OpenAI mode -------------------------------------------------------------


async def test_remote_warm_opens_the_connection(server, make_remote):
    transcriber = make_remote()
    await transcriber.warm()
    ((request,),) = [server.model_requests]
    assert request.path == MODELS_PATH and request.bearer == KEY
    assert server.requests == []  # nothing was transcribed (or paid for)


async def test_remote_warm_keeps_the_connection_for_the_first_clip(server, make_remote):
    """The warmed connection pool stays open for the first transcription (the same
    client), and aclose() is what closes it."""
    transcriber = make_remote()
    await transcriber.warm()
    client = transcriber.client()
    assert not client.is_closed()
    await transcriber.transcribe(AudioClip(bytes(3200) + b"\x40\x1f" * 8000, 16_000))
    assert transcriber.client() is client and not client.is_closed()
    await transcriber.aclose()
    assert client.is_closed()


async def test_remote_warm_with_the_service_down_does_not_raise(make_remote, caplog):
    transcriber = make_remote(openai_base_url=f"http://127.0.0.1:{unused_port()}/v1")
    with caplog.at_level(logging.DEBUG, logger="hark.provider"):
        await transcriber.warm()
    assert "warm-up" in caplog.text and KEY not in caplog.text


async def test_remote_warm_without_a_key_does_nothing(server, make_remote, monkeypatch):
    transcriber = make_remote(openai_base_url="https://api.openai.com/v1", api_key="")
    await transcriber.warm()  # unusable: no request, no error
    assert server.model_requests == []
