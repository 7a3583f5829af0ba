"""ElevenLabsSynthesizer through the real ``elevenlabs`` client against the loopback
ElevenLabs server: what is sent, the audio that comes back, and every failure path."""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pytest
from elevenlabs_support import FAST_RETRY, GEORGE, KEY, PLUGIN_ID, RACHEL
from fake_elevenlabs import FakeVoice
from hark_tts_elevenlabs import DEFAULT_MODEL, ElevenLabsSynthesizer

from hark import AudioClip
from hark.audio import StreamResampler
from hark.providers import RetryPolicy
from hark.providers.errors import (
    BadOutputError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeoutError,
)
from hark.testing.loopback import unused_port

SENTENCE = "Hello there, this is a test."


async def speak(synth: ElevenLabsSynthesizer, text: str = SENTENCE, **kwargs) -> list[AudioClip]:
    return [clip async for clip in synth.synthesize(text, **kwargs)]


async def speak_until_error(
    synth: ElevenLabsSynthesizer, text: str, **kwargs
) -> tuple[list[AudioClip], ProviderError]:
    clips: list[AudioClip] = []
    with pytest.raises(ProviderError) as caught:
        async for clip in synth.synthesize(text, **kwargs):
            clips.append(clip)
    return clips, caught.value


def joined(clips: list[AudioClip]) -> bytes:
    return b"".join(c.pcm for c in clips)


def discord_audio(pcm: bytes) -> np.ndarray:
    """What the plugin should play for source PCM (22,050 Hz mono), as int samples."""
    resampler = StreamResampler(22_050, 1, 48_000, 2)
    out = resampler.feed(pcm).pcm + resampler.flush().pcm
    return np.frombuffer(out, "<i2").astype(np.int32)


def frames_48k(source_bytes: int) -> int:
    return round(source_bytes / 2 * 48_000 / 22_050)


# -- what is sent ----------------------------------------------------------------


async def test_request_carries_text_model_voice_and_settings(server, make_synth):
    synth = make_synth()
    clips = await speak(synth)
    request = server.last_tts
    assert request.path == f"/v1/text-to-speech/{RACHEL}/stream"
    assert request.output_format == "pcm_22050"
    assert request.text == SENTENCE
    assert request.model_id == DEFAULT_MODEL == "eleven_multilingual_v2"
    assert request.voice_settings == {
        "stability": 0.3,
        "similarity_boost": 0.8,
        "style": 0.55,
        "use_speaker_boost": True,
    }
    assert request.api_key == KEY
    # Discord's format, every clip whole stereo frames, as long as the tone sent.
    assert all(c.sample_rate == 48_000 and c.channels == 2 for c in clips)
    assert len(clips) > 1, "the answer was not streamed"
    expected = frames_48k(len(server.pcm_for(SENTENCE)))
    assert abs(sum(c.frames for c in clips) - expected) <= 2


async def test_environment_configures_the_plugin(server):
    synth = ElevenLabsSynthesizer(
        environ={
            "ELEVENLABS_API_KEY": KEY,
            "ELEVENLABS_VOICE_ID": GEORGE,
            "ELEVENLABS_MODEL": "eleven_flash_v2_5",
            "ELEVENLABS_BASE_URL": server.url + "/",
            "ELEVENLABS_TIMEOUT": "12",
        }
    )
    synth.plugin_id = PLUGIN_ID
    try:
        assert synth.unavailable_reason() is None
        assert synth.timeout == 12.0
        await speak(synth)
    finally:
        await synth.aclose()
    request = server.last_tts
    assert request.voice_id == GEORGE and request.model_id == "eleven_flash_v2_5"


def test_unusable_environment_values_are_ignored_with_one_line(caplog):
    environ = {
        "ELEVENLABS_TIMEOUT": "soon",
        "ELEVENLABS_BASE_URL": "api.example.com",
        "ELEVENLABS_MODEL": "eleven flash",
    }
    synth = ElevenLabsSynthesizer(environ=environ)
    with caplog.at_level(logging.WARNING):
        assert synth.timeout == 30.0
        assert synth.base_url == "https://api.elevenlabs.io"
        assert synth.default_model == DEFAULT_MODEL
    lines = [r.getMessage() for r in caplog.records]
    assert any("ELEVENLABS_TIMEOUT='soon'" in line and "a number" in line for line in lines)
    assert any("ELEVENLABS_BASE_URL" in line and "http(s) URL" in line for line in lines)
    assert any("ELEVENLABS_MODEL" in line and "model id" in line for line in lines)
    assert len(lines) == 3  # once each, however often the values are read


