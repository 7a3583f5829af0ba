"""hark.testing.fakes behave as documented (other tests rely on them)."""

from __future__ import annotations

import asyncio

import pytest

from hark import (
    AudioClip,
    ContextPart,
    ContextRequest,
    PromptMessage,
    ProviderConnectionError,
    ProviderStatusError,
)
from hark.plugins import PluginManager
from hark.providers import Capability, RetryPolicy
from hark.testing.fakes import (
    FAST_RETRY,
    EchoGenerator,
    FakeContextProvider,
    FakeGenerator,
    FakeSynthesizer,
    FakeTranscriber,
    fake_plugin,
    silence,
    split_sentences,
    tone,
)

HELLO = [PromptMessage("user", "hello")]


async def collect(stream):
    return [item async for item in stream]


async def test_generator_replies_in_chunks_and_records_requests() -> None:
    gen = FakeGenerator("Hello world!", chunk_size=5)
    assert await collect(gen.generate(HELLO, temperature=0.1)) == ["Hello", " worl", "d!"]
    assert len(gen.requests) == 1 and gen.requests[0].temperature == 0.1
    assert gen.calls == 1 and gen.open_streams == 0


async def test_generator_reply_scripts() -> None:
    listed = FakeGenerator(["one", "two"])
    assert [await listed.complete(HELLO) for _ in range(3)] == ["one", "two", "two"]

    async def shout(messages):
        return messages[-1].content.upper()

    assert await FakeGenerator(shout).complete(HELLO) == "HELLO"
    assert await FakeGenerator(lambda m: f"{len(m)} messages").complete(HELLO) == "1 messages"


async def test_generator_failures_then_success() -> None:
    gen = FakeGenerator("ok", fail_with=[ProviderStatusError("busy", status=503)])
    assert await gen.complete(HELLO) == "ok"
    assert gen.calls == 2 and gen.fail_with == []


async def test_generator_breaks_mid_stream() -> None:
    gen = FakeGenerator("abcdefgh", chunk_size=3, fail_after_chars=4)
    seen = []
    with pytest.raises(ProviderConnectionError):
        async for delta in gen.generate(HELLO):
            seen.append(delta)
    assert seen == ["abc", "d"]
    # a break point past the end never fires
    assert await FakeGenerator("abc", fail_after_chars=10).complete(HELLO) == "abc"


