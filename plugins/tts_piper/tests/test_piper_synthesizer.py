"""PiperSynthesizer with the real voice: streaming, format, cancellation, settings, errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import threading
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import hark_tts_piper
import numpy as np
import pytest
from hark_tts_piper import PiperSettings, PiperSynthesizer, speak_all
from hark_tts_piper import synthesizer as synthesizer_module
from hark_tts_piper.voice import BUNDLED, LoadedVoice, VoicePaths, resolve_paths

from hark import AudioClip, Capability
from hark.audio import rms, to_array
from hark.providers.errors import ConfigurationError, ProviderError

SENTENCES = " ".join(f"This is sentence number {n}." for n in range(1, 6))
TWO_SENTENCES = "The weather is lovely today. Shall we go for a walk by the river?"


def joined(clips: list[AudioClip]) -> AudioClip:
    assert clips
    return AudioClip(b"".join(c.pcm for c in clips), clips[0].sample_rate, clips[0].channels)


class Spy:
    """Wraps the voice's ``synthesize`` to log, from the worker thread, when each piece
    starts and ends; ``hold`` makes a piece wait for an event before it is synthesized
    (bounded, so a broken plugin fails the test instead of hanging it)."""

    def __init__(self, voice: LoadedVoice, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, int]] = []
        self.holds: dict[int, threading.Event] = {}
        self.timed_out: list[int] = []
        self._original = voice.piper.synthesize
        self._started = 0
        monkeypatch.setattr(voice.piper, "synthesize", self)

    def hold(self, index: int) -> threading.Event:
        return self.holds.setdefault(index, threading.Event())

    def __call__(self, text, syn_config=None, **kwargs):
        index = self._started
        self._started += 1
        event = self.holds.get(index)
        if event is not None and not event.wait(timeout=10):
            self.timed_out.append(index)
        self.events.append(("start", index))
        yield from self._original(text, syn_config=syn_config, **kwargs)
        self.events.append(("end", index))


# -- streaming ---------------------------------------------------------------


async def test_first_sentence_arrives_while_the_rest_is_still_being_synthesized(
    synth, piper_voice, monkeypatch
):
    spy = Spy(piper_voice, monkeypatch)
    # The second piece may only start once the consumer has the first one's audio:
    # a plugin that waited for the whole text would make this hold time out.
    received_first = spy.hold(1)
    pieces = synth.pieces(SENTENCES)
    assert len(pieces) == 5

    seen_at_first_clip: list[tuple[str, int]] = []
    clips = []
    async with asyncio.timeout(60):
        async for clip in synth.synthesize(SENTENCES):
            if not clips:
                seen_at_first_clip = list(spy.events)
                received_first.set()
            clips.append(clip)

    assert spy.timed_out == [], "the first clip only reached the consumer after synthesis"
    # When the first clip reached the event loop, only the first piece had been worked on.
    assert seen_at_first_clip[0] == ("start", 0)
    assert {index for _, index in seen_at_first_clip} == {0}
    assert spy.events[-1] == ("end", 4)
    # One clip per sentence (plus the resampler's short tail).
    assert len(clips) >= 5
    assert all(c.duration > 0.8 for c in clips[:5])


async def test_output_is_discord_audio_with_speech_of_plausible_length(synth):
    clips = await speak_all(synth, TWO_SENTENCES)
    audio = joined(clips)
    assert (audio.sample_rate, audio.channels) == (48_000, 2)
    assert synth.sample_rate == 48_000 and synth.channels == 2
    samples = to_array(audio.pcm, 2)
    assert np.array_equal(samples[:, 0], samples[:, 1]), "mono voice, both channels alike"
    # Speech, not silence or clipping noise.
    assert 1_000 < rms(audio) < 20_000
    # 13 words: normal speech is 2-4 words a second.
    words = len(TWO_SENTENCES.split())
    assert words / 5 < audio.duration < words / 1.5
    # Each 20 ms frame of the middle second is mostly not silent (it is speech).
    middle = samples[48_000:96_000, 0].astype(np.float64)
    frames = middle.reshape(-1, 960)
    loud = np.sqrt((frames**2).mean(axis=1)) > 300
    assert loud.mean() > 0.5


# -- cancellation --------------------------------------------------------------


async def _wait_for_end(thread: threading.Thread) -> None:
    await asyncio.to_thread(thread.join, 15)
    assert not thread.is_alive(), "the worker kept synthesizing after the stream closed"


async def test_closing_the_stream_stops_the_worker(synth, piper_voice, monkeypatch):
    spy = Spy(piper_voice, monkeypatch)
    closed = spy.hold(1)  # the worker is busy with piece 1 when the consumer leaves
    stream = synth.synthesize(SENTENCES)
    first = await asyncio.wait_for(anext(stream), 30)
    assert isinstance(first, AudioClip) and first.pcm
    (worker,) = synth.active_workers
    await stream.aclose()  # barge-in: the user spoke over the bot
    closed.set()
    await _wait_for_end(worker)
    assert synth.active_workers == []
    # Piece 1 may have begun before the stop flag was seen; nothing after it did.
    started = [index for kind, index in spy.events if kind == "start"]
    assert started in ([0], [0, 1]), f"pieces {started} were started after the stream closed"


async def test_cancelling_the_consumer_stops_the_worker(synth, piper_voice, monkeypatch):
    spy = Spy(piper_voice, monkeypatch)
    cancelled = spy.hold(1)
    got_first = asyncio.Event()

    async def play() -> None:
        async for _clip in synth.synthesize(SENTENCES):
            got_first.set()
            await asyncio.sleep(3600)  # playing the audio, when the task is cancelled

    task = asyncio.create_task(play())
    await asyncio.wait_for(got_first.wait(), 30)
    (worker,) = synth.active_workers
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    cancelled.set()
    await _wait_for_end(worker)
    assert [i for kind, i in spy.events if kind == "start"] in ([0], [0, 1])
    # ...and the voice is free for the next reply.
    assert joined(await speak_all(synth, "Still here.")).duration > 0.3


async def test_concurrent_streams_take_turns_and_all_finish(synth):
    results = await asyncio.gather(*(speak_all(synth, TWO_SENTENCES) for _ in range(3)))
    durations = [joined(clips).duration for clips in results]
    assert all(d > 2.0 for d in durations)
    assert synth.active_workers == []


# -- blank and odd text ----------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
async def test_blank_text_gives_no_audio_and_loads_nothing(synth, monkeypatch, text):
    def no_load(paths):
        raise AssertionError("blank text must not load the voice")

    monkeypatch.setattr(synthesizer_module, "cached_voice", lambda paths: None)
    monkeypatch.setattr(synthesizer_module, "load_voice", no_load)
    assert await speak_all(synth, text) == []


async def test_punctuation_only_is_a_short_pause(synth):
    clips = await speak_all(synth, "...")
    audio = joined(clips)
    assert (audio.sample_rate, audio.channels) == (48_000, 2)
    assert 0.1 <= audio.duration <= 0.5 and rms(audio) == 0


async def test_markdown_is_not_read_out(synth, piper_voice, monkeypatch):
    seen: list[str] = []
    original = piper_voice.piper.synthesize

    def record(text, syn_config=None, **kwargs):
        seen.append(text)
        return original(text, syn_config=syn_config, **kwargs)

    monkeypatch.setattr(piper_voice.piper, "synthesize", record)
    clips = await speak_all(synth, "**Hi** <@123>! See https://example.com/x?y=1 ```py\nx=1\n```")
    assert seen == ["Hi!", "See a link"]
    assert rms(joined(clips)) > 1_000


# -- the voice: loading, caching, errors -------------------------------------------


async def test_the_voice_is_loaded_once_and_off_the_event_loop(synth, piper_voice, monkeypatch):
    threads: list[threading.Thread] = []

    def load(paths):
        threads.append(threading.current_thread())
        return piper_voice

    # As if nothing were cached yet, to see where loading runs.
    monkeypatch.setattr(synthesizer_module, "cached_voice", lambda paths: None)
    monkeypatch.setattr(synthesizer_module, "load_voice", load)
    assert await synth.load() is piper_voice
    assert threads and threads[0] is not threading.main_thread()
    monkeypatch.undo()
    # The real cache: every synthesizer shares the session's voice.
    assert await synth.load() is piper_voice
    assert await PiperSynthesizer().load() is piper_voice


def test_paths_default_to_the_bundled_voice():
    paths = resolve_paths()
    assert paths.source == BUNDLED
    assert paths.name == "en_US-joe-medium"
    assert paths.problem() is None


def test_paths_from_the_settings(monkeypatch, tmp_path, make_synthesizer):
    synth = make_synthesizer()
    monkeypatch.setenv("PIPER_MODEL", str(tmp_path / "my-voice.onnx"))
    paths = synth.paths()
    assert paths.source == "env PIPER_MODEL"
    assert paths.config == tmp_path / "my-voice.onnx.json"
    monkeypatch.setenv("PIPER_CONFIG", str(tmp_path / "other.json"))
    assert synth.paths().config == tmp_path / "other.json"
    # explicit paths win over the settings
    assert make_synthesizer(tmp_path / "x.onnx").paths().model == tmp_path / "x.onnx"
    # `environ` replaces the environment
    assert make_synthesizer(environ={}).paths().source == BUNDLED


async def test_paths_from_the_owners_setting(make_synthesizer, settings, tmp_path):
    synth = make_synthesizer()
    synth.bind(settings)
    model = tmp_path / "mine.onnx"
    await settings.store.set_value("tts_piper", "model", str(model), "global")
    paths = synth.paths()
    assert (paths.model, paths.source) == (model, "bot-wide (owner)")
    assert "`mine.onnx` was not found" in (synth.unavailable_reason() or "")


async def test_a_missing_model_is_a_clear_configuration_error(make_synthesizer, tmp_path):
    synth = make_synthesizer(model_path=tmp_path / "en_US-nobody-medium.onnx")
    reason = synth.unavailable_reason()
    assert reason is not None and "`en_US-nobody-medium.onnx` was not found" in reason
    assert "PIPER_MODEL" in reason
    with pytest.raises(ConfigurationError) as caught:
        await speak_all(synth, "Hello.")
    error = caught.value
    assert error.provider == "tts_piper"
    assert error.message == reason
    assert "not found" in error.user_message
    assert not error.retryable
    assert synth.stats.calls == 1  # not retried


async def test_missing_model_from_the_environment(make_synthesizer, monkeypatch, tmp_path):
    monkeypatch.setenv("PIPER_MODEL", str(tmp_path / "gone.onnx"))
    synth = make_synthesizer()
    assert "`gone.onnx` was not found" in (synth.unavailable_reason() or "")
    with pytest.raises(ConfigurationError, match=re.escape("gone.onnx")):
        await speak_all(synth, "Hello.")
    monkeypatch.delenv("PIPER_MODEL")
    assert synth.unavailable_reason() is None  # read on each call, no restart needed


async def test_a_missing_config_and_a_corrupt_model(make_synthesizer, tmp_path):
    bundled = resolve_paths()
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"this is not an onnx model")
    synth = make_synthesizer(model_path=model)
    assert "`voice.onnx.json` was not found" in (synth.unavailable_reason() or "")

    shutil.copy(bundled.config, tmp_path / "voice.onnx.json")
    assert synth.unavailable_reason() is None  # the files are there...
    with pytest.raises(ConfigurationError, match="`voice\\.onnx` is not a loadable Piper ONNX"):
        await speak_all(synth, "Hello.")  # ...but the model is garbage

    (tmp_path / "voice.onnx.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="is not a Piper voice config"):
        await speak_all(synth, "Hello.")


# -- settings ----------------------------------------------------------------------


async def test_length_scale_per_server_changes_the_speed(synth, settings):
    synth.bind(settings)
    store = settings.store
    normal = joined(await speak_all(synth, TWO_SENTENCES, guild_id=1)).duration
    await store.set_value("tts_piper", "length_scale", 1.6, "server", 1)  # slower here
    await store.set_value("tts_piper", "length_scale", 0.6, "server", 2)  # faster there
    slow = joined(await speak_all(synth, TWO_SENTENCES, guild_id=1)).duration
    fast = joined(await speak_all(synth, TWO_SENTENCES, guild_id=2)).duration
    assert slow > 1.3 * normal
    assert fast < 0.8 * normal
    voice = await synth.load()
    assert synth.speed(voice, synth.resolve(2).values) == pytest.approx(1 / 0.6)


async def test_invalid_stored_settings_are_ignored_and_logged(synth, settings, caplog):
    """Values the model refuses (written by hand or by an older version) are skipped,
    with one log line each: the voice's own applies."""
    synth.bind(settings)
    await settings.guild(1).set("length_scale", "fast")
    await settings.guild(1).set("noise_scale", -1)
    with caplog.at_level(logging.WARNING):
        clips = await speak_all(synth, "Hello.", guild_id=1)
        await speak_all(synth, "Hello.", guild_id=1)
    assert joined(clips).duration > 0.3
    values = synth.resolve(1).values
    assert (values.length_scale, values.noise_scale) == (None, None)
    lines = [r.getMessage() for r in caplog.records if "ignoring the stored" in r.getMessage()]
    assert len(lines) == 2
    assert any("length_scale" in line and "greater than 0" in line for line in lines)