def test_defaults_point_at_the_official_api():
    synth = ElevenLabsSynthesizer(environ={})
    assert synth.base_url == "https://api.elevenlabs.io"
    assert synth.default_model == "eleven_multilingual_v2"
    assert synth.timeout == 30.0 and synth.default_voice_id is None
    assert synth.service == "ElevenLabs"
    assert (synth.sample_rate, synth.channels) == (48_000, 2)


async def test_per_server_voice_model_and_settings(server, make_synth, hark_settings_store):
    synth = make_synth()
    synth.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    store = hark_settings_store
    await store.set_value(PLUGIN_ID, "voice_id", GEORGE, "server", 1)
    await store.set_value(PLUGIN_ID, "model", "eleven_turbo_v2_5", "server", 1)
    await store.set_value(PLUGIN_ID, "stability", 0.65, "server", 1)
    await store.set_value(PLUGIN_ID, "use_speaker_boost", False, "server", 1)
    await store.set_value(PLUGIN_ID, "speed", 1.1, "server", 1)
    await store.set_value(PLUGIN_ID, "style", 0.2, "global")

    await speak(synth, guild_id=1)
    request = server.last_tts
    assert request.voice_id == GEORGE
    assert request.model_id == "eleven_turbo_v2_5"
    assert request.voice_settings == {
        "stability": 0.65,
        "similarity_boost": 0.8,
        "style": 0.2,
        "use_speaker_boost": False,
        "speed": 1.1,
    }

    # Another server: the environment's voice, the bot-wide style, defaults elsewhere.
    await speak(synth, guild_id=2)
    request = server.last_tts
    assert request.voice_id == RACHEL and request.model_id == DEFAULT_MODEL
    assert request.voice_settings["stability"] == 0.3
    assert request.voice_settings["style"] == 0.2
    assert "speed" not in request.voice_settings
    assert str(synth.resolve(1).origin("voice_id")) == "this server"
    assert str(synth.resolve(2).origin("voice_id")) == "env ELEVENLABS_VOICE_ID"

    await store.reset_value(PLUGIN_ID, "voice_id", "server", 1)
    await speak(synth, guild_id=1)
    assert server.last_tts.voice_id == RACHEL


async def test_invalid_stored_setting_is_ignored_and_logged(
    server, make_synth, hark_settings_store, caplog
):
    """A value the model refuses (written by hand, or by an older version) is skipped:
    the next layer applies, and the log says so once."""
    synth = make_synth()
    synth.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    await hark_settings_store.for_plugin(PLUGIN_ID).guild(5).set("stability", 4)
    with caplog.at_level(logging.WARNING):
        await speak(synth, guild_id=5)
        await speak(synth, guild_id=5)
    assert server.last_tts.voice_settings["stability"] == 0.3
    ignored = [r for r in caplog.records if "ignoring the stored stability = 4" in r.getMessage()]
    assert len(ignored) == 1
    assert "`stability` must be a number between 0 and 1" in ignored[0].getMessage()


async def test_voice_is_found_by_name_or_id_before_it_is_stored(server, make_synth):
    synth = make_synth()
    assert await synth.check_setting("voice_id", "george") == GEORGE
    assert await synth.check_setting("voice_id", GEORGE) == GEORGE
    assert await synth.check_setting("voice_id", "my cloned voice") == "cloneD0000000000aaaa"
    assert await synth.check_setting("stability", 0.5) == 0.5
    with pytest.raises(ValueError, match="has no voice `Nobody`"):
        await synth.check_setting("voice_id", "Nobody")
    with pytest.raises(ValueError, match="choose a voice"):
        await synth.check_setting("voice_id", None)
    server.voices = [*server.voices, FakeVoice("twin0000000000000001", "George")]
    with pytest.raises(ValueError, match="several voices are called `George`"):
        await synth.check_setting("voice_id", "George")


