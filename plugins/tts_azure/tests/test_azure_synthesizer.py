"""AzureSynthesizer against the loopback Azure TTS server: what it sends, what it yields,
and how every failure reaches the caller (through the core's public ``synthesize``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from azure_support import KEY, PLUGIN_ID, joined, stereo
from hark_tts_azure import DEFAULT_VOICE, OUTPUT_FORMAT, AzureSynthesizer, PcmToDiscord
from hark_tts_azure.synthesizer import USER_AGENT

from hark import AudioClip
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


async def collect(stream) -> list[AudioClip]:
    async with asyncio.timeout(10):
        return [clip async for clip in stream]


async def collect_until_error(stream) -> tuple[list[AudioClip], ProviderError]:
    clips: list[AudioClip] = []
    async with asyncio.timeout(10):
        try:
            async for clip in stream:
                clips.append(clip)
        except ProviderError as exc:
            return clips, exc
    raise AssertionError("the stream ended without an error")


def assert_secret_free(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        assert KEY[:12] not in text


# -- configuration -------------------------------------------------------


def test_configuration_from_environment() -> None:
    synth = AzureSynthesizer(
        environ={
            "AZURE_SPEECH_KEY": KEY,
            "AZURE_SPEECH_REGION": " WestEurope ",
            "AZURE_SPEECH_VOICE": "en-GB-SoniaNeural",
            "AZURE_SPEECH_TIMEOUT": "12",
        }
    )
    assert synth.unavailable_reason() is None
    assert synth.base_url == "https://westeurope.tts.speech.microsoft.com"
    assert synth.synthesis_url.endswith("/cognitiveservices/v1")
    assert synth.voices_url.endswith("/cognitiveservices/voices/list")
    assert synth.default_voice == "en-GB-SoniaNeural"
    assert synth.timeout == 12
    assert synth.where == "region westeurope"
    assert_secret_free(repr(synth))


def test_defaults() -> None:
    synth = AzureSynthesizer(environ={"AZURE_SPEECH_KEY": KEY, "AZURE_SPEECH_REGION": "eastus"})
    assert synth.default_voice == DEFAULT_VOICE == "en-US-AmberNeural"
    assert (synth.sample_rate, synth.channels) == (48_000, 2)
    assert synth.headers(synthesis=True)["X-Microsoft-OutputFormat"] == OUTPUT_FORMAT
    assert synth.default_priority > 0  # above local fallback voices


@pytest.mark.parametrize(
    ("endpoint", "base"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        (
            "https://eastus.tts.speech.microsoft.com/cognitiveservices/v1",
            "https://eastus.tts.speech.microsoft.com",
        ),
        (
            "https://proxy.example/azure/cognitiveservices/voices/list",
            "https://proxy.example/azure",
        ),
        # The resource endpoint the Azure portal shows: speech lives on the tts host.
        (
            "https://westus2.api.cognitive.microsoft.com/",
            "https://westus2.tts.speech.microsoft.com",
        ),
    ],
)
def test_endpoint_forms(endpoint: str, base: str) -> None:
    synth = AzureSynthesizer(api_key=KEY, endpoint=endpoint, region="ignored", environ={})
    assert synth.unavailable_reason() is None
    assert synth.base_url == base


def test_endpoint_credentials_are_not_shown() -> None:
    synth = AzureSynthesizer(api_key=KEY, endpoint="https://user:pw@host.example/tts", environ={})
    assert synth.public_base_url == "https://host.example/tts"
    assert "pw" not in repr(synth) and "pw" not in synth.where


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({"AZURE_SPEECH_REGION": "westeurope"}, "AZURE_SPEECH_KEY is not set"),
        ({"AZURE_SPEECH_KEY": KEY}, "AZURE_SPEECH_REGION (or AZURE_SPEECH_ENDPOINT) is not set"),
        ({"AZURE_SPEECH_KEY": KEY, "AZURE_SPEECH_REGION": "west-europe!"}, "region name"),
        ({"AZURE_SPEECH_KEY": KEY, "AZURE_SPEECH_ENDPOINT": "ftp://x"}, "http(s) URL"),
        ({"AZURE_SPEECH_KEY": KEY, "AZURE_SPEECH_ENDPOINT": "http://h:99999"}, "port"),
    ],
)
async def test_unconfigured_is_a_configuration_error(azure, environ, reason) -> None:
    synth = AzureSynthesizer(environ=environ)
    synth.plugin_id = PLUGIN_ID
    assert reason in synth.unavailable_reason()
    started = time.perf_counter()
    with pytest.raises(ConfigurationError) as caught:
        await collect(synth.synthesize(SENTENCE))
    assert time.perf_counter() - started < 0.5  # not retried with backoff
    assert caught.value.provider == PLUGIN_ID
    assert "not set up" in caught.value.user_message
    with pytest.raises(ConfigurationError):
        await synth.list_voices()
    assert synth.stats.retries == 0
    assert azure.requests == []


# -- what is sent ----------------------------------------------------------


async def test_request_headers_and_ssml(azure, make_synth) -> None:
    text = 'Tom & Jerry\'s "big" <adventure> </voice> costs < $5'
    clips = await collect(make_synth().synthesize(text))
    assert clips
    request = azure.last_synthesis
    assert request.key == KEY
    assert request.headers["Content-Type"] == "application/ssml+xml"
    assert request.headers["X-Microsoft-OutputFormat"] == "raw-48khz-16bit-mono-pcm"
    assert request.headers["User-Agent"] == USER_AGENT
    assert len(USER_AGENT) < 255
    # The server parsed the SSML with xml.etree and got the text back verbatim.
    assert request.ssml.text == text
    assert request.ssml.voice == DEFAULT_VOICE
    assert request.ssml.lang == "en-US"
    assert request.ssml.rate is None and request.ssml.pitch is None
    assert b"&lt;adventure&gt;" in request.body and b"&amp;" in request.body


async def test_audio_is_the_servers_pcm_in_stereo(azure, make_synth) -> None:
    # Odd chunk sizes with pauses between them: pieces end mid-sample.
    azure.chunk_bytes = 4801
    azure.chunk_delay = 0.001
    clips = await collect(make_synth().synthesize(SENTENCE))
    expected = azure.expected_pcm(SENTENCE, DEFAULT_VOICE)
    assert joined(clips) == stereo(expected)
    for clip in clips:
        assert (clip.sample_rate, clip.channels) == (48_000, 2)
        assert clip.pcm and clip.duration <= 0.5 + 1e-9
    assert len(clips) > 1


async def test_first_clip_arrives_before_the_stream_ends(azure, make_synth) -> None:
    azure.chunk_delay = 0.02  # about 0.4 s for the whole sentence
    started = time.perf_counter()
    stream = make_synth().synthesize(SENTENCE)
    first = await anext(stream)
    first_at = time.perf_counter() - started
    rest = await collect(stream)
    total = time.perf_counter() - started
    assert first.pcm and rest
    assert first_at < total / 3, (first_at, total)


async def test_voice_setting_and_locale(azure, make_synth) -> None:
    synth = make_synth(environ={"AZURE_SPEECH_VOICE": "de-DE-KatjaNeural"})
    await collect(synth.synthesize("Guten Tag"))
    assert azure.last_synthesis.ssml.voice == "de-DE-KatjaNeural"
    assert azure.last_synthesis.ssml.lang == "de-DE"
    # A locale with a region subtag, taken from the voice list once it is known.
    synth = make_synth(environ={"AZURE_SPEECH_VOICE": "zh-CN-shaanxi-XiaoniNeural"})
    await synth.list_voices()
    await collect(synth.synthesize("你好"))
    assert azure.last_synthesis.ssml.lang == "zh-CN-shaanxi"


async def test_per_server_voice_and_prosody(azure, make_synth, hark_settings_store) -> None:
    synth = make_synth()
    synth.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    store = hark_settings_store
    guild, other = 1001, 2002
    await store.set_value(PLUGIN_ID, "voice", "en-GB-RyanNeural", "server", guild)
    await store.set_value(PLUGIN_ID, "rate", "+50%", "server", guild)
    await store.set_value(PLUGIN_ID, "pitch", "-2ST", "server", guild)

    fast = await collect(synth.synthesize(SENTENCE, guild_id=guild))
    request = azure.last_synthesis.ssml
    assert (request.voice, request.lang, request.rate, request.pitch) == (
        "en-GB-RyanNeural",
        "en-GB",
        "+50%",
        "-2st",
    )
    assert joined(fast) == stereo(
        azure.expected_pcm(SENTENCE, "en-GB-RyanNeural", rate="+50%", pitch="-2st")
    )

    normal = await collect(synth.synthesize(SENTENCE, guild_id=other))
    request = azure.last_synthesis.ssml
    assert (request.voice, request.rate, request.pitch) == (DEFAULT_VOICE, None, None)
    # The faster rate reached the server: the same sentence came back shorter.
    assert sum(c.duration for c in fast) < sum(c.duration for c in normal) * 0.8

    await store.reset_value(PLUGIN_ID, "voice", "server", guild)
    assert synth.resolve(guild).values.voice == DEFAULT_VOICE
    assert str(synth.resolve(guild).origin("voice")) == "default"


async def test_blank_text_sends_nothing(azure, make_synth) -> None:
    assert await collect(make_synth().synthesize("  \n ")) == []
    assert azure.requests == []


async def test_connection_pool_is_reused_and_closed(azure, make_synth) -> None:
    synth = make_synth()
    await collect(synth.synthesize("one"))
    session = synth._session()
    await collect(synth.synthesize("two"))
    assert synth._session() is session
    await synth.aclose()
    assert session.closed
    await collect(synth.synthesize("three"))  # a new pool after closing
    assert len(azure.synthesis_requests) == 3


# -- the PCM converter -----------------------------------------------------


@pytest.mark.parametrize("piece", [1, 3, 7, 4801])
def test_pcm_converter_keeps_the_odd_byte(piece: int) -> None:
    mono = bytes(range(256)) * 40  # 10,240 bytes: 5,120 samples
    converter = PcmToDiscord(max_clip_seconds=0.01)
    clips = []
    for start in range(0, len(mono), piece):
        clips += converter.feed(mono[start : start + piece])
    clips += converter.finish()
    assert joined(clips) == stereo(mono)
    assert all(c.pcm and c.frames <= 480 for c in clips)
    assert converter.received == len(mono)


def test_pcm_converter_drops_a_trailing_half_sample() -> None:
    converter = PcmToDiscord()
    clips = converter.feed(b"\x01\x02\x03")
    clips += converter.finish()
    assert joined(clips) == b"\x01\x02\x01\x02"


# -- failures ----------------------------------------------------------------


async def test_wrong_key_is_a_clear_error_not_retried(azure, make_synth) -> None:
    synth = make_synth(api_key="f" * 32)
    with pytest.raises(ProviderStatusError) as caught:
        await collect(synth.synthesize(SENTENCE))
    error = caught.value
    assert error.status == 401 and not error.retryable
    assert "rejected the key" in error.message
    assert "AZURE_SPEECH_KEY" in error.message
    assert "rejected the bot's credentials" in error.user_message
    assert len(azure.requests) == 1
    assert_secret_free(str(error), error.user_message)
    assert "f" * 32 not in str(error) + error.user_message


async def test_forbidden_is_treated_like_a_bad_key(azure, make_synth) -> None:
    azure.fail_next(403)
    with pytest.raises(ProviderStatusError) as caught:
        await collect(make_synth().synthesize(SENTENCE))
    assert caught.value.status == 403 and "rejected the key" in caught.value.message
    assert len(azure.requests) == 1


async def test_rate_limit_waits_for_retry_after(azure, make_synth) -> None:
    azure.fail_next(429, retry_after=0.3)
    synth = make_synth()
    started = time.perf_counter()
    clips = await collect(synth.synthesize(SENTENCE))
    elapsed = time.perf_counter() - started
    assert clips
    assert len(azure.synthesis_requests) == 2
    gap = azure.synthesis_requests[1].received_at - azure.synthesis_requests[0].received_at
    assert gap >= 0.3 and elapsed >= 0.3
    assert synth.stats.retries == 1


async def test_rate_limit_with_a_long_retry_after_fails_at_once(azure, make_synth) -> None:
    azure.fail_next(429, retry_after=3600)
    started = time.perf_counter()
    with pytest.raises(ProviderStatusError) as caught:
        await collect(make_synth().synthesize(SENTENCE))
    assert time.perf_counter() - started < 1
    assert caught.value.status == 429 and caught.value.retry_after == 3600
    assert "exceeded the rate limit" in caught.value.message  # Azure's own words
    assert "rate-limiting" in caught.value.user_message


async def test_server_errors_are_retried(azure, make_synth) -> None:
    azure.fail_next(500)
    azure.fail_next(503)
    synth = make_synth()
    clips = await collect(synth.synthesize(SENTENCE))
    assert joined(clips) == stereo(azure.expected_pcm(SENTENCE, DEFAULT_VOICE))
    assert [r.status for r in azure.synthesis_requests] == [500, 503, 200]
    assert synth.stats.retries == 2


async def test_server_errors_give_up_after_the_last_attempt(azure, make_synth) -> None:
    azure.fail_next(502, times=5, message="upstream gateway trouble")
    with pytest.raises(ProviderStatusError) as caught:
        await collect(make_synth().synthesize(SENTENCE))
    assert caught.value.status == 502
    assert "upstream gateway trouble" in caught.value.message
    assert len(azure.synthesis_requests) == 3  # FAST_RETRY: three attempts


async def test_stream_cut_midway_errors_after_partial_audio(azure, make_synth) -> None:
    azure.chunk_delay = 0.001
    azure.cut_next(after_bytes=19_200)  # 0.2 s of a 0.94 s sentence
    clips, error = await collect_until_error(make_synth().synthesize(SENTENCE))
    assert clips, "the audio before the cut was handed on"
    received = joined(clips)
    assert 0 < len(received) <= 2 * 19_200
    assert received == stereo(azure.expected_pcm(SENTENCE, DEFAULT_VOICE))[: len(received)]
    assert isinstance(error, BadOutputError) and not error.retryable
    assert "broke mid-reply, after 0.20s of audio" in error.message
    # Audio already reached the listener: replaying it would repeat words, so no retry.
    assert len(azure.synthesis_requests) == 1


async def test_stream_cut_before_any_audio_is_retried(azure, make_synth) -> None:
    azure.cut_next(after_bytes=0)
    clips = await collect(make_synth().synthesize(SENTENCE))
    assert joined(clips) == stereo(azure.expected_pcm(SENTENCE, DEFAULT_VOICE))
    assert len(azure.synthesis_requests) == 2


async def test_unknown_voice_is_refused_not_retried(azure, make_synth) -> None:
    with pytest.raises(ProviderStatusError) as caught:
        synth = make_synth(environ={"AZURE_SPEECH_VOICE": "xx-XX-NobodyNeural"})
        await collect(synth.synthesize(SENTENCE))
    assert caught.value.status == 400
    assert "xx-XX-NobodyNeural" in caught.value.message
    assert len(azure.requests) == 1


async def test_connection_refused(make_synth) -> None:
    synth = make_synth(endpoint=f"http://127.0.0.1:{unused_port()}")
    with pytest.raises(ProviderConnectionError) as caught:
        await collect(synth.synthesize(SENTENCE))
    assert "could not connect" in caught.value.message
    assert synth.stats.retries == 2


async def test_no_answer_is_a_timeout(azure, make_synth) -> None:
    azure.delay = 2.0
    synth = make_synth(timeout=0.2)
    synth.retry = RetryPolicy(attempts=1)
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError):
        await collect(synth.synthesize(SENTENCE))
    assert time.perf_counter() - started < 1.5


@contextlib.asynccontextmanager
async def one_route_server(handler) -> AsyncIterator[str]:
    """A loopback server answering the synthesis path with ``handler``; yields its URL."""
    app = web.Application()
    app.router.add_post("/cognitiveservices/v1", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_empty_audio_is_bad_output(make_synth) -> None:
    async def silent(request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="application/octet-stream")

    async with one_route_server(silent) as url:
        synth = make_synth(endpoint=url)
        with pytest.raises(BadOutputError) as caught:
            await collect(synth.synthesize("hi"))
    assert "no audio" in caught.value.message
    assert synth.stats.retries == 0


async def test_html_instead_of_audio_is_bad_output(make_synth) -> None:
    async def portal(request: web.Request) -> web.Response:
        return web.Response(text="<html>captive portal</html>", content_type="text/html")

    async with one_route_server(portal) as url:
        with pytest.raises(BadOutputError) as caught:
            await collect(make_synth(endpoint=url).synthesize("hi"))
    assert "text/html" in caught.value.message


async def test_html_page_from_the_service_is_bad_output_and_not_retried(azure, make_synth) -> None:
    azure.bad_body_next(times=3)
    synth = make_synth()
    clips, error = await collect_until_error(synth.synthesize(SENTENCE))
    assert clips == []
    assert isinstance(error, BadOutputError), error
    assert "text/html" in error.message
    assert error.user_message == "Sorry, `tts_azure` sent back something I couldn't use."
    assert len(azure.synthesis_requests) == 1 and synth.stats.retries == 0


async def test_html_voice_list_is_bad_output_and_not_retried(azure, make_synth) -> None:
    azure.bad_body_next(endpoint="voices", times=3)
    with pytest.raises(BadOutputError) as caught:
        await make_synth().list_voices(refresh=True)
    assert "sent back something I couldn't use" in caught.value.user_message
    assert len(azure.voices_requests) == 1


async def test_the_key_never_reaches_logs_or_messages(azure, make_synth, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    synth = make_synth()
    wrong = make_synth(api_key="a" * 32)
    messages: list[str] = []

    await collect(synth.synthesize(SENTENCE))
    azure.fail_next(429, retry_after=0.01)
    azure.fail_next(500)
    await collect(synth.synthesize(SENTENCE))
    for scenario in ("401", "cut", "502", "voices401"):
        try:
            if scenario == "401":
                await collect(wrong.synthesize(SENTENCE))
            elif scenario == "cut":
                azure.cut_next(after_bytes=4800)
                await collect(synth.synthesize(SENTENCE))
            elif scenario == "502":
                azure.fail_next(502, times=3, message=f"echoing the key {KEY} back")
                await collect(synth.synthesize(SENTENCE))
            else:
                await wrong.list_voices()
        except ProviderError as exc:
            messages += [str(exc), exc.message, exc.user_message, repr(exc)]
        else:
            raise AssertionError(f"{scenario} did not fail")
    assert len(messages) == 16
    assert any("***" in m for m in messages)  # the echoed key was redacted
    for record in caplog.records:
        messages.append(record.getMessage())
        if record.exc_info:
            messages.append(logging.Formatter().formatException(record.exc_info))
    assert_secret_free(caplog.text, *messages, repr(synth))
    assert "a" * 32 not in caplog.text and all("a" * 32 not in m for m in messages)


# -- voices ------------------------------------------------------------------


async def test_voice_list(azure, make_synth) -> None:
    synth = make_synth()
    voices = await synth.list_voices()
    assert [v.short_name for v in voices] == sorted(
        (v["ShortName"] for v in azure.voices), key=str.lower
    )
    jenny = next(v for v in voices if v.short_name == "en-US-JennyNeural")
    assert (jenny.locale, jenny.gender, jenny.display_name) == ("en-US", "Female", "Jenny")
    assert jenny.locale_name == "English (United States)"
    assert "cheerful" in jenny.styles and jenny.words_per_minute == 152
    assert azure.voices_requests[-1].key == KEY
    assert azure.voices_requests[-1].headers["User-Agent"] == USER_AGENT

    # Cached: a second look costs no request, until refreshed.
    await synth.list_voices()
    assert len(azure.voices_requests) == 1
    await synth.list_voices(refresh=True)
    assert len(azure.voices_requests) == 2

    assert (await synth.find_voice("EN-gb-ryanneural")).short_name == "en-GB-RyanNeural"
    assert await synth.find_voice("en-GB-Nobody") is None


def test_voice_matching() -> None:
    from fake_azure import DEFAULT_VOICES
    from hark_tts_azure import Voice

    voices = [Voice.from_json(v) for v in DEFAULT_VOICES]

    def names(*words: str) -> set[str]:
        return {v.short_name for v in voices if v.matches(words)}

    assert names("en-GB") == {"en-GB-RyanNeural", "en-GB-SoniaNeural"}
    assert names("en", "male") == {
        "en-US-GuyNeural",
        "en-US-AndrewMultilingualNeural",
        "en-GB-RyanNeural",
    }
    assert names("german") == {"de-DE-KatjaNeural"}
    assert names("FEMALE", "united", "kingdom") == {"en-GB-SoniaNeural"}
    assert names("七海") == {"ja-JP-NanamiNeural"}
    assert names("zh") == {"zh-CN-shaanxi-XiaoniNeural"}
    assert len(names()) == len(voices)
    assert Voice.from_json({"Locale": "en-US"}) is None
    assert Voice.from_json("nonsense") is None


async def test_voice_list_failures(azure, make_synth) -> None:
    synth = make_synth()
    azure.fail_next(503, endpoint="voices")
    assert await synth.list_voices()  # retried
    assert [r.status for r in azure.voices_requests] == [503, 200]

    azure.voices = {"not": "a list"}  # type: ignore[assignment]
    with pytest.raises(BadOutputError):
        await synth.list_voices(refresh=True)

    with pytest.raises(ProviderStatusError) as caught:
        await make_synth(api_key="b" * 32).list_voices()
    assert caught.value.status == 401
