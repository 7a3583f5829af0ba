"""The core's provider wrappers (``Provider._call`` / ``_stream``): deadlines, retries, metrics."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from hark import (
    AudioClip,
    BadOutputError,
    ContextPart,
    ContextProvider,
    ContextRequest,
    Generator,
    PromptMessage,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeoutError,
    Synthesizer,
    Transcriber,
    Transcript,
)
from hark.providers import LatencyStats, RetryPolicy
from hark.providers.errors import ConfigurationError, parse_retry_after, retry_after_from
from hark.testing.fakes import (
    FakeContextProvider,
    FakeGenerator,
    FakeSynthesizer,
    FakeTranscriber,
    tone,
)

HELLO = [PromptMessage("user", "hello")]
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)
ONCE = RetryPolicy(attempts=1)
CLIP = tone(0.05, 16_000)


async def collect(stream):
    return [item async for item in stream]


# -- retries -----------------------------------------------------------------


async def test_connection_errors_are_retried_until_success() -> None:
    gen = FakeGenerator("ok", fail_with=[ProviderConnectionError("refused")] * 2, retry=FAST)
    assert await gen.complete(HELLO) == "ok"
    assert gen.calls == 3
    assert (gen.stats.calls, gen.stats.failures, gen.stats.retries) == (3, 2, 2)


async def test_gives_up_after_policy_attempts_with_the_last_error() -> None:
    errors = [ProviderConnectionError(f"refused {i}") for i in range(5)]
    stt = FakeTranscriber(fail_with=errors, retry=RetryPolicy(attempts=4, base_delay=0.001))
    with pytest.raises(ProviderConnectionError) as caught:
        await stt.transcribe(CLIP)
    assert stt.calls == 4
    assert caught.value is errors[3]
    assert stt.stats.retries == 3 and stt.stats.failures == 4


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(status: int) -> None:
    stt = FakeTranscriber(fail_with=[ProviderStatusError("busy", status=status)], retry=FAST)
    assert (await stt.transcribe(CLIP)).text == "hello world"
    assert stt.calls == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(status: int) -> None:
    stt = FakeTranscriber(fail_with=[ProviderStatusError("no", status=status)], retry=FAST)
    with pytest.raises(ProviderStatusError) as caught:
        await stt.transcribe(CLIP)
    assert caught.value.status == status
    assert stt.calls == 1 and stt.stats.retries == 0


@pytest.mark.parametrize(
    "error",
    [
        BadOutputError("garbage"),
        ConfigurationError("OPENROUTER_API_KEY is not set"),
        ProviderError("plain"),
    ],
)
async def test_non_retryable_errors_fail_at_once(error: ProviderError) -> None:
    stt = FakeTranscriber(fail_with=[error], retry=FAST)
    with pytest.raises(type(error)):
        await stt.transcribe(CLIP)
    assert stt.calls == 1


async def test_backoff_waits_between_tries() -> None:
    policy = RetryPolicy(attempts=2, base_delay=0.1, max_delay=0.1)
    stt = FakeTranscriber(fail_with=[ProviderConnectionError("refused")], retry=policy)
    started = time.monotonic()
    await stt.transcribe(CLIP)
    # full jitter in [ceiling / 2, ceiling]
    assert time.monotonic() - started >= 0.045


def test_backoff_delays_grow_exponentially_within_bounds() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=4.0)
    error = ProviderConnectionError("x")
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        delays = [policy.delay(attempt, error) for _ in range(50)]
        assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays), attempt
    assert policy.delay(10, error) is None
    assert policy.delay(1, ProviderStatusError("no", status=401)) is None


async def test_retry_after_is_honoured() -> None:
    error = ProviderStatusError("slow down", status=429, retry_after=0.25)
    gen = FakeGenerator("ok", fail_with=[error], retry=FAST)
    started = time.monotonic()
    assert await gen.complete(HELLO) == "ok"
    assert time.monotonic() - started >= 0.24  # FAST alone would wait ~1 ms
    assert gen.calls == 2


async def test_retry_after_on_5xx_is_honoured_too() -> None:
    error = ProviderStatusError("maintenance", status=503, retry_after=0.2)
    stt = FakeTranscriber(fail_with=[error], retry=FAST)
    started = time.monotonic()
    await stt.transcribe(CLIP)
    assert time.monotonic() - started >= 0.19


async def test_retry_after_beyond_the_maximum_is_not_waited_out() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.001, max_retry_after=1.0)
    error = ProviderStatusError("quota", status=429, retry_after=60)
    stt = FakeTranscriber(fail_with=[error], retry=policy)
    started = time.monotonic()
    with pytest.raises(ProviderStatusError) as caught:
        await stt.transcribe(CLIP)
    assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == 60 and stt.calls == 1


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("2", 2.0), ("0.5", 0.5), (3, 3.0), ("-4", 0.0), (None, None), ("soon", None)],
)
def test_parse_retry_after(raw, seconds) -> None:
    assert parse_retry_after(raw) == seconds


def test_parse_retry_after_http_date_is_left_to_backoff() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "2", "retry-after-ms": "900"}, 2.0),
        ({"retry-after": "later", "retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_from_headers(headers, seconds) -> None:
    assert retry_after_from(headers) == seconds


# -- deadlines and unexpected errors ------------------------------------------


async def test_deadline_gives_timeout_error() -> None:
    stt = FakeTranscriber(delay=5, timeout=0.05, retry=ONCE)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as caught:
        await stt.transcribe(CLIP)
    assert time.monotonic() - started < 2
    assert caught.value.provider == stt.id
    assert "0.05s" in caught.value.message


async def test_timeouts_are_retried() -> None:
    stt = FakeTranscriber(delay=5, timeout=0.03, retry=RetryPolicy(attempts=2, base_delay=0.001))
    with pytest.raises(ProviderTimeoutError):
        await stt.transcribe(CLIP)
    assert stt.calls == 2
    assert (stt.stats.calls, stt.stats.timeouts, stt.stats.retries) == (2, 2, 1)


async def test_unexpected_exception_becomes_provider_error_without_its_text(caplog) -> None:
    leak = "sk-live-very-secret https://api.example/v1?key=abc"
    stt = FakeTranscriber(fail_with=[RuntimeError(leak)], retry=FAST)
    with (
        caplog.at_level(logging.ERROR, logger="hark.provider"),
        pytest.raises(ProviderError) as caught,
    ):
        await stt.transcribe(CLIP)
    error = caught.value
    assert type(error) is ProviderError
    assert "RuntimeError" in error.message
    for text in (str(error), error.message, error.user_message, repr(error)):
        assert "sk-live" not in text and "api.example" not in text
    assert stt.calls == 1, "a plugin bug is not retried"
    # ... and the full story is logged for the operator, under the provider's logger
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)


async def test_provider_errors_get_the_provider_id() -> None:
    error = ProviderStatusError("bad", status=400)
    stt = FakeTranscriber(fail_with=[error], name="whisper")
    stt.plugin_id = "stt_whisper"
    with pytest.raises(ProviderStatusError):
        await stt.transcribe(CLIP)
    assert error.provider == "stt_whisper:whisper"
    kept = ProviderStatusError("bad", status=400, provider="upstream")
    stt2 = FakeTranscriber(fail_with=[kept])
    with pytest.raises(ProviderStatusError):
        await stt2.transcribe(CLIP)
    assert kept.provider == "upstream"


async def test_cancellation_is_not_turned_into_a_provider_error() -> None:
    stt = FakeTranscriber(delay=5)
    task = asyncio.create_task(stt.transcribe(CLIP))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- streams -----------------------------------------------------------------


async def test_stream_is_retried_before_its_first_item() -> None:
    gen = FakeGenerator(
        "Hello world", chunk_size=2, fail_with=[ProviderConnectionError("reset")], retry=FAST
    )
    deltas = await collect(gen.generate(HELLO))
    assert "".join(deltas) == "Hello world"
    assert gen.calls == 2 and gen.stats.retries == 1


async def test_stream_failing_after_output_is_not_retried() -> None:
    gen = FakeGenerator("Hello world", chunk_size=2, fail_after_chars=5, retry=FAST)
    seen: list[str] = []
    with pytest.raises(ProviderConnectionError) as caught:
        async for delta in gen.generate(HELLO):
            seen.append(delta)
    assert "".join(seen) == "Hello"  # no replay, no duplicates
    assert gen.calls == 1 and gen.stats.retries == 0
    assert caught.value.provider == gen.id
    assert (gen.stats.calls, gen.stats.failures) == (1, 1)


async def test_synthesizer_stream_failing_after_a_clip_is_not_retried() -> None:
    tts = FakeSynthesizer(fail_after_chunks=1, retry=FAST)
    clips: list[AudioClip] = []
    with pytest.raises(ProviderConnectionError):
        async for clip in tts.synthesize("One. Two. Three."):
            clips.append(clip)
    assert len(clips) == 1 and tts.calls == 1


async def test_stream_deadline_applies_per_item() -> None:
    # Each delta arrives in 0.03 s: the whole stream (0.15 s) is longer than the
    # 0.1 s deadline, but no single item is late.
    gen = FakeGenerator("abcde", chunk_size=1, delay=0.03, timeout=0.1, retry=ONCE)
    assert "".join(await collect(gen.generate(HELLO))) == "abcde"


async def test_stream_stalling_mid_way_times_out_without_retry() -> None:
    class Stalling(Generator):
        retry = FAST
        timeout = 0.05
        calls = 0

        async def _impl(self, request):
            self.calls += 1
            yield "first"
            await asyncio.sleep(5)
            yield "never"

    gen = Stalling()
    seen = []
    with pytest.raises(ProviderTimeoutError):
        async for delta in gen.generate(HELLO):
            seen.append(delta)
    assert seen == ["first"] and gen.calls == 1


async def test_stream_timing_out_before_first_item_is_retried() -> None:
    gen = FakeGenerator("ok", delay=1, timeout=0.03, retry=RetryPolicy(attempts=2, base_delay=0))
    with pytest.raises(ProviderTimeoutError):
        await collect(gen.generate(HELLO))
    assert gen.calls == 2


async def test_closing_a_stream_early_stops_it() -> None:
    gen = FakeGenerator("x" * 50, chunk_size=1)
    stream = gen.generate(HELLO)
    assert await anext(stream) == "x"
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    for _ in range(5):  # the plugin's generator is finalised by the loop soon after
        await asyncio.sleep(0)
    assert gen.open_streams == 0


async def test_closing_a_stream_closes_the_plugins_generator_at_once() -> None:
    gen = FakeGenerator("x" * 50, chunk_size=1)
    stream = gen.generate(HELLO)
    await anext(stream)
    await stream.aclose()
    assert gen.open_streams == 0


# -- output checks -------------------------------------------------------------


async def test_generator_yielding_non_str_is_bad_output() -> None:
    class Bytes(Generator):
        calls = 0

        async def _impl(self, request):
            self.calls += 1
            yield b"hi"

    gen = Bytes()
    with pytest.raises(BadOutputError, match="bytes"):
        await gen.complete(HELLO)
    assert gen.calls == 1


async def test_empty_deltas_are_dropped() -> None:
    class Gappy(Generator):
        async def _impl(self, request):
            for delta in ["", "a", "", "b", ""]:
                yield delta

    assert await collect(Gappy().generate(HELLO)) == ["a", "b"]


async def test_generate_builds_the_request() -> None:
    gen = FakeGenerator("ok")
    gen.default_model = "small"
    await gen.complete(HELLO, guild_id=7, max_tokens=10, temperature=0.5, top_p=0.9)
    await gen.complete(HELLO, model="big")
    first, second = gen.requests
    assert first.model == "small" and second.model == "big"
    assert (first.guild_id, first.max_tokens, first.temperature) == (7, 10, 0.5)
    assert first.options == {"top_p": 0.9}
    assert first.messages == HELLO and first.messages is not HELLO


async def test_list_models_goes_through_the_wrapper() -> None:
    gen = FakeGenerator(models=["a", "b"], fail_with=[ProviderConnectionError("x")], retry=FAST)
    assert gen.supports_model_listing
    assert await gen.list_models() == ["a", "b"]
    assert gen.stats.retries == 1
    plain = FakeGenerator()
    assert not plain.supports_model_listing
    with pytest.raises(ProviderError):  # NotImplementedError from a plugin is wrapped
        await plain.list_models()


async def test_transcriber_returning_a_str_is_bad_output() -> None:
    class Wrong(Transcriber):
        async def _impl(self, clip, *, language, prompt, guild_id):
            return "text"

    with pytest.raises(BadOutputError):
        await Wrong().transcribe(CLIP)


async def test_transcriber_passes_options() -> None:
    stt = FakeTranscriber(["one", "two"])
    assert (await stt.transcribe(CLIP, language="fr", prompt="Hark", guild_id=3)).text == "one"
    result = await stt.transcribe(CLIP)
    assert result == Transcript("two", language="en", confidence=1.0, duration=CLIP.duration)
    assert stt.options[0] == {"language": "fr", "prompt": "Hark", "guild_id": 3}
    assert stt.clips == [CLIP, CLIP]


async def test_synthesizer_without_audio_for_text_is_bad_output() -> None:
    class Mute(Synthesizer):
        async def _impl(self, text, *, guild_id):
            yield AudioClip(b"", 48_000)

    with pytest.raises(BadOutputError):
        await collect(Mute().synthesize("Hello."))
    assert await collect(Mute().synthesize("  ")) == []  # blank text: no audio is fine


async def test_synthesizer_yielding_bytes_is_bad_output() -> None:
    class Raw(Synthesizer):
        async def _impl(self, text, *, guild_id):
            yield b"\x00\x00"

    with pytest.raises(BadOutputError, match="AudioClip"):
        await collect(Raw().synthesize("Hello."))


async def test_context_provider_output_checks() -> None:
    class Wrong(ContextProvider):
        async def _impl(self, request):
            return {"messages": []}

    with pytest.raises(BadOutputError):
        await Wrong().provide(ContextRequest(text="hi"))

    ctx = FakeContextProvider("persona", order=0, name="persona")
    ctx.plugin_id = "persona_plugin"
    part = await ctx.provide(ContextRequest(text="hi"))
    assert part == ContextPart([PromptMessage("system", "persona")], 0, "persona_plugin:persona")
    given = FakeContextProvider(lambda r: ContextPart([], source="mine"))
    assert (await given.provide(ContextRequest(text="hi"))).source == "mine"
    assert await FakeContextProvider(None).provide(ContextRequest(text="hi")) is None


def test_context_providers_are_not_retried_by_default() -> None:
    assert ContextProvider.retry.attempts == 1
    assert FakeContextProvider().retry.attempts == 1


# -- stats and ids -------------------------------------------------------------


async def test_stats_count_calls_and_latency() -> None:
    gen = FakeGenerator("ok")
    for _ in range(3):
        await gen.complete(HELLO)
    stats = gen.stats.as_dict()
    assert (stats["calls"], stats["failures"], stats["retries"]) == (3, 0, 0)
    assert stats["p50_s"] is not None and stats["p50_s"] >= 0
    assert set(stats) == {
        "calls",
        "failures",
        "retries",
        "timeouts",
        "p50_s",
        "p95_s",
        "first_p50_s",
        "first_p95_s",
    }
    # A stream also records the time to its first piece.
    assert stats["first_p50_s"] is not None and stats["first_p50_s"] <= stats["p50_s"]


def test_latency_percentiles() -> None:
    stats = LatencyStats()
    assert stats.percentile(50) is None
    for i in range(1, 101):
        stats.record(i / 100, ok=i % 10 != 0)
    assert stats.calls == 100 and stats.failures == 10
    assert stats.percentile(0) == 0.01
    assert stats.percentile(100) == 1.0
    assert stats.percentile(50) in (0.5, 0.51)
    for _ in range(600):
        stats.record(9.0, ok=True)
    assert len(stats.samples) == 512 and stats.percentile(0) == 9.0


@pytest.mark.parametrize(
    ("plugin_id", "name", "expected"),
    [
        ("", "", "FakeGenerator"),
        ("llm_ollama", "", "llm_ollama"),
        ("llm_ollama", "llm_ollama", "llm_ollama"),
        ("llm_ollama", "fast", "llm_ollama:fast"),
        ("", "fast", "fast"),
    ],
)
def test_provider_id(plugin_id: str, name: str, expected: str) -> None:
    gen = FakeGenerator(name=name)
    gen.plugin_id = plugin_id
    assert gen.id == expected
    assert repr(gen) == f"<FakeGenerator {expected}>"
    assert gen.log.name == f"hark.provider.{expected}"


def test_error_messages() -> None:
    plain = ProviderError("boom", provider="p")
    assert str(plain) == "[p] boom" and "`p`" in plain.user_message
    assert str(ProviderError("boom")) == "boom"
    status = ProviderStatusError("nope", status=401, provider="p")
    assert str(status) == "[p] nope (HTTP 401)"
    assert "key" in status.user_message
    assert "rate" in ProviderStatusError("x", status=429).user_message
    assert "503" in ProviderStatusError("x", status=503).user_message
    assert "418" in ProviderStatusError("teapot", status=418).user_message
    assert "reach" in ProviderConnectionError("x", provider="p").user_message
    assert "too long" in ProviderTimeoutError("x").user_message
    assert ProviderConnectionError("x").retryable and ProviderTimeoutError("x").retryable
    assert not BadOutputError("x").retryable and not ConfigurationError("x").retryable
    assert ConfigurationError("set FOO_KEY").user_message == "Sorry, set FOO_KEY"


# -- the overall deadline (HARK_PROVIDER_DEADLINE) ----------------------------------


async def test_a_hung_stream_ends_at_the_overall_deadline() -> None:
    """A hung LLM with a 60 s timeout and 3 attempts used to keep a user ~3 minutes."""
    gen = FakeGenerator("late", delay=3600, timeout=60, retry=FAST)
    gen.deadline = 0.3
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError, match=r"within 0\.3s"):
        await gen.complete(HELLO)
    assert time.perf_counter() - started < 10  # not 3 x 60 s
    assert gen.calls == 1  # no retry can start once the deadline has passed


async def test_retries_share_one_deadline() -> None:
    gen = FakeGenerator("late", delay=3600, timeout=0.2, retry=FAST)
    gen.deadline = 0.5
    with pytest.raises(ProviderTimeoutError):
        await gen.complete(HELLO)
    # Attempts of 0.2 s, 0.2 s and what was left: never more than the deadline allows.
    assert 2 <= gen.calls <= 3
    assert sum(gen.stats.samples) < 1.5


async def test_a_backoff_past_the_deadline_is_not_waited_out() -> None:
    error = ProviderStatusError("slow down", status=429, retry_after=5)
    gen = FakeGenerator("ok", fail_with=[error], retry=RetryPolicy(attempts=3))
    gen.deadline = 1.0
    started = time.perf_counter()
    with pytest.raises(ProviderStatusError):
        await gen.complete(HELLO)
    assert time.perf_counter() - started < 1.0
    assert gen.calls == 1


async def test_the_deadline_covers_only_the_first_item_of_a_stream() -> None:
    gen = FakeGenerator("0123456789" * 3, chunk_size=5, delay=0.1, timeout=5)
    gen.deadline = 0.25  # the whole stream takes ~0.6 s: later items are not capped
    assert await gen.complete(HELLO) == "0123456789" * 3


async def test_calls_have_the_overall_deadline_too() -> None:
    stt = FakeTranscriber("hi", delay=3600, timeout=60, retry=FAST)
    stt.deadline = 0.3
    with pytest.raises(ProviderTimeoutError, match=r"within 0\.3s"):
        await stt.transcribe(CLIP)
    assert stt.calls == 1
    synth = FakeSynthesizer(delay=3600, timeout=60, retry=FAST)
    synth.deadline = 0.3
    with pytest.raises(ProviderTimeoutError):
        async for _ in synth.synthesize("Hello."):
            pass


async def test_no_deadline_means_only_the_attempt_timeouts() -> None:
    gen = FakeGenerator("late", delay=3600, timeout=0.1, retry=FAST)
    gen.deadline = None
    with pytest.raises(ProviderTimeoutError, match=r"within 0\.1s"):
        await gen.complete(HELLO)
    assert gen.calls == 3