async def test_a_new_bot_wide_base_url_gets_a_new_client(server, make_synth):
    synth = make_synth()
    await speak(synth)
    first = synth.client()
    synth._fixed["base_url"] = f"http://127.0.0.1:{unused_port()}"
    assert synth.client() is not first
    synth._fixed["base_url"] = server.url
    await speak(synth)
    await synth.aclose()
    assert synth._retired == [] and synth._http is None


async def test_blank_text_sends_nothing(server, make_synth):
    assert await speak(make_synth(), "  \n ") == []
    assert not server.requests


# -- long text -------------------------------------------------------------------


def long_text(count: int) -> str:
    return " ".join(
        f"Sentence {i} of the long story goes on for a while here." for i in range(count)
    )


async def test_long_text_is_split_into_ordered_requests(server, make_synth):
    server.seconds_per_char = 0.0005  # keep ~17,000 characters of audio small
    text = long_text(300)
    assert len(text) > 3 * 5_000
    synth = make_synth()
    clips = await speak(synth, text)

    requests = server.tts_requests
    assert len(requests) == 4
    assert all(len(r.text) <= 5_000 for r in requests)
    assert " ".join(r.text for r in requests) == text, "pieces lost, reordered or changed"
    assert all(r.text.endswith("here.") for r in requests), "a piece ends mid-sentence"
    # One after the other: each request was sent after the previous answer was complete.
    for before, after in itertools.pairwise(requests):
        assert before.finished_at is not None and after.received_at >= before.finished_at
    # Every piece's audio, once, through one resampler.
    source = sum(len(server.pcm_for(r.text)) for r in requests)
    assert abs(sum(c.frames for c in clips) - frames_48k(source)) <= 2
    assert synth.stats.retries == 0


async def test_limit_is_configurable(server, make_synth):
    synth = make_synth(max_request_chars=40)
    await speak(synth, "One short sentence here. Another short one here. And a third.")
    assert [r.text for r in server.tts_requests] == [
        "One short sentence here.",
        "Another short one here. And a third.",
    ]


# -- the byte stream -------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [1, 3, 1001, 4097])
async def test_odd_http_chunks_make_clean_audio(server, make_synth, chunk_bytes):
    server.chunk_bytes = chunk_bytes
    server.seconds_per_char = 0.005 if chunk_bytes == 1 else 0.02
    clips = await speak(make_synth())
    got = np.frombuffer(joined(clips), "<i2").astype(np.int32)
    want = discord_audio(server.pcm_for(SENTENCE))
    assert len(got) == len(want)
    # A sample split across chunks and misjoined would be loud noise, not a 2-LSB difference.
    assert np.abs(got - want).max() <= 4
    assert server.last_tts.bytes_sent == len(server.pcm_for(SENTENCE))


async def test_stray_byte_is_not_glued_to_the_next_request(server, make_synth):
    server.stray_byte = True
    server.chunk_bytes = 999
    server.seconds_per_char = 0.001
    text = long_text(120)
    clips = await speak(make_synth(max_request_chars=2_500), text)
    requests = server.tts_requests
    assert len(requests) == 3 and all(r.bytes_sent % 2 == 1 for r in requests)
    got = np.frombuffer(joined(clips), "<i2").astype(np.int32)
    want = discord_audio(b"".join(server.pcm_for(r.text) for r in requests))
    assert len(got) == len(want)
    # Gluing the odd byte to the next answer would turn every later sample into noise.
    assert np.abs(got - want).max() <= 4


async def test_first_audio_arrives_before_the_stream_ends(server, make_synth):
    server.chunk_delay = 0.05
    server.chunk_bytes = 2_000
    synth = make_synth()
    stream = synth.synthesize(SENTENCE)
    started = time.perf_counter()
    first = await anext(stream)
    first_at = time.perf_counter() - started
    rest = [clip async for clip in stream]
    total = time.perf_counter() - started
    assert first.pcm and rest
    assert first_at < total / 2, (first_at, total)