async def test_generator_delay_and_models() -> None:
    gen = FakeGenerator("ab", chunk_size=1, delay=0.05, models=["m1"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    await gen.complete(HELLO)
    assert loop.time() - started >= 0.09  # before the first and the second delta
    assert gen.supports_model_listing and await gen.list_models() == ["m1"]


def test_constructor_sets_provider_attributes() -> None:
    policy = RetryPolicy(attempts=5)
    gen = FakeGenerator(name="n", timeout=3.0, retry=policy, default_priority=4, unavailable="no")
    assert (gen.name, gen.timeout, gen.retry, gen.default_priority) == ("n", 3.0, policy, 4)
    assert gen.unavailable_reason() == "no"
    assert FakeGenerator().retry == FAST_RETRY and FakeGenerator().timeout == 60.0
    assert FakeGenerator().unavailable_reason() is None
    with pytest.raises(ValueError):
        FakeGenerator(chunk_size=0)


async def test_echo_generator() -> None:
    echo = EchoGenerator()
    messages = [
        PromptMessage("system", "persona"),
        PromptMessage("user", "first"),
        PromptMessage("assistant", "reply"),
        PromptMessage("user", "say this back", name="bob"),
    ]
    assert await echo.complete(messages) == "say this back"
    assert await echo.complete([PromptMessage("system", "x")]) == "(nothing to echo)"


async def test_transcriber_scripts_and_records() -> None:
    clip = tone(0.1, 16_000)
    stt = FakeTranscriber(lambda c: f"{c.sample_rate} Hz", language=None)
    result = await stt.transcribe(clip, language="de")
    assert result.text == "16000 Hz" and result.language == "de"
    assert result.duration == pytest.approx(0.1)
    assert stt.clips == [clip]


def test_tone_and_silence() -> None:
    clip = tone(0.5, 24_000, 2, frequency=300)
    assert (clip.sample_rate, clip.channels, clip.frames) == (24_000, 2, 12_000)
    assert clip == tone(0.5, 24_000, 2, frequency=300), "deterministic"
    assert clip.pcm != bytes(len(clip.pcm))
    left, right = clip.pcm[4:6], clip.pcm[6:8]  # frame 1: both channels carry the tone
    assert left == right and left != b"\0\0"
    quiet = silence(0.25, 8_000)
    assert quiet.pcm == bytes(4_000) and quiet.duration == 0.25


def test_split_sentences() -> None:
    assert split_sentences("Hi there. How are you?  Fine!\nOK") == [
        "Hi there.",
        "How are you?",
        "Fine!",
        "OK",
    ]
    assert split_sentences("   ") == []


async def test_synthesizer_streams_a_clip_per_sentence() -> None:
    tts = FakeSynthesizer(sample_rate=16_000, channels=2, seconds_per_char=0.01)
    clips = await collect(tts.synthesize("Hi. Hello there!"))
    assert len(clips) == 2
    assert all(
        isinstance(c, AudioClip) and (c.sample_rate, c.channels) == (16_000, 2) for c in clips
    )
    assert clips[0].duration == pytest.approx(0.03) and clips[1].duration == pytest.approx(0.12)
    assert tts.texts == ["Hi. Hello there!"]
    single = await collect(FakeSynthesizer(streams=False).synthesize("One. Two. Three."))
    assert len(single) == 1
    assert await collect(tts.synthesize("  ")) == []


async def test_synthesizer_breaks_after_chunks() -> None:
    tts = FakeSynthesizer(fail_after_chunks=2)
    seen = []
    with pytest.raises(ProviderConnectionError):
        async for clip in tts.synthesize("A. B. C. D."):
            seen.append(clip)
    assert len(seen) == 2


async def test_context_provider_scripts() -> None:
    request = ContextRequest(text="hi", user_name="alice")
    part = await FakeContextProvider("persona", order=5).provide(request)
    assert part.messages == [PromptMessage("system", "persona")] and part.order == 5
    messages = [PromptMessage("user", "a"), PromptMessage("assistant", "b")]
    assert (await FakeContextProvider(messages).provide(request)).messages == messages
    dynamic = FakeContextProvider(lambda r: f"talking to {r.user_name}")
    assert (await dynamic.provide(request)).messages[0].content == "talking to alice"
    whole = ContextPart([], order=7, source="s")
    assert await FakeContextProvider(lambda r: whole).provide(request) is whole
    provider = FakeContextProvider()
    assert await provider.provide(request) is None
    await provider.record(request, "bye")
    assert provider.requests == [request] and provider.recorded == [(request, "bye")]


def test_fake_plugin_registers_every_kind() -> None:
    class Cog:
        pass

    manager = PluginManager()
    module = fake_plugin(
        FakeTranscriber(name="s"),
        FakeGenerator(name="g"),
        FakeSynthesizer(name="t"),
        FakeContextProvider(name="c"),
        doc="Everything.",
        default_enabled=False,
    )
    info = manager.add(module, "all")
    assert info.loaded, info.error
    assert info.description == "Everything." and info.default_enabled is False
    assert {p.id for p in info.providers} == {"all:s", "all:g", "all:t", "all:c"}
    assert info.capabilities == ["context", "generate", "synthesize", "transcribe"]
    assert [p.id for p in manager.providers(Capability.GENERATE)] == ["all:g"]
    with pytest.raises(TypeError):
        fake_plugin(object())  # type: ignore[arg-type]
