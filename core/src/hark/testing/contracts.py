"""Contract test suites: what every provider implementation must do.

Subclass the suite for your provider kind in a test module and supply the
provider through a fixture; pytest runs every contract test against it::

    import pytest
    from hark.testing.contracts import GeneratorContract

    class TestMyGenerator(GeneratorContract):
        @pytest.fixture
        async def generator(self, loopback_server):      # sync or async, any fixtures
            return MyGenerator(base_url=loopback_server.url)

        @pytest.fixture                                   # optional: enables the error tests
        def broken_generator(self):
            return MyGenerator(base_url="http://127.0.0.1:9")  # nothing listens there

=======================  ==========================  =====================================
suite                    required fixture            optional fixtures
=======================  ==========================  =====================================
GeneratorContract        ``generator``               ``broken_generator``
TranscriberContract      ``transcriber``             ``speech_clip``, ``broken_transcriber``
SynthesizerContract      ``synthesizer``             ``broken_synthesizer``
ContextProviderContract  ``context_provider``        ``context_request``,
                                                     ``broken_context_provider``
=======================  ==========================  =====================================

``broken_<kind>`` returns an instance pointed at an unreachable or failing
backend (give it a small ``retry`` policy/``timeout`` so the test is quick);
when you do not override it those tests are skipped. ``speech_clip`` returns
``(AudioClip, expected_words)``: override it with a real recording and the words
your transcriber must find in it (the default is a tone with no expected words).

Every test goes through the public core method (``generate``, ``transcribe``,
``synthesize``, ``provide``), never ``_impl``, so it checks your provider as the
bot will call it. The tests are coroutines marked ``asyncio`` (pytest-asyncio),
so they run in both its strict and auto modes (in strict mode, declare async
fixtures with ``pytest_asyncio.fixture``). A ``Synthesizer`` whose backend answers
with one clip declares ``streams = False``. Class attributes tune a suite
for a backend: ``deadline`` (seconds any single call may take before the test
fails as hung), ``concurrency``, the prompts and texts used, and
``SynthesizerContract.expect_streaming`` / ``min_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from array import array
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest

from hark.providers import (
    AudioClip,
    Capability,
    ContextPart,
    ContextProvider,
    ContextRequest,
    Generator,
    PromptMessage,
    Provider,
    RetryPolicy,
    Synthesizer,
    Transcriber,
    Transcript,
)
from hark.providers.errors import ProviderError

__all__ = [
    "ContextProviderContract",
    "GeneratorContract",
    "SynthesizerContract",
    "TranscriberContract",
]

T = TypeVar("T")


# -- helpers -----------------------------------------------------------------


async def _within(seconds: float, awaitable: Awaitable[T], what: str) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        pytest.fail(f"{what} did not finish within {seconds:g}s (hung?)")


async def _collect(stream: AsyncIterator[T]) -> list[T]:
    return [item async for item in stream]


def _peak(clip: AudioClip) -> int:
    samples = array("h", clip.pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return max((abs(s) for s in samples), default=0)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def _resample(clip: AudioClip, rate: int, channels: int) -> AudioClip:
    """Linear-interpolation resample and channel remix (mono <-> stereo), pure Python."""
    samples = array("h", clip.pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    n = clip.channels
    mono = [sum(samples[i : i + n]) // n for i in range(0, len(samples), n)]
    out_frames = max(1, round(len(mono) * rate / clip.sample_rate))
    step = clip.sample_rate / rate
    out = array("h")
    last = len(mono) - 1
    for i in range(out_frames):
        pos = i * step
        j = min(int(pos), last)
        k = min(j + 1, last)
        value = int(mono[j] + (mono[k] - mono[j]) * (pos - j))
        out.extend([value] * channels)
    if sys.byteorder == "big":
        out.byteswap()
    return AudioClip(out.tobytes(), rate, channels)


def _check_identity(provider: Provider, kind: type[Provider], capability: Capability) -> None:
    assert isinstance(provider, kind), f"{provider!r} is not a {kind.__name__}"
    assert provider.capability == capability
    assert isinstance(provider.id, str) and provider.id, "provider.id must be a non-empty string"
    assert not any(c.isspace() for c in provider.id), (
        f"provider.id {provider.id!r} is typed in commands: no whitespace"
    )
    assert provider.timeout > 0, "timeout must be positive"
    assert isinstance(provider.retry, RetryPolicy) and provider.retry.attempts >= 1
    reason = provider.unavailable_reason()
    assert reason is None, f"a configured provider should be available, but says: {reason!r}"


def _check_error(error: ProviderError, provider: Provider) -> None:
    assert error.provider == provider.id, (
        f"the error names provider {error.provider!r}, not {provider.id!r}: leave"
        " ProviderError(provider=...) unset and the core fills it in"
    )
    assert isinstance(error.user_message, str) and error.user_message
    assert isinstance(error.message, str) and error.message


def _skip_without(broken: Any, fixture: str) -> None:
    if broken is None:
        pytest.skip(f"override the `{fixture}` fixture to run the error-path contract")


async def _cancel_mid_stream(stream: AsyncIterator[Any], deadline: float, what: str) -> int:
    """Consume ``stream`` in a task, cancel it after the first item; returns items seen."""
    seen = 0
    first = asyncio.Event()

    async def consume() -> None:
        nonlocal seen
        async for _ in stream:
            seen += 1
            first.set()
            await asyncio.sleep(3600)  # a slow consumer (e.g. audio playing) is interrupted

    task = asyncio.create_task(consume())
    waiter = asyncio.create_task(first.wait())
    await _within(
        deadline,
        asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED),
        f"{what} first item",
    )
    waiter.cancel()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await _within(deadline, task, f"cancelling {what}")
    return seen


class _Contract:
    # Every test is a coroutine; mark them so pytest-asyncio's strict mode runs them too.
    pytestmark = [pytest.mark.asyncio]

    #: Seconds any single call may take before the test fails as hung.
    deadline: float = 60.0
    #: How many calls the concurrency test starts at once.
    concurrency: int = 3


# -- generator ---------------------------------------------------------------


class GeneratorContract(_Contract):
    """Contract for :class:`hark.Generator`. Fixtures: ``generator``, ``broken_generator``."""

    prompt: tuple[PromptMessage, ...] = (
        PromptMessage("system", "You are a helpful assistant. Answer briefly."),
        PromptMessage("user", "Say hello in one short sentence.", name="alice"),
    )
    conversation: tuple[PromptMessage, ...] = (
        PromptMessage("system", "You are Hark, a friendly Discord bot. Answer briefly."),
        PromptMessage("user", "Hi, I'm Alice.", name="alice"),
        PromptMessage("assistant", "Hi Alice! How can I help?"),
        PromptMessage("user", "What is my name?", name="alice"),
    )

    @pytest.fixture
    def generator(self) -> Generator:
        raise NotImplementedError("override the `generator` fixture in your test class")

    @pytest.fixture
    def broken_generator(self) -> Generator | None:
        return None

    async def test_identity(self, generator: Generator) -> None:
        _check_identity(generator, Generator, Capability.GENERATE)

    async def test_streams_nonempty_str_deltas(self, generator: Generator) -> None:
        deltas = await _within(
            self.deadline, _collect(generator.generate(list(self.prompt))), "generate()"
        )
        assert deltas, "a simple prompt produced no output"
        for delta in deltas:
            assert isinstance(delta, str), f"delta {delta!r} is not a str"
            assert delta, "empty deltas must not be yielded"
        assert "".join(deltas).strip(), "the joined reply is blank"

    async def test_complete_returns_text(self, generator: Generator) -> None:
        text = await _within(self.deadline, generator.complete(list(self.prompt)), "complete()")
        assert isinstance(text, str) and text.strip()

    async def test_multi_turn_conversation(self, generator: Generator) -> None:
        text = await _within(
            self.deadline,
            generator.complete(list(self.conversation), max_tokens=64, temperature=0.2),
            "complete() with history and options",
        )
        assert isinstance(text, str) and text.strip()

    async def test_aclose_mid_stream(self, generator: Generator) -> None:
        stream = generator.generate(list(self.prompt))
        first = await _within(self.deadline, anext(stream), "the first delta")
        assert isinstance(first, str) and first
        await _within(self.deadline, stream.aclose(), "aclose() of a started stream")
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        # Nothing was left holding the backend: the next call works.
        text = await _within(self.deadline, generator.complete(list(self.prompt)), "next call")
        assert text.strip()

    async def test_cancel_mid_stream(self, generator: Generator) -> None:
        seen = await _cancel_mid_stream(
            generator.generate(list(self.prompt)), self.deadline, "generate()"
        )
        assert seen >= 1, "the stream ended before its first delta"
        text = await _within(self.deadline, generator.complete(list(self.prompt)), "next call")
        assert text.strip()

    async def test_concurrent_calls(self, generator: Generator) -> None:
        replies = await _within(
            self.deadline,
            asyncio.gather(
                *(generator.complete(list(self.prompt)) for _ in range(self.concurrency))
            ),
            "concurrent complete() calls",
        )
        assert all(isinstance(r, str) and r.strip() for r in replies)

    async def test_list_models(self, generator: Generator) -> None:
        if not generator.supports_model_listing:
            pytest.skip("supports_model_listing is False")
        models = await _within(self.deadline, generator.list_models(), "list_models()")
        assert isinstance(models, list) and models
        assert all(isinstance(m, str) and m for m in models)

    async def test_failure_is_provider_error(self, broken_generator: Generator | None) -> None:
        _skip_without(broken_generator, "broken_generator")
        assert broken_generator is not None
        with pytest.raises(ProviderError) as caught:
            await _within(
                self.deadline, _collect(broken_generator.generate(list(self.prompt))), "generate()"
            )
        _check_error(caught.value, broken_generator)

    async def test_list_models_failure_is_provider_error(
        self, broken_generator: Generator | None
    ) -> None:
        _skip_without(broken_generator, "broken_generator")
        assert broken_generator is not None
        if not broken_generator.supports_model_listing:
            pytest.skip("supports_model_listing is False")
        with pytest.raises(ProviderError) as caught:
            await _within(self.deadline, broken_generator.list_models(), "list_models()")
        _check_error(caught.value, broken_generator)


# -- transcriber -------------------------------------------------------------


class TranscriberContract(_Contract):
    """Contract for :class:`hark.Transcriber`.

    Fixtures: ``transcriber``, ``speech_clip`` -> ``(AudioClip, expected_words)``,
    ``broken_transcriber``.
    """

    @pytest.fixture
    def transcriber(self) -> Transcriber:
        raise NotImplementedError("override the `transcriber` fixture in your test class")

    @pytest.fixture
    def speech_clip(self, transcriber: Transcriber) -> tuple[AudioClip, list[str]]:
        """Override with a real recording and the words it must yield. Default: a tone."""
        from hark.testing.fakes import tone

        return tone(1.0, transcriber.preferred_sample_rate), []

    @pytest.fixture
    def broken_transcriber(self) -> Transcriber | None:
        return None

    def _check_words(self, transcript: Transcript, expected: list[str]) -> None:
        heard = set(_words(transcript.text))
        missing = [w for w in expected if w.lower() not in heard]
        assert not missing, f"expected {missing} in transcript {transcript.text!r}"

    async def test_identity(self, transcriber: Transcriber) -> None:
        _check_identity(transcriber, Transcriber, Capability.TRANSCRIBE)
        assert isinstance(transcriber.preferred_sample_rate, int)
        assert transcriber.preferred_sample_rate > 0

    async def test_transcribes_speech(
        self, transcriber: Transcriber, speech_clip: tuple[AudioClip, list[str]]
    ) -> None:
        clip, expected = speech_clip
        transcript = await _within(self.deadline, transcriber.transcribe(clip), "transcribe()")
        assert isinstance(transcript, Transcript)
        assert isinstance(transcript.text, str)
        self._check_words(transcript, list(expected))
        if transcript.confidence is not None:
            assert 0.0 <= transcript.confidence <= 1.0

    async def test_accepts_discord_audio(
        self, transcriber: Transcriber, speech_clip: tuple[AudioClip, list[str]]
    ) -> None:
        """Voice arrives as 48 kHz stereo: any rate and channel count must work."""
        clip, expected = speech_clip
        discord = _resample(clip, 48_000, 2)
        transcript = await _within(
            self.deadline, transcriber.transcribe(discord), "transcribe() of 48 kHz stereo"
        )
        assert isinstance(transcript, Transcript)
        self._check_words(transcript, list(expected))

    async def test_options_accepted(
        self, transcriber: Transcriber, speech_clip: tuple[AudioClip, list[str]]
    ) -> None:
        clip, _ = speech_clip
        transcript = await _within(
            self.deadline,
            transcriber.transcribe(clip, language="en", prompt="Hark, Alice", guild_id=1),
            "transcribe() with language/prompt",
        )
        assert isinstance(transcript, Transcript)

    async def test_silence(self, transcriber: Transcriber) -> None:
        from hark.testing.fakes import silence

        transcript = await _within(
            self.deadline,
            transcriber.transcribe(silence(1.0, transcriber.preferred_sample_rate)),
            "transcribe() of silence",
        )
        assert isinstance(transcript, Transcript) and isinstance(transcript.text, str)

    async def test_cancel(
        self, transcriber: Transcriber, speech_clip: tuple[AudioClip, list[str]]
    ) -> None:
        clip, _ = speech_clip
        task = asyncio.create_task(transcriber.transcribe(clip))
        await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _within(self.deadline, task, "cancelling transcribe()")
        transcript = await _within(self.deadline, transcriber.transcribe(clip), "next call")
        assert isinstance(transcript, Transcript)

    async def test_concurrent_calls(
        self, transcriber: Transcriber, speech_clip: tuple[AudioClip, list[str]]
    ) -> None:
        clip, expected = speech_clip
        results = await _within(
            self.deadline,
            asyncio.gather(*(transcriber.transcribe(clip) for _ in range(self.concurrency))),
            "concurrent transcribe() calls",
        )
        for transcript in results:
            assert isinstance(transcript, Transcript)
            self._check_words(transcript, list(expected))

    async def test_failure_is_provider_error(
        self,
        broken_transcriber: Transcriber | None,
        speech_clip: tuple[AudioClip, list[str]],
    ) -> None:
        _skip_without(broken_transcriber, "broken_transcriber")
        assert broken_transcriber is not None
        with pytest.raises(ProviderError) as caught:
            await _within(
                self.deadline, broken_transcriber.transcribe(speech_clip[0]), "transcribe()"
            )
        _check_error(caught.value, broken_transcriber)


# -- synthesizer -------------------------------------------------------------


class SynthesizerContract(_Contract):
    """Contract for :class:`hark.Synthesizer`. Fixtures: ``synthesizer``, ``broken_synthesizer``.

    ``expect_streaming``: multi-sentence text must arrive as more than one clip.
    A provider may declare ``streams = False`` to opt out (one clip per call).
    """

    sentence: str = "Hello there, this is a test."
    paragraph: str = (
        "Hello there, this is the first sentence. "
        "Here comes a second one, a little longer than the first. "
        "And this is the third and last sentence."
    )
    expect_streaming: bool = True
    #: Shortest total audio accepted for ``sentence``.
    min_seconds: float = 0.3
    #: Quietest peak sample accepted (of 32767): speech is not silence.
    min_peak: int = 300

    @pytest.fixture
    def synthesizer(self) -> Synthesizer:
        raise NotImplementedError("override the `synthesizer` fixture in your test class")

    @pytest.fixture
    def broken_synthesizer(self) -> Synthesizer | None:
        return None

    def _check_clips(self, synthesizer: Synthesizer, clips: list[Any]) -> float:
        assert clips, "no audio"
        for clip in clips:
            assert isinstance(clip, AudioClip), f"{clip!r} is not an AudioClip"
            assert clip.sample_rate == synthesizer.sample_rate, (
                f"clip at {clip.sample_rate} Hz, provider declares {synthesizer.sample_rate} Hz"
            )
            assert clip.channels == synthesizer.channels, (
                f"clip has {clip.channels} channels, provider declares {synthesizer.channels}"
            )
            assert len(clip.pcm) % (AudioClip.SAMPLE_WIDTH * clip.channels) == 0
            assert clip.pcm, "empty clips must not be yielded"
        assert max(_peak(c) for c in clips) >= self.min_peak, "the audio is (near) silent"
        return sum(c.duration for c in clips)

    async def test_identity(self, synthesizer: Synthesizer) -> None:
        _check_identity(synthesizer, Synthesizer, Capability.SYNTHESIZE)
        assert isinstance(synthesizer.sample_rate, int) and synthesizer.sample_rate > 0
        assert synthesizer.channels in (1, 2)
        assert synthesizer.max_text_length >= len(self.paragraph)

    async def test_audio_in_declared_format(self, synthesizer: Synthesizer) -> None:
        clips = await _within(
            self.deadline, _collect(synthesizer.synthesize(self.sentence)), "synthesize()"
        )
        seconds = self._check_clips(synthesizer, clips)
        assert seconds >= self.min_seconds, f"only {seconds:.3f}s of audio for a sentence"

    async def test_streams_multiple_sentences(self, synthesizer: Synthesizer) -> None:
        one = await _within(
            self.deadline, _collect(synthesizer.synthesize(self.sentence)), "synthesize()"
        )
        many = await _within(
            self.deadline, _collect(synthesizer.synthesize(self.paragraph)), "synthesize()"
        )
        seconds = self._check_clips(synthesizer, many)
        assert seconds > sum(c.duration for c in one), "three sentences took no longer than one"
        if getattr(synthesizer, "streams", self.expect_streaming):
            assert len(many) > 1, "multi-sentence text arrived as a single clip (not streamed)"

    async def test_blank_text(self, synthesizer: Synthesizer) -> None:
        """Blank text gives no audio or a ProviderError; never anything else."""
        try:
            clips = await _within(
                self.deadline, _collect(synthesizer.synthesize("   ")), "synthesize('   ')"
            )
        except ProviderError:
            return
        assert all(isinstance(c, AudioClip) for c in clips)

    async def test_aclose_mid_stream(self, synthesizer: Synthesizer) -> None:
        stream = synthesizer.synthesize(self.paragraph)
        first = await _within(self.deadline, anext(stream), "the first clip")
        assert isinstance(first, AudioClip)
        await _within(self.deadline, stream.aclose(), "aclose() of a started stream")
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        clips = await _within(
            self.deadline, _collect(synthesizer.synthesize(self.sentence)), "next call"
        )
        self._check_clips(synthesizer, clips)

    async def test_cancel_mid_stream(self, synthesizer: Synthesizer) -> None:
        seen = await _cancel_mid_stream(
            synthesizer.synthesize(self.paragraph), self.deadline, "synthesize()"
        )
        assert seen >= 1
        clips = await _within(
            self.deadline, _collect(synthesizer.synthesize(self.sentence)), "next call"
        )
        self._check_clips(synthesizer, clips)

    async def test_concurrent_calls(self, synthesizer: Synthesizer) -> None:
        results = await _within(
            self.deadline,
            asyncio.gather(
                *(_collect(synthesizer.synthesize(self.sentence)) for _ in range(self.concurrency))
            ),
            "concurrent synthesize() calls",
        )
        for clips in results:
            self._check_clips(synthesizer, clips)

    async def test_failure_is_provider_error(self, broken_synthesizer: Synthesizer | None) -> None:
        _skip_without(broken_synthesizer, "broken_synthesizer")
        assert broken_synthesizer is not None
        with pytest.raises(ProviderError) as caught:
            await _within(
                self.deadline,
                _collect(broken_synthesizer.synthesize(self.sentence)),
                "synthesize()",
            )
        _check_error(caught.value, broken_synthesizer)


# -- context provider --------------------------------------------------------


class ContextProviderContract(_Contract):
    """Contract for :class:`hark.ContextProvider`.

    Fixtures: ``context_provider``, ``context_request``, ``broken_context_provider``.
    """

    @pytest.fixture
    def context_provider(self) -> ContextProvider:
        raise NotImplementedError("override the `context_provider` fixture in your test class")

    @pytest.fixture
    def context_request(self) -> ContextRequest:
        return ContextRequest(
            text="Hello, what's new?",
            guild_id=1001,
            channel_id=2002,
            user_id=3003,
            user_name="alice",
            bot_name="Hark",
        )

    @pytest.fixture
    def broken_context_provider(self) -> ContextProvider | None:
        return None

    async def _provide(self, provider: ContextProvider, request: ContextRequest) -> Any:
        started = time.perf_counter()
        part = await _within(self.deadline, provider.provide(request), "provide()")
        elapsed = time.perf_counter() - started
        assert elapsed <= provider.timeout, (
            f"provide() took {elapsed:.2f}s, more than its deadline of {provider.timeout:g}s"
        )
        self._check_part(part)
        return part

    def _check_part(self, part: Any) -> None:
        if part is None:
            return
        assert isinstance(part, ContextPart), f"{part!r} is neither a ContextPart nor None"
        assert isinstance(part.order, int)
        assert isinstance(part.source, str) and part.source, "the part names its source"
        assert isinstance(part.messages, list)
        for message in part.messages:
            assert isinstance(message, PromptMessage), f"{message!r} is not a PromptMessage"
            assert message.role in ("system", "user", "assistant"), message.role
            assert isinstance(message.content, str)

    async def test_identity(self, context_provider: ContextProvider) -> None:
        _check_identity(context_provider, ContextProvider, Capability.CONTEXT)

    async def test_provides_part_or_none(
        self, context_provider: ContextProvider, context_request: ContextRequest
    ) -> None:
        await self._provide(context_provider, context_request)

    async def test_direct_message(
        self, context_provider: ContextProvider, context_request: ContextRequest
    ) -> None:
        """A DM has no guild: providers must cope with ``guild_id=None``."""
        request = ContextRequest(
            text=context_request.text,
            guild_id=None,
            channel_id=context_request.channel_id,
            user_id=context_request.user_id,
            user_name=context_request.user_name,
            bot_name=context_request.bot_name,
        )
        await self._provide(context_provider, request)

    async def test_record_then_provide(
        self, context_provider: ContextProvider, context_request: ContextRequest
    ) -> None:
        await _within(
            self.deadline,
            context_provider.record(context_request, "Not much, and you?"),
            "record()",
        )
        await self._provide(context_provider, context_request)

    async def test_cancel(
        self, context_provider: ContextProvider, context_request: ContextRequest
    ) -> None:
        task = asyncio.create_task(context_provider.provide(context_request))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _within(self.deadline, task, "cancelling provide()")
        await self._provide(context_provider, context_request)

    async def test_concurrent_calls(
        self, context_provider: ContextProvider, context_request: ContextRequest
    ) -> None:
        parts = await _within(
            self.deadline,
            asyncio.gather(
                *(context_provider.provide(context_request) for _ in range(self.concurrency))
            ),
            "concurrent provide() calls",
        )
        for part in parts:
            self._check_part(part)

    async def test_failure_is_provider_error(
        self,
        broken_context_provider: ContextProvider | None,
        context_request: ContextRequest,
    ) -> None:
        _skip_without(broken_context_provider, "broken_context_provider")
        assert broken_context_provider is not None
        with pytest.raises(ProviderError) as caught:
            await _within(
                self.deadline, broken_context_provider.provide(context_request), "provide()"
            )
        _check_error(caught.value, broken_context_provider)