# -- failures --------------------------------------------------------------------


async def test_missing_key_or_voice(server):
    synth = ElevenLabsSynthesizer(base_url=server.url, environ={"ELEVENLABS_VOICE_ID": RACHEL})
    synth.plugin_id = PLUGIN_ID
    assert synth.unavailable_reason() == "ELEVENLABS_API_KEY is not set"
    _, error = await speak_until_error(synth, SENTENCE)
    assert isinstance(error, ConfigurationError) and "ELEVENLABS_API_KEY" in error.message
    assert synth.stats.retries == 0

    synth = ElevenLabsSynthesizer(base_url=server.url, environ={"ELEVENLABS_API_KEY": KEY})
    synth.plugin_id = PLUGIN_ID
    assert "ELEVENLABS_VOICE_ID" in synth.unavailable_reason()
    _, error = await speak_until_error(synth, SENTENCE)
    assert isinstance(error, ConfigurationError) and "voice" in error.message
    assert error.user_message.startswith("Sorry, no ElevenLabs voice is chosen")
    assert synth.stats.retries == 0
    await synth.aclose()
    assert not server.requests


async def test_rejected_key_is_clear_and_not_retried(server, make_synth):
    synth = make_synth(api_key="sk_wrong_key_0000000000")
    _, error = await speak_until_error(synth, SENTENCE)
    assert isinstance(error, ProviderStatusError) and error.status == 401
    assert "rejected the API key" in error.message and "ELEVENLABS_API_KEY" in error.message
    assert not error.retryable
    assert "credentials" in error.user_message
    assert "sk_wrong_key_0000000000" not in str(error) + error.user_message
    assert len(server.tts_requests) == 1 and synth.stats.retries == 0
    # The fake answered with ElevenLabs' error shape.
    assert server.last_tts.status == 401


async def test_server_message_echoing_the_key_is_scrubbed(server, make_synth):
    server.fail_next(401, message=f"The key {KEY} is\ninvalid", code="invalid_api_key")
    _, error = await speak_until_error(make_synth(), SENTENCE)
    assert KEY not in error.message and "***" in error.message
    assert "\n" not in error.message


async def test_quota_exceeded_is_reported_as_such(server, make_synth):
    server.fail_next(401, code="quota_exceeded", message="This request exceeds your quota.")
    synth = make_synth()
    _, error = await speak_until_error(synth, SENTENCE)
    assert "quota" in error.message and not error.retryable
    assert synth.stats.retries == 0


async def test_rate_limit_waits_for_retry_after(server, make_synth):
    server.fail_next(429, retry_after=0.3, code="too_many_concurrent_requests")
    synth = make_synth(retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001))
    clips = await speak(synth)
    assert clips
    first, second = server.tts_requests
    assert first.status == 429 and second.status == 200
    assert second.received_at - first.received_at >= 0.28, "Retry-After was not honoured"
    assert synth.stats.retries == 1


async def test_long_retry_after_is_not_waited_out(server, make_synth):
    server.fail_next(429, retry_after=120)
    synth = make_synth()
    started = time.perf_counter()
    _, error = await speak_until_error(synth, SENTENCE)
    assert time.perf_counter() - started < 2
    assert isinstance(error, ProviderStatusError) and error.status == 429
    assert error.retry_after == 120
    assert "rate-limiting" in error.user_message


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retried(server, make_synth, status):
    server.fail_next(status, times=2)
    synth = make_synth()
    clips = await speak(synth)
    assert clips and synth.stats.retries == 2
    assert [r.status for r in server.tts_requests] == [status, status, 200]


async def test_server_errors_give_up_after_the_policy(server, make_synth):
    server.fail_next(503, times=5)
    synth = make_synth()
    _, error = await speak_until_error(synth, SENTENCE)
    assert isinstance(error, ProviderStatusError) and error.status == 503
    assert len(server.tts_requests) == FAST_RETRY.attempts


