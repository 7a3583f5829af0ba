"""The local transcriber: fast checks with a stand-in model (what faster-whisper is
asked to do), then one real-model case per behaviour with the bundled tiny.en."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from hark_stt_whisper import LocalWhisperTranscriber, OpenAIWhisperTranscriber
from hark_stt_whisper.models import (
    BUNDLED,
    CACHE,
    ModelCache,
    ModelKey,
    bundled_path,
    canonical,
    describe,
    load_model,
)
from whisper_support import KITCHEN, KITCHEN_WORDS, NAME, NAME_SENTENCE, PLUGIN_ID

from hark import AudioClip, Capability, ConfigurationError, ProviderError
from hark.audio import convert
from hark.testing.fakes import silence, tone

# -- a stand-in for faster_whisper.WhisperModel --------------------------------


class StandInModel:
    """Records what ``transcribe`` was given; returns scripted segments."""

    def __init__(self, text: str = "hello there", *, multilingual: bool = False, delay=0.0):
        self.text = text
        self.delay = delay
        self.calls: list[tuple[np.ndarray, dict]] = []
        self.segments_made = 0
        self.model = SimpleNamespace(is_multilingual=multilingual)

    def transcribe(self, audio, **options):
        self.calls.append((audio, options))

        def segments():
            for word in self.text.split():
                if self.delay:
                    time.sleep(self.delay)
                self.segments_made += 1
                yield SimpleNamespace(text=f" {word}", avg_logprob=-0.2, tokens=[1, 2])

        return segments(), SimpleNamespace(language=options.get("language") or "en")


@pytest.fixture
def stand_in():
    model = StandInModel()
    cache = ModelCache(loader=lambda key, **kw: model)
    return model, cache


def speechy(seconds: float = 1.0, rate: int = 48_000, channels: int = 2) -> AudioClip:
    return convert(tone(seconds, rate), rate, channels)


# -- what faster-whisper is asked ----------------------------------------------


async def test_discord_audio_reaches_the_model_as_16k_mono_float32(stand_in, make_local):
    model, cache = stand_in
    transcriber = make_local(cache=cache)
    transcript = await transcriber.transcribe(speechy(1.5, 48_000, 2))
    assert transcript.text == "hello there"
    assert transcript.duration == pytest.approx(1.5)
    assert 0.0 < transcript.confidence <= 1.0
    ((audio, options),) = model.calls
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(24_000, abs=2)
    assert 0.2 < float(np.abs(audio).max()) <= 1.0  # scaled to [-1, 1), not int16 values
    assert options["beam_size"] == 2 and options["vad_filter"] is False
    assert options["language"] == "en"  # the bundled model is English-only
    assert options["initial_prompt"] is None
    assert options["condition_on_previous_text"] is False
    assert options["without_timestamps"] is True
    assert options["temperature"] == 0.0  # one decode per turn: no fallback re-sampling


async def test_prompt_and_language_are_passed_on(stand_in, make_local):
    model, cache = stand_in
    transcriber = make_local(cache=cache)
    await transcriber.transcribe(speechy(), prompt="  Alice, Quillothy, Bob ", language="FR")
    options = model.calls[-1][1]
    assert options["initial_prompt"] == "Alice, Quillothy, Bob"
    assert options["language"] == "fr"
    await transcriber.transcribe(speechy(), language="auto")
    assert model.calls[-1][1]["language"] == "en"  # English-only: nothing to detect


async def test_server_settings_apply(stand_in, make_local, hark_settings_store):
    model, cache = stand_in
    transcriber = make_local(cache=cache)
    transcriber.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    for key, value in [
        ("language", "de"),
        ("beam_size", 4),
        ("vad_filter", True),
        ("temperature_fallback", True),
    ]:
        await hark_settings_store.set_value(PLUGIN_ID, key, value, "server", 42)
    await transcriber.transcribe(speechy(), guild_id=42)
    options = model.calls[-1][1]
    assert (options["language"], options["beam_size"], options["vad_filter"]) == ("de", 4, True)
    assert "temperature" not in options  # faster-whisper's own fallback ladder
    # Another server keeps the defaults; the caller's language wins over the setting.
    await transcriber.transcribe(speechy(), guild_id=43)
    assert model.calls[-1][1]["language"] == "en"
    await transcriber.transcribe(speechy(), guild_id=42, language="it")
    assert model.calls[-1][1]["language"] == "it"


async def test_silence_is_an_empty_transcript_without_running_the_model(stand_in, make_local):
    model, cache = stand_in
    transcriber = make_local(cache=cache)
    for clip in (silence(2.0, 48_000, 2), AudioClip(b"", 16_000), tone(1.0, amplitude=0.0002)):
        transcript = await transcriber.transcribe(clip)
        assert transcript.text == ""
    assert model.calls == [] and cache.loads == 0


async def test_cancelled_transcription_stops_the_worker(make_local):
    model = StandInModel(" ".join(["word"] * 200), delay=0.01)
    transcriber = make_local(cache=ModelCache(loader=lambda key, **kw: model))
    task = asyncio.create_task(transcriber.transcribe(speechy()))
    while model.segments_made < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    made = model.segments_made
    await asyncio.sleep(0.2)
    assert model.segments_made <= made + 2, "the worker kept decoding after cancellation"


async def test_model_loads_off_the_event_loop_once(make_local):
    loads = []
    release = threading.Event()

    def slow_loader(key, **kw):
        loads.append(threading.current_thread())
        release.wait(5)
        return StandInModel()

    cache = ModelCache(loader=slow_loader)
    transcriber = make_local(cache=cache)
    calls = [asyncio.create_task(transcriber.transcribe(speechy())) for _ in range(3)]
    # The loop is free while the model loads: this sleep returns on time.
    started = time.perf_counter()
    await asyncio.sleep(0.05)
    assert time.perf_counter() - started < 1.0
    release.set()
    results = await asyncio.gather(*calls)
    assert [r.text for r in results] == ["hello there"] * 3
    assert len(loads) == 1 and loads[0] is not threading.main_thread()


# -- which model, and loading failures -----------------------------------------


def test_bundled_model_is_shipped():
    path = bundled_path()
    assert path is not None and (path / "model.bin").is_file()
    assert canonical("") == canonical("bundled") == canonical(" Bundled ") == BUNDLED
    assert "tiny.en" in describe(BUNDLED)


async def test_missing_directory_is_a_clear_configuration_error(make_local, tmp_path):
    cache = ModelCache()
    missing = str(tmp_path / "models" / "small")
    transcriber = make_local(model=missing, cache=cache)
    for _ in range(2):
        with pytest.raises(ConfigurationError) as caught:
            await transcriber.transcribe(speechy())
        assert "does not exist" in caught.value.message and missing in caught.value.message
        assert caught.value.provider == f"{PLUGIN_ID}:local"
    # The failure is remembered, not retried for every clip, and shown in listings.
    assert cache.loads == 1
    assert "does not exist" in transcriber.unavailable_reason()


async def test_directory_without_a_model(make_local, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    transcriber = make_local(model=str(tmp_path), cache=ModelCache())
    with pytest.raises(ConfigurationError, match=r"no model\.bin"):
        await transcriber.transcribe(speechy())


async def test_size_name_that_cannot_be_downloaded(make_local, tmp_path):
    # Offline (as every test is): the hub is never asked, and the error says what to do.
    transcriber = make_local(model="small.en", cache_dir=str(tmp_path), cache=ModelCache())
    with pytest.raises(ConfigurationError) as caught:
        await asyncio.wait_for(transcriber.transcribe(speechy()), 30)
    message = caught.value.message
    assert "`small.en`" in message and "WHISPER_MODEL" in message
    assert "downloads are off" in message


def test_corrupt_model_directory(tmp_path):
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ConfigurationError, match="could not load the Whisper model"):
        load_model(ModelKey.of(str(tmp_path)))


async def test_model_choice_and_allow_list(make_local, hark_settings_store, tmp_path):
    extra = tmp_path / "extra-model"
    extra.mkdir()
    transcriber = make_local(models=[str(extra)], cache=ModelCache())
    transcriber.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    assert transcriber.default_model() == BUNDLED
    assert transcriber.allowed_models() == [BUNDLED, str(extra.resolve())]
    assert transcriber.is_allowed(str(extra)) and not transcriber.is_allowed("/etc")

    async def choose(guild_id: int, spec: str) -> str:
        await hark_settings_store.set_value(PLUGIN_ID, "model", spec, "server", guild_id)
        return transcriber.model_for(transcriber.resolve(guild_id).values)

    assert await choose(7, str(extra.resolve())) == str(extra.resolve())
    assert transcriber.model_for(transcriber.resolve(8).values) == BUNDLED
    # A choice that is no longer offered falls back to the default.
    assert await choose(9, "/somewhere/else") == BUNDLED
    # `!config` asks the transcriber first: only offered models, and only if they load.
    with pytest.raises(ValueError, match="not one of the models this bot offers"):
        await transcriber.check_setting("model", "/etc")
    with pytest.raises(ValueError, match=r"could not use that model.*no model\.bin"):
        await transcriber.check_setting("model", str(extra))
    assert await transcriber.check_setting("language", "fr") == "fr"  # not its business


async def test_environment_wins_over_bot_toml(make_local, hark_settings_store, tmp_path):
    hark_settings_store.seed_globals(PLUGIN_ID, {"model": "base.en", "language": "es"})
    plain = make_local(cache=ModelCache())
    plain.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    assert plain.default_model() == "base.en"
    assert plain.language_for(plain.bot_wide()) == "es"
    configured = make_local(model=str(tmp_path), language="nl", cache=ModelCache())
    configured.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    assert configured.default_model() == str(tmp_path.resolve())
    assert configured.language_for(configured.bot_wide()) == "nl"


def test_configuration_from_environment(tmp_path):
    environ = {
        "WHISPER_MODE": "OpenAI",
        "WHISPER_MODEL": str(tmp_path),
        "WHISPER_MODELS": "a, b ,,",
        "WHISPER_CPU_THREADS": "two",
        "WHISPER_OPENAI_TIMEOUT": "5",
        "WHISPER_LANGUAGE": "Auto",
        "OPENAI_BASE_URL": "http://127.0.0.1:1/v1/",
        "OPENAI_API_KEY": " sk-secret-value ",
        "WHISPER_OFFLINE": "1",
    }
    settings = LocalWhisperTranscriber(environ=environ).bot_wide()
    assert settings.mode == "openai" and settings.model == str(tmp_path)
    assert settings.models == ["a", "b"] and settings.cpu_threads == 0  # "two": ignored
    assert settings.openai_timeout == 5.0 and settings.openai_base_url == "http://127.0.0.1:1/v1"
    assert settings.offline and settings.language == "auto"
    remote = OpenAIWhisperTranscriber(environ=environ)
    assert remote.config.api_key == "sk-secret-value" and remote.has_key
    assert "sk-secret-value" not in repr(remote.config) and "sk-secret" not in repr(remote)
    assert OpenAIWhisperTranscriber(environ={"WHISPER_MODE": "cloud"}).bot_wide().mode == "local"
    for bad in ("0", "-3", "soon"):  # not a timeout: the default
        timeout = OpenAIWhisperTranscriber(environ={"WHISPER_OPENAI_TIMEOUT": bad}).timeout
        assert timeout == 60.0


async def test_mode_decides_which_provider_ranks_first(make_local, make_remote):
    local, remote = make_local(), make_remote()
    assert (local.default_priority, remote.default_priority) == (1, 0)
    local, remote = make_local(mode="openai"), make_remote(mode="openai")
    assert (local.default_priority, remote.default_priority) == (0, 1)
    assert local.capability == remote.capability == Capability.TRANSCRIBE
    assert (local.id, remote.id) == ("stt_whisper:local", "stt_whisper:openai")


# -- the real model (bundled tiny.en), one case per behaviour ------------------


async def test_real_model_is_loaded_once_per_process(whisper_model, make_local, speaker):
    loads = CACHE.loads
    first, second = make_local(), make_local()
    assert await first.load() is whisper_model
    assert await second.load() is whisper_model
    await second.transcribe(speaker.say(KITCHEN))
    assert CACHE.loads == loads
    assert first.is_loaded(BUNDLED)


async def test_real_48k_stereo_transcribes_like_16k_mono(whisper_model, make_local, speaker):
    transcriber = make_local()
    mono = speaker.say(KITCHEN)
    assert (mono.sample_rate, mono.channels) == (16_000, 1)
    discord = convert(mono, 48_000, 2)
    a, b = await asyncio.gather(transcriber.transcribe(mono), transcriber.transcribe(discord))
    for transcript in (a, b):
        words = transcript.text.lower()
        assert all(w in words for w in KITCHEN_WORDS), transcript.text
        assert transcript.language == "en"
    assert b.duration == pytest.approx(a.duration, abs=0.01)


async def test_real_prompt_reaches_whisper(whisper_model, make_local, speaker):
    transcriber = make_local()
    clip = speaker.say(NAME_SENTENCE)
    plain = await transcriber.transcribe(clip)
    primed = await transcriber.transcribe(clip, prompt=f"{NAME}, Alice, Bob.")
    assert NAME.lower() not in plain.text.lower(), plain.text
    assert NAME.lower() in primed.text.lower(), primed.text


async def test_real_noise_gives_no_garbage(whisper_model, make_local):
    # Quiet hiss, loud enough to pass the silence gate and reach the model.
    rng = np.random.default_rng(7)
    hiss = (rng.standard_normal(48_000 * 2) * 300).astype("<i2")
    transcriber = make_local()
    transcript = await transcriber.transcribe(AudioClip(hiss.tobytes(), 48_000, 1))
    assert len(transcript.text.split()) <= 3, transcript.text


async def test_real_check_used_by_prepare(whisper_model, make_local):
    result = await make_local().check()
    assert result.text == ""


async def test_transcription_errors_name_the_provider(make_local):
    class Broken(StandInModel):
        def transcribe(self, audio, **options):
            raise RuntimeError("decoder exploded at /secret/path")

    transcriber = make_local(cache=ModelCache(loader=lambda key, **kw: Broken()))
    with pytest.raises(ProviderError) as caught:
        await transcriber.transcribe(speechy())
    assert caught.value.provider == "stt_whisper:local"
    assert "/secret/path" not in caught.value.user_message


def test_the_language_list_is_faster_whispers():
    # The settings validator keeps a copy so that it does not import faster-whisper.
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    from hark_stt_whisper.settings import LANGUAGE_CODES

    assert frozenset(_LANGUAGE_CODES) == LANGUAGE_CODES
