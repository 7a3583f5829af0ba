"""The OpenAI transcriber through the REAL ``openai`` client against the loopback fake
of ``POST /v1/audio/transcriptions``: what is sent, and how failures are mapped."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from hark_stt_whisper import OpenAIWhisperTranscriber
from whisper_support import KEY, PLUGIN_ID

from hark import (
    AudioClip,
    BadOutputError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeoutError,
    RetryPolicy,
)
from hark.audio import convert
from hark.testing.fakes import silence, tone
from hark.testing.loopback import unused_port


def discord_clip(seconds: float = 1.0) -> AudioClip:
    return convert(tone(seconds, 48_000), 48_000, 2)


@pytest.fixture(autouse=True)
def _debug_logs(caplog):
    """Every test here runs with DEBUG logs captured; none may contain the key."""
    caplog.set_level(logging.DEBUG)
    yield
    assert KEY not in caplog.text
    assert KEY[8:24] not in caplog.text


def assert_no_key(error: ProviderError) -> None:
    for text in (str(error), error.message, error.user_message, repr(error)):
        assert KEY not in text


async def test_sends_a_valid_wav_with_model_prompt_and_language(server, make_remote):
    server.reply = "  Quillothy says hi  "
    transcriber = make_remote()
    transcript = await transcriber.transcribe(
        discord_clip(1.25), prompt="Quillothy, Alice", language="en"
    )
    assert transcript.text == "Quillothy says hi"
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(1.25)
    (request,) = server.requests
    assert request.path == "/v1/audio/transcriptions"
    assert request.bearer == KEY
    assert request.model == "whisper-1"
    assert request.prompt == "Quillothy, Alice"
    assert request.language == "en"
    assert request.response_format == "json"
    assert request.filename == "speech.wav" and request.content_type == "audio/wav"
    wav = request.wav  # a real WAV file: 16 kHz mono, the clip's length
    assert (wav.sample_rate, wav.channels) == (16_000, 1)
    assert wav.duration == pytest.approx(1.25, abs=0.01)


async def test_defaults_leave_optional_fields_out(server, make_remote):
    transcriber = make_remote()
    await transcriber.transcribe(tone(0.5, 16_000), prompt="   ")
    request = server.last
    assert "prompt" not in request.fields and "language" not in request.fields
    assert set(request.fields) == {"model", "response_format"}


async def test_server_settings_pick_model_and_language(server, make_remote, hark_settings_store):
    transcriber = make_remote(openai_model="gpt-4o-mini-transcribe")
    transcriber.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    await transcriber.transcribe(tone(0.5, 16_000), guild_id=1)
    assert (server.last.model, server.last.language) == ("gpt-4o-mini-transcribe", None)
    await hark_settings_store.set_value(PLUGIN_ID, "openai_model", "gpt-4o-transcribe", "server", 1)
    await hark_settings_store.set_value(PLUGIN_ID, "language", "fr", "server", 1)
    await transcriber.transcribe(tone(0.5, 16_000), guild_id=1)
    assert (server.last.model, server.last.language) == ("gpt-4o-transcribe", "fr")


async def test_silence_is_not_sent(server, make_remote):
    transcript = await make_remote().transcribe(silence(1.0, 48_000, 2))
    assert transcript.text == "" and server.requests == []


async def test_invalid_key_is_clear_and_not_retried(server, make_remote):
    transcriber = make_remote(api_key="sk-wrong-key-0000000000")
    with pytest.raises(ProviderStatusError) as caught:
        await transcriber.transcribe(discord_clip())
    error = caught.value
    assert error.status == 401 and not error.retryable
    assert "OPENAI_API_KEY" in error.message
    assert "credentials" in error.user_message
    assert "sk-wrong-key" not in str(error)
    assert len(server.requests) == 1


async def test_rate_limit_waits_for_retry_after(server, make_remote):
    server.fail_next(429, retry_after=0.3)
    transcriber = make_remote()
    started = time.perf_counter()
    transcript = await transcriber.transcribe(discord_clip())
    assert transcript.text
    assert time.perf_counter() - started >= 0.3
    assert len(server.requests) == 2
    assert transcriber.stats.retries == 1


async def test_rate_limit_too_long_to_wait(server, make_remote):
    server.fail_next(429, retry_after=120, times=3)
    with pytest.raises(ProviderStatusError) as caught:
        await make_remote().transcribe(discord_clip())
    assert caught.value.status == 429 and caught.value.retry_after == 120
    assert "rate-limiting" in caught.value.user_message
    assert len(server.requests) == 1
    assert_no_key(caught.value)


async def test_server_errors_are_retried_then_reported(server, make_remote):
    server.fail_next(502)
    assert (await make_remote().transcribe(discord_clip())).text
    server.clear()
    server.fail_next(503, times=10, message=f"upstream down (token {KEY})")
    with pytest.raises(ProviderStatusError) as caught:
        await make_remote().transcribe(discord_clip())
    assert caught.value.status == 503
    assert len(server.requests) == 3  # FAST_RETRY: three tries
    assert "upstream down" in caught.value.message
    assert_no_key(caught.value)


async def test_bad_request_is_not_retried(server, make_remote):
    with pytest.raises(ProviderStatusError) as caught:
        await make_remote().transcribe(discord_clip(), language="xx")
    assert caught.value.status == 400 and "Invalid language" in caught.value.message
    assert len(server.requests) == 1


async def test_unknown_model_is_a_configuration_error(server, make_remote):
    with pytest.raises(ConfigurationError, match="`whisper-9` was not found") as caught:
        await make_remote(openai_model="whisper-9").transcribe(discord_clip())
    assert "`!config stt_whisper openai_model NAME`" in caught.value.message
    assert len(server.requests) == 1


async def test_clip_too_large_is_not_retried(server, make_remote):
    server.fail_next(413, times=3, message=f"Maximum content size exceeded ({KEY})")
    with pytest.raises(ProviderStatusError, match="refused the clip as too large") as caught:
        await make_remote().transcribe(discord_clip())
    assert caught.value.status == 413 and not caught.value.retryable
    assert "Maximum content size exceeded (***)" in caught.value.message
    assert_no_key(caught.value)
    assert len(server.requests) == 1


def test_a_password_in_the_base_url_is_scrubbed_too():
    transcriber = OpenAIWhisperTranscriber(
        environ={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "https://u:hunter2-pw@stt.example/v1"}
    )
    echoed = transcriber.errors.scrub(f"bad request to u:hunter2-pw@stt.example with {KEY}")
    assert echoed == "bad request to u:***@stt.example with ***"
    assert transcriber.errors.service == "stt.example"


async def test_dropped_connection(server, make_remote):
    server.drop_next(times=3)
    with pytest.raises(ProviderConnectionError) as caught:
        await make_remote().transcribe(discord_clip())
    assert caught.value.retryable
    server.drop_next()
    assert (await make_remote().transcribe(discord_clip())).text  # retried, then fine


async def test_nothing_listening():
    transcriber = OpenAIWhisperTranscriber(
        environ={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"http://127.0.0.1:{unused_port()}/v1"}
    )
    transcriber.retry = RetryPolicy(attempts=1)
    try:
        with pytest.raises(ProviderConnectionError, match="could not connect"):
            await transcriber.transcribe(discord_clip())
    finally:
        await transcriber.aclose()


async def test_slow_server_times_out(server, make_remote):
    server.delay = 2.0
    transcriber = make_remote(openai_timeout=0.3)
    transcriber.retry = RetryPolicy(attempts=1)
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError):
        await transcriber.transcribe(discord_clip())
    assert time.perf_counter() - started < 1.5


async def test_malformed_answer(server, make_remote):
    server.malformed_next()
    with pytest.raises(BadOutputError):
        await make_remote().transcribe(discord_clip())
    assert len(server.requests) == 1


async def test_html_page_is_bad_output_not_a_transcript(server, make_remote):
    """A proxy or captive portal answering 200 with its page: never taken as speech."""
    server.bad_body_next(times=3)
    transcriber = make_remote()
    with pytest.raises(BadOutputError, match="not JSON") as caught:
        await transcriber.transcribe(discord_clip())
    assert caught.value.user_message == (
        "Sorry, `stt_whisper:openai` sent back something I couldn't use."
    )
    assert len(server.requests) == 1
    assert transcriber.stats.retries == 0


async def test_missing_key_for_openai(server):
    transcriber = OpenAIWhisperTranscriber(environ={})
    assert transcriber.unavailable_reason() == "OPENAI_API_KEY is not set"
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY is not set"):
        await transcriber.transcribe(discord_clip())
    assert transcriber.stats.retries == 0


async def test_keyless_local_server(server, make_remote):
    # A self-hosted OpenAI-compatible server may need no key.
    server.api_key = None
    transcriber = make_remote(api_key="")
    assert transcriber.unavailable_reason() is None
    assert (await transcriber.transcribe(discord_clip())).text
    assert KEY not in (server.last.headers.get("Authorization") or "")


async def test_key_never_in_repr_or_logs(server, make_remote):
    transcriber = make_remote()
    server.fail_next(401)
    with pytest.raises(ProviderStatusError):
        await transcriber.transcribe(discord_clip())
    assert KEY not in repr(transcriber) and KEY not in repr(transcriber.config)
    assert KEY not in repr(server.last)


async def test_cancel_mid_request_frees_the_client(server, make_remote):
    server.delay = 0.5
    transcriber = make_remote()
    task = asyncio.create_task(transcriber.transcribe(discord_clip()))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server.delay = 0
    assert (await transcriber.transcribe(discord_clip())).text