@pytest.mark.parametrize("reset", [False, True])
async def test_stream_broken_mid_way_errors_after_partial_audio(server, make_synth, reset):
    full = len(server.pcm_for(SENTENCE))
    server.chunk_bytes = 1_000
    server.cut_next(after_bytes=10_000, reset=reset)
    synth = make_synth()
    clips, error = await speak_until_error(synth, SENTENCE)
    assert clips, "the audio before the break was not played"
    played = sum(c.frames for c in clips)
    assert 0 < played <= frames_48k(10_000) + 2 < frames_48k(full)
    assert isinstance(error, BadOutputError) and not error.retryable
    assert "broke mid-reply, after 0." in error.message and "s of speech" in error.message
    # Not retried: a second request would have replayed the start of the sentence.
    assert len(server.tts_requests) == 1 and synth.stats.retries == 0


async def test_stream_broken_before_any_audio_is_retried(server, make_synth):
    server.cut_next(after_bytes=0)
    synth = make_synth()
    clips = await speak(synth)
    assert len(server.tts_requests) == 2 and synth.stats.retries == 1
    expected = frames_48k(len(server.pcm_for(SENTENCE)))
    assert abs(sum(c.frames for c in clips) - expected) <= 2, "audio missing or repeated"


async def test_later_request_failing_before_audio_is_retried_alone(server, make_synth):
    server.seconds_per_char = 0.0005
    text = long_text(200)
    server.fail_next(503, skip=1)  # the second request fails, before any audio
    synth = make_synth()
    clips = await speak(synth, text)
    requests = server.tts_requests
    assert [r.status for r in requests] == [200, 503, 200, 200]
    assert requests[1].text == requests[2].text
    pieces = [requests[0], *requests[2:]]
    assert " ".join(r.text for r in pieces) == text
    source = sum(len(server.pcm_for(r.text)) for r in pieces)
    assert abs(sum(c.frames for c in clips) - frames_48k(source)) <= 2, "audio duplicated"
    assert synth.stats.retries == 1


async def test_later_request_broken_mid_way_stops_there(server, make_synth):
    server.seconds_per_char = 0.0005
    text = long_text(200)
    server.cut_next(after_bytes=2_000, skip=1)
    synth = make_synth()
    clips, error = await speak_until_error(synth, text)
    requests = server.tts_requests
    assert len(requests) == 2, "a broken request was replayed or the next one sent"
    first = len(server.pcm_for(requests[0].text))
    assert frames_48k(first) - 500 < sum(c.frames for c in clips) <= frames_48k(first + 2_000)
    assert isinstance(error, BadOutputError)


async def test_html_instead_of_audio_is_bad_output_and_not_retried(server, make_synth):
    """A proxy or captive portal answering 200 with its page: not played as noise."""
    server.bad_body_next(times=3)
    synth = make_synth()
    clips, error = await speak_until_error(synth, SENTENCE)
    assert clips == []
    assert isinstance(error, BadOutputError), error
    assert "text/html" in error.message
    assert error.user_message == "Sorry, `tts_elevenlabs` sent back something I couldn't use."
    assert len(server.tts_requests) == 1 and synth.stats.retries == 0


async def test_html_for_a_later_request_stops_there(server, make_synth):
    server.seconds_per_char = 0.0005
    text = long_text(200)
    server.bad_body_next(skip=1, times=3)
    synth = make_synth()
    clips, error = await speak_until_error(synth, text)
    assert isinstance(error, BadOutputError), error
    first = len(server.pcm_for(server.tts_requests[0].text))
    # The first request's audio (less the resampler's unflushed tail), and nothing more.
    played = sum(c.frames for c in clips)
    assert frames_48k(first) - 2_000 < played <= frames_48k(first), "the page was played"
    assert len(server.tts_requests) == 2 and synth.stats.retries == 0


async def test_connection_refused(make_synth):
    synth = make_synth(base_url=f"http://127.0.0.1:{unused_port()}")
    _, error = await speak_until_error(synth, SENTENCE)
    assert isinstance(error, ProviderConnectionError)
    assert error.provider == PLUGIN_ID
    assert synth.stats.retries == FAST_RETRY.attempts - 1