async def test_settings_are_checked_against_the_voice(synth, tmp_path):
    assert await synth.check_setting("length_scale", 0.5) == 0.5
    assert await synth.check_setting("length_scale", None) is None
    with pytest.raises(ValueError, match=re.escape("keep it between 0.5 and 2")):
        await synth.check_setting("length_scale", 2.5)
    with pytest.raises(ValueError, match="single speaker"):
        await synth.check_setting("speaker", "bob")
    assert await synth.check_setting("noise_scale", 0.5) == 0.5
    bundled = resolve_paths()
    assert await synth.check_setting("model", str(bundled.model)) == str(bundled.model)
    with pytest.raises(ValueError, match=re.escape("`gone.onnx` was not found")):
        await synth.check_setting("model", str(tmp_path / "gone.onnx"))


def test_speakers_of_a_multi_speaker_voice(synth):
    config = SimpleNamespace(num_speakers=3, speaker_id_map={"amy": 0, "bob": 1, "cat": 2})
    paths = VoicePaths(Path("many.onnx"), Path("many.onnx.json"), "configured")
    voice = LoadedVoice(SimpleNamespace(config=config), paths)  # type: ignore[arg-type]
    defaults = PiperSettings()
    assert synth.speaker_id(voice, defaults, "bob") == 1
    assert synth.speaker_id(voice, defaults, "2") == 2
    assert synth.speaker_id(voice, defaults) is None  # the voice's default speaker
    assert synth.speaker_id(voice, PiperSettings(speaker="cat")) == 2
    with pytest.raises(ConfigurationError, match=re.escape("no speaker `dan` (one of: amy, bob")):
        synth.speaker_id(voice, defaults, "dan")


# -- plugin wiring -------------------------------------------------------------------


def test_entry_point_and_ranking_attributes():
    (ep,) = [ep for ep in entry_points(group="hark") if ep.name == "tts_piper"]
    assert ep.value == "hark_tts_piper:plugin"
    assert PiperSynthesizer.default_priority == -10
    assert PiperSynthesizer.capability == Capability.SYNTHESIZE


def test_prepare_loads_and_speaks(piper_voice):
    messages: list[tuple[str, float | None]] = []
    hark_tts_piper.prepare(
        progress=lambda message, fraction=None: messages.append((message, fraction))
    )
    assert messages[0][0].startswith("voice en_US-joe-medium (bundled")
    assert messages[-1][1] == 1.0 and "spoke" in messages[-1][0]


def test_prepare_fails_clearly_on_a_missing_voice(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPER_MODEL", str(tmp_path / "gone.onnx"))
    with pytest.raises(ProviderError, match=re.escape("`gone.onnx` was not found")):
        hark_tts_piper.prepare()