async def test_no_answer_in_time(server, make_synth):
    server.delay = 3
    synth = make_synth(timeout=0.3, retry=RetryPolicy(attempts=1))
    started = time.perf_counter()
    _, error = await speak_until_error(synth, SENTENCE)
    assert isinstance(error, ProviderTimeoutError)
    assert time.perf_counter() - started < 2


async def test_unknown_voice_and_model_are_configuration_errors(server, make_synth):
    synth = make_synth(voice_id="NoSuchVoice000000000")
    _, error = await speak_until_error(synth, SENTENCE)
    assert isinstance(error, ConfigurationError)
    assert error.message == (
        "ElevenLabs has no voice `NoSuchVoice000000000`; choose one with `!elevenlabs voices`"
        " and `!config tts_elevenlabs voice_id NAME`, or fix ELEVENLABS_VOICE_ID"
    )
    assert len(server.tts_requests) == 1

    synth = make_synth(model="eleven_imaginary_v9")
    _, error = await speak_until_error(synth, SENTENCE)
    assert isinstance(error, ConfigurationError)
    assert error.message == (
        "ElevenLabs refused the model `eleven_imaginary_v9`: A model with model ID"
        " eleven_imaginary_v9 does not exist.; fix ELEVENLABS_MODEL"
        " or `!config tts_elevenlabs model`"
    )


async def test_text_over_the_service_limit_is_refused_by_the_fake(server, make_synth):
    # What the splitting protects against: the fake, like ElevenLabs, refuses long text.
    synth = make_synth(max_request_chars=20_000)
    _, error = await speak_until_error(synth, long_text(100))
    assert isinstance(error, ProviderStatusError) and error.status == 400
    assert "the maximum for one request is 5000" in error.message and not error.retryable


# -- voices ----------------------------------------------------------------------


async def test_list_voices_follows_pages(server, make_synth):
    server.voices = [FakeVoice(f"voice{i:015d}", f"Voice {i:03d}") for i in range(230)]
    voices = await make_synth().list_voices()
    assert [v.name for v in voices] == [f"Voice {i:03d}" for i in range(230)]
    pages = [r for r in server.requests if r.path == "/v2/voices"]
    assert len(pages) == 3
    assert all(r.api_key == KEY and r.query["page_size"] == "100" for r in pages)


async def test_get_voice(server, make_synth):
    synth = make_synth()
    voice = await synth.get_voice(GEORGE)
    assert voice is not None and voice.name == "George"
    assert await synth.get_voice("NoSuchVoice000000000") is None


async def test_voice_listing_failures(server, make_synth):
    synth = make_synth()
    server.fail_next(503, endpoint="voices")
    assert await synth.list_voices()  # retried
    server.fail_next(401, endpoint="voices")
    with pytest.raises(ProviderStatusError) as caught:
        await synth.list_voices()
    assert caught.value.status == 401 and "rejected the API key" in caught.value.message


async def test_html_voice_list_is_bad_output_and_not_retried(server, make_synth):
    server.bad_body_next(endpoint="voices", times=3)
    with pytest.raises(BadOutputError) as caught:
        await make_synth().list_voices()
    assert "sent back something I couldn't use" in caught.value.user_message
    assert len([r for r in server.requests if not r.is_tts]) == 1


# -- the key stays secret --------------------------------------------------------


async def test_key_never_appears_in_logs_or_errors(server, make_synth, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "elevenlabs", "hark", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    synth = make_synth()
    assert KEY not in repr(synth)
    messages: list[str] = []

    await speak(synth)
    await synth.list_voices()
    server.fail_next(503)
    await speak(synth)
    server.fail_next(401, message=f"bad key {KEY}")
    server.cut_next(after_bytes=4_000)
    for _ in range(2):
        try:
            await speak(synth)
        except ProviderError as error:
            messages += [str(error), error.message, error.user_message, repr(error)]
    wrong = make_synth(api_key=KEY[::-1])
    try:
        await speak(wrong)
    except ProviderError as error:
        messages += [str(error), error.user_message]

    assert len(messages) >= 6
    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert any(r.name.startswith("hark.provider") for r in caplog.records)
    for text in [caplog.text, *messages]:
        assert KEY not in text and KEY[::-1] not in text
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in str(record.exc_info or "")
