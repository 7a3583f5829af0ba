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
GeneratorContract        ``generator``               ``broken_generator``, ``tool_generator``
TranscriberContract      ``transcriber``             ``speech_clip``, ``broken_transcriber``
SynthesizerContract      ``synthesizer``             ``broken_synthesizer``
ContextProviderContract  ``context_provider``        ``context_request``,
                                                     ``broken_context_provider``
TurnDetectorContract     ``turn_detector``           ``voice_settings``, ``speech``,
                                                     ``paused_speech``,
                                                     ``broken_turn_detector``
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

``GeneratorContract`` follows the generator's capability flags: with
``supports_vision`` an image must reach ``_impl`` (and the model must answer);
without it the image must arrive as a note naming it. With ``supports_tools`` the
model must call an offered tool (``tool_spec``, asked with ``tool_prompt``) and,
given its result (``tool_result``), answer in text; ``tool_generator`` (default:
``generator``) is the instance to use, e.g. one whose fake backend is scripted to
call the tool. Without the flag no tools may reach ``_impl`` and the reply is text.

``TurnDetectorContract`` drives each :class:`~hark.SpeakerTurns` the detector opens
as the voice session does (20 ms frames of 48 kHz stereo, a poll every 50 ms, no
packets during silence) in simulated time, with real speech from espeak-ng (skipped
if it is not installed, unless you override ``speech`` and ``paused_speech``), and
checks every update against the protocol in :mod:`hark.providers.turns`. A detector
that decides in the background overrides ``settle(turns, update)`` to wait for it;
``end_within_s``, ``pause_gap_s``, ``speech_within_ms``, ``pauses`` and
``max_call_ms`` tune it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pytest

from hark.audio import DISCORD_FRAME_BYTES, DISCORD_RATE, convert, read_wav
from hark.providers import (
    AudioClip,
    Capability,
    ContextPart,
    ContextProvider,
    ContextRequest,
    GenerationRequest,
    Generator,
    ImagePart,
    PromptMessage,
    Provider,
    RetryPolicy,
    Synthesizer,
    ToolCall,
    ToolSpec,
    Transcriber,
    Transcript,
)
from hark.providers.errors import ProviderError
from hark.providers.turns import FRAME_MS, SpeakerTurns, TurnDetector, TurnUpdate, Utterance

__all__ = [
    "ContextProviderContract",
    "DrivenSpeaker",
    "GeneratorContract",
    "SynthesizerContract",
    "TranscriberContract",
    "TurnDetectorContract",
    "TurnEvent",
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


def solid_png(
    width: int = 16, height: int = 16, rgb: tuple[int, int, int] = (220, 30, 30)
) -> bytes:
    """A PNG of one colour (red by default), made here so no image file is needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def _spy_requests(provider: Generator, monkeypatch: pytest.MonkeyPatch) -> list[GenerationRequest]:
    """Record each request the core hands ``_impl`` (which still runs)."""
    seen: list[GenerationRequest] = []
    impl = provider._impl

    def spy(request: GenerationRequest) -> AsyncIterator[Any]:
        seen.append(request)
        return impl(request)

    monkeypatch.setattr(provider, "_impl", spy)
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

    #: The image of the vision case, and what the user asks about it.
    vision_image: ImagePart = ImagePart(solid_png(), "image/png", "red-square.png")
    vision_question: str = "What colour is this image? One word."
    #: The tool offered in the tool cases, the prompt that should make the model call
    #: it, and the result it is given.
    tool_spec: ToolSpec = ToolSpec(
        "get_weather",
        "Get the current weather in a city.",
        {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city's name"}},
            "required": ["city"],
        },
    )
    tool_prompt: tuple[PromptMessage, ...] = (
        PromptMessage(
            "system",
            "You are a helpful assistant. Use the get_weather tool for any question "
            "about the weather, then answer briefly.",
        ),
        PromptMessage("user", "What is the weather in Paris right now?", name="alice"),
    )
    tool_result: str = '{"city": "Paris", "sky": "sunny", "celsius": 21}'

    @pytest.fixture
    def generator(self) -> Generator:
        raise NotImplementedError("override the `generator` fixture in your test class")

    @pytest.fixture
    def broken_generator(self) -> Generator | None:
        return None

    @pytest.fixture
    def tool_generator(self, generator: Generator) -> Generator:
        """The generator of the tool round trip (override to script a fake backend)."""
        return generator

    async def test_identity(self, generator: Generator) -> None:
        _check_identity(generator, Generator, Capability.GENERATE)
        for flag in ("supports_model_listing", "supports_vision", "supports_tools"):
            assert isinstance(getattr(generator, flag), bool), f"{flag} must be a bool"

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

    async def test_images_reach_the_model_only_with_vision(
        self, generator: Generator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen = _spy_requests(generator, monkeypatch)
        image = self.vision_image
        prompt = [
            *self.prompt[:1],
            PromptMessage("user", self.vision_question, name="alice", images=(image,)),
        ]
        deltas = await _within(
            self.deadline, _collect(generator.generate(prompt)), "generate() with an image"
        )
        assert all(isinstance(d, str) for d in deltas), "no tools were offered: text only"
        assert "".join(deltas).strip(), "a message with an image got a blank reply"
        assert seen, "generate() never reached _impl"
        last = seen[-1].messages[-1]
        if generator.supports_vision:
            assert last.images and last.images[0].data == image.data, (
                "supports_vision is set, but the image did not reach _impl"
            )
        else:
            assert not any(m.images for m in seen[-1].messages), (
                "an image reached _impl of a generator without supports_vision"
            )
            assert image.name in last.content, "the note naming the image is missing"

    async def test_no_tools_reach_a_generator_without_tool_support(
        self, generator: Generator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if generator.supports_tools:
            pytest.skip("supports_tools is True (see the tool round trip)")
        seen = _spy_requests(generator, monkeypatch)
        deltas = await _within(
            self.deadline,
            _collect(generator.generate(list(self.tool_prompt), tools=[self.tool_spec])),
            "generate(tools=...)",
        )
        assert seen and all(not request.tools for request in seen), (
            "tools reached _impl of a generator without supports_tools"
        )
        assert all(isinstance(d, str) for d in deltas) and "".join(deltas).strip()

    async def test_tool_round_trip(self, tool_generator: Generator) -> None:
        if not tool_generator.supports_tools:
            pytest.skip("supports_tools is False")
        spec = self.tool_spec
        items = await _within(
            self.deadline,
            _collect(tool_generator.generate(list(self.tool_prompt), tools=[spec])),
            "generate(tools=...)",
        )
        calls = [i for i in items if isinstance(i, ToolCall)]
        assert all(isinstance(i, str | ToolCall) for i in items)
        assert calls, f"the model did not call the offered tool {spec.name}"
        for call in calls:
            assert call.name == spec.name, f"a call of {call.name!r}, which was not offered"
            assert call.id, "every tool call has an id (the core fills in a missing one)"
            arguments = json.loads(call.arguments)
            assert isinstance(arguments, dict), f"arguments {call.arguments!r}: not an object"
        said = "".join(i for i in items if isinstance(i, str))
        followed = [
            *self.tool_prompt,
            PromptMessage("assistant", said, tool_calls=tuple(calls)),
            *(
                PromptMessage("tool", self.tool_result, name=c.name, tool_call_id=c.id)
                for c in calls
            ),
        ]
        answer = await _within(
            self.deadline,
            _collect(tool_generator.generate(followed, tools=[spec])),
            "generate() with the tool's result",
        )
        text = "".join(i for i in answer if isinstance(i, str))
        assert text.strip(), "given the tool's result, the model did not answer in text"

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


# -- turn detector -----------------------------------------------------------

_FRAME_S = FRAME_MS / 1000
_POLL_S = 0.05  # how often the voice session polls
# Discord clients send five frames of silence when someone stops talking, then nothing.
_TRAILING_SILENCE_FRAMES = 5
_NEXT_KINDS = {
    "idle": ("speech",),
    "speaking": ("pause", "end", "dropped"),
    "paused": ("resumed", "end", "dropped"),
}
_STATE_AFTER = {
    "speech": "speaking",
    "resumed": "speaking",
    "pause": "paused",
    "end": "idle",
    "dropped": "idle",
}


@functools.lru_cache(maxsize=16)
def _espeak(text: str, rate: int = 150) -> AudioClip:
    """``text`` spoken by espeak-ng as 48 kHz stereo, cut to the sound on 20 ms frame
    boundaries (espeak pads with silence), so the first and last frames are speech."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: install it, or override the speech fixtures")
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", str(rate), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    clip = convert(read_wav(wav), DISCORD_RATE, 2)
    samples = np.frombuffer(clip.pcm, dtype="<i2").reshape(-1, 2)
    loud = np.flatnonzero(np.abs(samples[:, 0].astype(np.int32)) > 100)
    frame = DISCORD_FRAME_BYTES // 4
    first = loud[0] // frame * frame
    last = -(-(loud[-1] + 1) // frame) * frame
    return AudioClip(samples[first:last].tobytes(), DISCORD_RATE, 2)


def _discord_frames(clip: AudioClip) -> list[bytes]:
    """``clip`` as Discord delivers it: 20 ms frames of 48 kHz stereo (the tail padded)."""
    if clip.sample_rate != DISCORD_RATE or clip.channels != 2:
        clip = convert(clip, DISCORD_RATE, 2)
    pcm = clip.pcm + bytes(-len(clip.pcm) % DISCORD_FRAME_BYTES)
    return [pcm[i : i + DISCORD_FRAME_BYTES] for i in range(0, len(pcm), DISCORD_FRAME_BYTES)]


def _energy(clip: AudioClip) -> float:
    """Sum of squared samples of the clip's mono mix (what an utterance must keep)."""
    samples = np.frombuffer(clip.pcm, dtype="<i2").reshape(-1, clip.channels).astype(np.float64)
    return float(np.sum(samples.mean(axis=1) ** 2))


def _noise(seconds: float, rms: float = 3000.0) -> AudioClip:
    rng = np.random.default_rng(7)
    mono = np.clip(rng.standard_normal(round(DISCORD_RATE * seconds)) * rms, -32768, 32767)
    return AudioClip(np.repeat(mono.astype("<i2")[:, None], 2, axis=1).tobytes(), DISCORD_RATE, 2)


def _check_utterance(utterance: Any, kind: str, user_id: int) -> None:
    what = f"the {kind!r} utterance"
    assert isinstance(utterance, Utterance), f"{what} is {utterance!r}, not an Utterance"
    assert utterance.user_id == user_id, f"{what} has user_id {utterance.user_id}, not {user_id}"
    clip = utterance.clip
    assert isinstance(clip, AudioClip), f"{what}'s clip is {clip!r}"
    assert (clip.sample_rate, clip.channels) == (DISCORD_RATE, 1), (
        f"{what} is {clip.sample_rate} Hz x{clip.channels}; the protocol says 48 kHz mono"
    )
    if kind in ("pause", "end"):
        assert clip.pcm, f"{what} holds no audio"
    assert isinstance(utterance.speech_ms, int) and utterance.speech_ms >= 0
    assert utterance.speech_ms <= clip.duration * 1000 + FRAME_MS, (
        f"{what} claims {utterance.speech_ms} ms of speech in {clip.duration * 1000:.0f} ms"
    )
    assert isinstance(utterance.reason, str) and utterance.reason, f"{what} has no reason"
    if kind == "pause":
        assert utterance.reason == "pause", f"a pause utterance has reason {utterance.reason!r}"
    assert utterance.started <= utterance.ended, f"{what} ends before it starts"
    probability = utterance.speech_probability
    if probability is not None:
        assert 0.0 <= probability <= 1.0, f"{what} has speech_probability {probability}"


@dataclass
class TurnEvent:
    """One update a driven speaker reported: when (simulated seconds), what, and the
    speaker's ``speech_ms`` right after."""

    at: float
    kind: str
    utterance: Utterance | None
    speech_ms: int


class DrivenSpeaker:
    """Feeds a :class:`~hark.SpeakerTurns` the way voice-recv and the voice session do:
    20 ms frames with explicit timestamps, a poll every 50 ms, no packets while the
    speaker is quiet. Every update is checked against the protocol as it arrives (its
    order, its utterance, ``speaking`` and ``speech_ms``); ``settle(turns, update)``
    runs after each one."""

    def __init__(
        self,
        turns: SpeakerTurns,
        user_id: int,
        settle: Callable[[SpeakerTurns, TurnUpdate], None] | None = None,
        *,
        start: float = 1000.0,
    ) -> None:
        self.turns = turns
        self.user_id = user_id
        self.settle = settle
        self.now = start
        self.events: list[TurnEvent] = []
        self.state = "idle"  # what the updates so far say: idle, speaking, paused
        self.speech_started: float | None = None  # the first frame of the last speak()
        self.speech_ended: float | None = None  # its last frame
        # How many feed() / poll() calls were made, and the seconds spent inside them.
        self.feeds = self.polls = 0
        self.feed_seconds = self.poll_seconds = 0.0
        self._seen_ms = 0
        self._next_poll = start

    # -- low level: one call, checked ---------------------------------------------

    def feed(self, pcm: bytes, now: float | None = None) -> TurnUpdate | None:
        """One frame at ``now`` (None: the detector's own clock, as the session calls it)."""
        started = time.perf_counter()
        update = self.turns.feed(pcm) if now is None else self.turns.feed(pcm, now=now)
        self.feeds += 1
        self.feed_seconds += time.perf_counter() - started
        self._record(update, time.monotonic() if now is None else now)
        return update

    def poll(self, now: float | None = None) -> TurnUpdate | None:
        started = time.perf_counter()
        update = self.turns.poll() if now is None else self.turns.poll(now)
        self.polls += 1
        self.poll_seconds += time.perf_counter() - started
        self._record(update, time.monotonic() if now is None else now)
        return update

    def reset(self) -> None:
        self.turns.reset()
        self.state = "idle"
        self._seen_ms = 0
        self._check_state("after reset()")

    def _record(self, update: Any, at: float) -> None:
        if update is not None:
            assert isinstance(update, TurnUpdate), f"{update!r} is not a TurnUpdate or None"
            kind = update.kind
            history = " -> ".join(self.kinds()) or "nothing"
            assert kind in _NEXT_KINDS[self.state], (
                f"{kind!r} after {history}: while {self.state}, only"
                f" {'/'.join(_NEXT_KINDS[self.state])} may come"
            )
            if kind in ("pause", "end") or update.utterance is not None:
                _check_utterance(update.utterance, kind, self.user_id)
            self.state = _STATE_AFTER[kind]
            if self.state == "idle":
                self._seen_ms = 0
            self.events.append(TurnEvent(at, kind, update.utterance, self.turns.speech_ms))
        self._check_state(f"after {'/'.join(self.kinds()) or 'no updates'}")
        if update is not None and self.settle is not None:
            self.settle(self.turns, update)

    def _check_state(self, when: str) -> None:
        speaking, speech_ms = self.turns.speaking, self.turns.speech_ms
        assert speaking == (self.state != "idle"), (
            f"speaking is {speaking} {when}: it is True from `speech` until `end`,"
            " `dropped` or reset(), and only then"
        )
        assert isinstance(speech_ms, int), f"speech_ms is {speech_ms!r}, not an int"
        if self.state == "idle":
            assert speech_ms == 0, f"speech_ms is {speech_ms} while idle {when}"
        else:
            assert speech_ms >= self._seen_ms, (
                f"speech_ms went down from {self._seen_ms} to {speech_ms} within an utterance"
            )
            self._seen_ms = speech_ms

    # -- high level: simulated time -------------------------------------------------

    def frame(self, pcm: bytes) -> None:
        """The next 20 ms frame, and the polls that fall due meanwhile."""
        self.now = round(self.now + _FRAME_S, 6)
        self.feed(pcm, self.now)
        while self._next_poll <= self.now:
            self._next_poll = round(self._next_poll + _POLL_S, 6)
            self.poll(self.now)

    def speak(self, clip: AudioClip, *, trailing_silence: bool = True) -> None:
        """Every frame of ``clip``; then Discord's five frames of silence."""
        for i, pcm in enumerate(_discord_frames(clip)):
            self.frame(pcm)
            if i == 0:
                self.speech_started = self.now
        self.speech_ended = self.now
        if trailing_silence:
            self.silence_frames(_TRAILING_SILENCE_FRAMES)

    def silence_frames(self, count: int) -> None:
        for _ in range(count):
            self.frame(bytes(DISCORD_FRAME_BYTES))

    def quiet(self, seconds: float, *, until: tuple[str, ...] = ()) -> TurnEvent | None:
        """No packets for ``seconds``: only the session's polls. Stops early at the
        first update of a kind in ``until`` and returns it."""
        end = self.now + seconds
        seen = len(self.events)
        while self._next_poll <= end + 1e-9:
            self.now = self._next_poll
            self._next_poll = round(self._next_poll + _POLL_S, 6)
            self.poll(self.now)
            for event in self.events[seen:]:
                if event.kind in until:
                    return event
            seen = len(self.events)
        self.now = round(end, 6)
        return None

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def first(self, kind: str) -> TurnEvent:
        found = [e for e in self.events if e.kind == kind]
        assert found, f"no {kind!r} update; updates: {self.kinds()}"
        return found[0]

    def last(self, kind: str) -> TurnEvent:
        found = [e for e in self.events if e.kind == kind]
        assert found, f"no {kind!r} update; updates: {self.kinds()}"
        return found[-1]


class TurnDetectorContract(_Contract):
    """Contract for :class:`hark.TurnDetector` and the :class:`~hark.SpeakerTurns` it opens.

    Fixtures: ``turn_detector`` (required), ``voice_settings`` (what the session passes
    to ``open``), ``speech`` and ``paused_speech`` (espeak-ng by default),
    ``broken_turn_detector``. Speakers are driven in simulated time
    (:class:`DrivenSpeaker`); a detector that decides in the background (a model judging
    a pause on a worker thread) overrides :meth:`settle` to wait for its verdict, so
    simulated time does not outrun it.
    """

    #: A complete sentence: speech, then silence, must end as one turn.
    sentence: str = "Please turn on the kitchen lights."
    #: Said with a pause between the halves: the first alone must not end the turn.
    paused_sentence: tuple[str, str] = ("Remind me to call my", "mother tomorrow.")
    #: Silence (simulated seconds) after which a turn must have ended.
    end_within_s: float = 3.0
    #: Silence between the halves of ``paused_sentence``: past ``pause_ms``, short of an end.
    pause_gap_s: float = 0.45
    #: How soon ``speech`` (and ``resumed``) must follow the first frame of speech.
    speech_within_ms: int = 300
    #: The detector reports ``pause`` (``pause_ms`` of trailing silence) before ``end``.
    pauses: bool = True
    #: Mean milliseconds feed() and poll() may each take (a frame is 20 ms, for every speaker).
    max_call_ms: float = 5.0
    #: Longest the event loop may stall while warm() runs.
    max_stall_s: float = 0.5

    @pytest.fixture
    def turn_detector(self) -> TurnDetector:
        raise NotImplementedError("override the `turn_detector` fixture in your test class")

    @pytest.fixture
    def voice_settings(self) -> dict[str, Any]:
        """What the voice session passes to ``open()``: the server's voice settings."""
        from hark.voice.session import VOICE_DEFAULTS

        return dict(VOICE_DEFAULTS)

    @pytest.fixture
    def speech(self) -> AudioClip:
        """``sentence`` spoken, cut to the sound (any rate: it is converted to Discord's)."""
        return _espeak(self.sentence)

    @pytest.fixture
    def paused_speech(self) -> tuple[AudioClip, AudioClip]:
        """The two halves of ``paused_sentence``, spoken."""
        return _espeak(self.paused_sentence[0]), _espeak(self.paused_sentence[1])

    @pytest.fixture
    def broken_turn_detector(self) -> TurnDetector | None:
        return None

    def settle(self, turns: SpeakerTurns, update: TurnUpdate) -> None:
        """Called after every update; override to wait for work the detector started in
        the background (e.g. a model judging a pause), so the next call sees its result."""

    def driven(
        self,
        detector: TurnDetector,
        voice_settings: dict[str, Any],
        user_id: int = 1,
        guild_id: int | None = 1,
        **overrides: Any,
    ) -> DrivenSpeaker:
        turns = detector.open(user_id, guild_id=guild_id, **{**voice_settings, **overrides})
        assert isinstance(turns, SpeakerTurns), f"open() returned {turns!r}, not a SpeakerTurns"
        return DrivenSpeaker(turns, user_id, self.settle)

    def _check_whole_turn(self, end: TurnEvent, *clips: AudioClip) -> None:
        assert end.utterance is not None
        heard = sum(_energy(c) for c in clips)
        kept = _energy(end.utterance.clip)
        assert kept >= 0.9 * heard, (
            f"the end utterance keeps {kept / heard:.0%} of the speech's energy: the whole"
            " turn (its first phoneme included) belongs in it"
        )

    # -- the provider ------------------------------------------------------------------

    async def test_identity(self, turn_detector: TurnDetector) -> None:
        assert isinstance(turn_detector, TurnDetector), f"{turn_detector!r} is not a TurnDetector"
        assert turn_detector.capability == Capability.TURN
        ident = turn_detector.id
        assert isinstance(ident, str) and ident, "provider.id must be a non-empty string"
        assert not any(c.isspace() for c in ident), f"provider.id {ident!r} has whitespace"
        reason = turn_detector.unavailable_reason()
        assert reason is None, f"a configured detector should be available, but says: {reason!r}"

    async def test_warm_does_not_block_the_loop(self, turn_detector: TurnDetector) -> None:
        stalls: list[float] = []
        stop = asyncio.Event()

        async def heartbeat() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                stalls.append(now - last - 0.01)
                last = now

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        try:
            await _within(self.deadline, turn_detector.warm(), "warm()")
            await _within(self.deadline, turn_detector.warm(), "a second warm()")
        finally:
            stop.set()
            await beat
        assert max(stalls, default=0.0) <= self.max_stall_s, (
            f"the event loop stalled {max(stalls):.2f}s during warm(): run CPU work in an executor"
        )

    async def test_broken_detector_says_why(
        self, broken_turn_detector: TurnDetector | None
    ) -> None:
        _skip_without(broken_turn_detector, "broken_turn_detector")
        assert broken_turn_detector is not None
        reason = broken_turn_detector.unavailable_reason()
        assert isinstance(reason, str) and reason, (
            f"a broken detector must say why in unavailable_reason(), not {reason!r}"
        )
        # warm() may fail (the session logs it), but must not hang.
        with contextlib.suppress(Exception):
            await _within(self.deadline, broken_turn_detector.warm(), "warm() of a broken one")

    async def test_open(self, turn_detector: TurnDetector, voice_settings: dict[str, Any]) -> None:
        await _within(self.deadline, turn_detector.warm(), "warm()")
        settings = {**voice_settings, "a_setting_from_a_newer_core": 1}
        started = time.perf_counter()
        opened = [turn_detector.open(uid, guild_id=None, **settings) for uid in range(20)]
        elapsed = time.perf_counter() - started
        opened.append(turn_detector.open(42, guild_id=7, **settings))
        for uid, turns in [*enumerate(opened[:-1]), (42, opened[-1])]:
            assert isinstance(turns, SpeakerTurns), f"open() returned {turns!r}"
            assert turns.user_id == uid, f"open({uid}) gave the speaker of {turns.user_id}"
            assert turns.speaking is False and turns.speech_ms == 0
        turns = opened[-1]
        assert turns.poll() is None, "an idle speaker reported something (real clock)"
        assert turns.poll(now=1000.0) is None
        turns.reset()  # harmless while idle
        assert turns.speaking is False and turns.speech_ms == 0
        assert elapsed <= 1.0, (
            f"opening 20 speakers took {elapsed:.2f}s: open() may run on the router thread"
        )

    # -- what a speaker reports -------------------------------------------------------

    @pytest.mark.parametrize("packets", ["stop", "silence frames"])
    async def test_silence_is_not_speech(
        self, turn_detector: TurnDetector, voice_settings: dict[str, Any], packets: str
    ) -> None:
        s = self.driven(turn_detector, voice_settings)
        if packets == "stop":
            s.silence_frames(_TRAILING_SILENCE_FRAMES)
            s.quiet(self.end_within_s)
        else:  # an open mic sending digital silence
            s.silence_frames(round(self.end_within_s / _FRAME_S))
        assert s.events == [], f"silence alone gave {s.kinds()}"

    @pytest.mark.parametrize("packets", ["stop", "silence frames"])
    async def test_speech_then_silence_ends_the_turn(
        self,
        turn_detector: TurnDetector,
        voice_settings: dict[str, Any],
        speech: AudioClip,
        packets: str,
    ) -> None:
        s = self.driven(turn_detector, voice_settings, user_id=77)
        s.silence_frames(10)
        s.speak(speech)
        assert s.kinds()[:1] == ["speech"], f"no speech update during the speech: {s.kinds()}"
        assert s.speech_started is not None and s.speech_ended is not None
        lag_ms = (s.first("speech").at - s.speech_started) * 1000
        assert lag_ms <= self.speech_within_ms, f"speech was reported {lag_ms:.0f} ms late"
        assert s.turns.speech_ms >= 0.4 * speech.duration * 1000, (
            f"only {s.turns.speech_ms} ms of speech counted in {speech.duration:.2f}s of it"
        )
        if packets == "stop":
            s.quiet(self.end_within_s)
        else:  # a client that keeps sending silence
            s.silence_frames(round(self.end_within_s / _FRAME_S))

        assert s.kinds().count("speech") == 1, f"one sentence, several utterances: {s.kinds()}"
        assert s.kinds()[-1] == "end", f"no end within {self.end_within_s}s: {s.kinds()}"
        end = s.last("end")
        utterance = end.utterance
        assert utterance is not None
        self._check_whole_turn(end, speech)
        assert utterance.speech_ms >= int(voice_settings.get("min_speech_ms") or 0)
        assert utterance.started <= s.first("speech").at <= utterance.ended <= end.at + 1e-6
        probability = voice_settings.get("min_speech_probability")
        if utterance.speech_probability is not None and probability is not None:
            assert utterance.speech_probability >= float(probability), (
                f"real speech scored {utterance.speech_probability}: the session ignores it"
            )
        if self.pauses:
            assert "pause" in s.kinds(), f"no pause before the end: {s.kinds()}"
            pause = s.last("pause")
            assert pause.utterance is not None
            late = pause.at - s.speech_ended - int(voice_settings.get("pause_ms", 200)) / 1000
            assert late <= 0.2, f"the pause came {late:.2f}s after pause_ms of silence"
            if s.kinds()[-2] == "pause":  # nothing heard since: same audio, same speech_ms
                assert utterance.speech_ms == pause.utterance.speech_ms
                assert utterance.clip.pcm.startswith(pause.utterance.clip.pcm), (
                    "the end utterance is not the audio of the pause before it"
                )

    async def test_speech_after_a_pause_resumes_the_turn(
        self,
        turn_detector: TurnDetector,
        voice_settings: dict[str, Any],
        paused_speech: tuple[AudioClip, AudioClip],
    ) -> None:
        if not self.pauses:
            pytest.skip("pauses is False: this detector never reports a pause")
        first, second = paused_speech
        s = self.driven(turn_detector, voice_settings)
        s.speak(first)
        assert s.speech_ended is not None
        gap = f"{self.pause_gap_s * 1000:.0f} ms of silence"
        pause = s.quiet(s.speech_ended + self.pause_gap_s - s.now, until=("pause",))
        assert pause is not None, f"no pause after {gap}: {s.kinds()}"
        assert pause.utterance is not None
        s.quiet(s.speech_ended + self.pause_gap_s - s.now)
        assert s.kinds() == ["speech", "pause"], (
            f"{s.kinds()} after half a sentence and {gap}: the turn is not over"
        )
        s.speak(second)
        assert s.speech_started is not None
        assert "resumed" in s.kinds(), f"speech after a pause, but no resumed: {s.kinds()}"
        lag_ms = (s.first("resumed").at - s.speech_started) * 1000
        assert lag_ms <= self.speech_within_ms, f"resumed was reported {lag_ms:.0f} ms late"
        assert s.turns.speech_ms > pause.utterance.speech_ms, "speech_ms did not grow on resuming"
        s.quiet(self.end_within_s)
        assert s.kinds().count("speech") == 1, f"a resumed turn became two: {s.kinds()}"
        assert s.kinds()[-1] == "end", f"no end within {self.end_within_s}s: {s.kinds()}"
        end = s.last("end")
        assert end.utterance is not None
        assert end.utterance.speech_ms > pause.utterance.speech_ms
        self._check_whole_turn(end, first, second)

    @pytest.mark.parametrize("blip", ["speech", "tone", "click"])
    async def test_a_short_sound_is_not_a_turn(
        self,
        turn_detector: TurnDetector,
        voice_settings: dict[str, Any],
        speech: AudioClip,
        blip: str,
    ) -> None:
        min_speech_ms = int(voice_settings.get("min_speech_ms") or 0)
        if min_speech_ms < 200:
            pytest.skip(f"min_speech_ms is {min_speech_ms}: nothing is too short")
        if blip == "speech":  # the loudest 160 ms of a word
            frames = _discord_frames(speech)
            loudest = max(
                range(len(frames) - 8), key=lambda i: _energy(AudioClip(frames[i], DISCORD_RATE, 2))
            )
            sound = AudioClip(b"".join(frames[loudest : loudest + 8]), DISCORD_RATE, 2)
        elif blip == "tone":
            from hark.testing.fakes import tone

            sound = tone(0.1, DISCORD_RATE, 2)
        else:
            sound = _noise(0.04)
        s = self.driven(turn_detector, voice_settings)
        s.silence_frames(10)
        s.speak(sound)
        s.quiet(self.end_within_s)
        threshold = float(voice_settings.get("min_speech_probability") or 0.0)
        for event in s.events:
            if event.kind == "end":
                assert event.utterance is not None
                probability = event.utterance.speech_probability
                assert probability is not None and probability < threshold, (
                    f"{sound.duration * 1000:.0f} ms of {blip} ended as a turn"
                    f" ({event.utterance.speech_ms} ms of speech): it must be dropped"
                )
        assert s.state == "idle", f"the {blip} left an utterance open: {s.kinds()}"

    async def test_speakers_are_independent(
        self,
        turn_detector: TurnDetector,
        voice_settings: dict[str, Any],
        speech: AudioClip,
        paused_speech: tuple[AudioClip, AudioClip],
    ) -> None:
        """Two people talk at once while a third is silent: each speaker's turn holds
        only their own audio, and the silent one hears nothing."""
        other = paused_speech[1]
        a = self.driven(turn_detector, voice_settings, user_id=1)
        b = self.driven(turn_detector, voice_settings, user_id=2)
        c = self.driven(turn_detector, voice_settings, user_id=3)
        silent = bytes(DISCORD_FRAME_BYTES)
        frames_a, frames_b = _discord_frames(speech), _discord_frames(other)
        for i in range(max(len(frames_a), len(frames_b)) + _TRAILING_SILENCE_FRAMES):
            a.frame(frames_a[i] if i < len(frames_a) else silent)
            c.frame(silent)
            b.frame(frames_b[i] if i < len(frames_b) else silent)
        for s in (a, b, c):
            s.quiet(self.end_within_s)
        assert c.events == [], f"a silent speaker reported {c.kinds()} while others talked"
        for s, clip in ((a, speech), (b, other)):
            assert s.kinds().count("speech") == 1 and s.kinds()[-1] == "end", (
                f"user {s.user_id}: {s.kinds()}"
            )
            end = s.last("end")
            assert end.utterance is not None
            self._check_whole_turn(end, clip)
            assert _energy(end.utterance.clip) <= 1.1 * _energy(clip), (
                f"user {s.user_id}'s turn holds more than their own audio"
            )

    @pytest.mark.parametrize("when", ["speaking", "paused"])
    async def test_reset_forgets_the_utterance(
        self,
        turn_detector: TurnDetector,
        voice_settings: dict[str, Any],
        speech: AudioClip,
        paused_speech: tuple[AudioClip, AudioClip],
        when: str,
    ) -> None:
        s = self.driven(turn_detector, voice_settings)
        if when == "speaking":
            s.speak(speech, trailing_silence=False)
            assert s.state == "speaking", f"{s.kinds()} after a whole sentence"
        else:
            if not self.pauses:
                pytest.skip("pauses is False: this detector never reports a pause")
            s.speak(paused_speech[0])
            assert s.speech_ended is not None
            pause = s.quiet(s.speech_ended + self.pause_gap_s - s.now, until=("pause",))
            assert pause is not None, f"no pause: {s.kinds()}"
        before = len(s.events)
        s.reset()
        reset_at = s.now
        s.quiet(self.end_within_s)
        assert s.kinds()[before:] == [], f"updates about a reset utterance: {s.kinds()[before:]}"
        s.speak(paused_speech[1])
        s.quiet(self.end_within_s)
        after = s.kinds()[before:]
        assert after[:1] == ["speech"] and after[-1:] == ["end"], f"after reset(): {after}"
        assert after.count("speech") == 1, f"after reset(): {after}"
        end = s.last("end")
        assert end.utterance is not None
        assert end.utterance.started >= reset_at - 1e-6, "the turn after reset() starts before it"
        assert end.utterance.clip.duration <= end.at - reset_at + _FRAME_S, (
            "the turn after reset() holds audio from before it"
        )
        self._check_whole_turn(end, paused_speech[1])

    async def test_long_speech_is_cut_at_max_utterance_ms(
        self,
        turn_detector: TurnDetector,
        voice_settings: dict[str, Any],
        speech: AudioClip,
    ) -> None:
        limit_ms = 1000
        if speech.duration * 1000 < 1.5 * limit_ms:
            pytest.skip("the speech fixture is too short to be cut")
        s = self.driven(turn_detector, voice_settings, max_utterance_ms=limit_ms)
        s.speak(speech)
        assert s.speech_ended is not None
        cut = [e for e in s.events if e.kind == "end" and e.at <= s.speech_ended]
        assert cut, f"{speech.duration:.2f}s of speech, max_utterance_ms={limit_ms}: {s.kinds()}"
        assert cut[0].utterance is not None
        length = cut[0].utterance.clip.duration * 1000
        assert length <= limit_ms + 500, f"cut at {length:.0f} ms, max_utterance_ms={limit_ms}"
        assert "speech" in s.kinds()[s.events.index(cut[0]) + 1 :], (
            f"the speech after the cut was not a new utterance: {s.kinds()}"
        )
        s.quiet(self.end_within_s)
        assert s.state == "idle", f"the speech after the cut never ended: {s.kinds()}"

    # -- how the session calls it ------------------------------------------------------

    async def test_now_defaults_to_the_monotonic_clock(
        self, turn_detector: TurnDetector, voice_settings: dict[str, Any], speech: AudioClip
    ) -> None:
        """The session calls ``feed(pcm)`` and ``poll()``: times are time.monotonic()."""
        s = self.driven(turn_detector, voice_settings)
        began = time.monotonic()
        for pcm in [*_discord_frames(speech), *[bytes(DISCORD_FRAME_BYTES)] * 5]:
            s.feed(pcm)
        fed = time.monotonic()
        assert "speech" in s.kinds(), f"no speech update with the default clock: {s.kinds()}"
        steps = round(self.end_within_s / _POLL_S)
        for step in range(1, steps + 1):
            s.poll(fed + step * _POLL_S)
            if s.state == "idle":
                break
        assert s.kinds()[-1] == "end", f"no end with the default clock: {s.kinds()}"
        end = s.last("end")
        assert end.utterance is not None
        slack = speech.duration + int(voice_settings.get("pre_roll_ms", 300)) / 1000 + 1.0
        assert began - slack <= end.utterance.started <= fed, (
            f"Utterance.started={end.utterance.started}, time.monotonic() was {began}..{fed}"
        )
        assert began <= end.utterance.ended <= fed + self.end_within_s + _POLL_S

    async def test_feed_on_another_thread_while_the_loop_polls(
        self, turn_detector: TurnDetector, voice_settings: dict[str, Any], speech: AudioClip
    ) -> None:
        """Frames come on voice-recv's router thread (no event loop there) while the
        event loop polls: the detector keeps its state consistent across both."""
        turns = turn_detector.open(5, guild_id=1, **voice_settings)
        frames = [*_discord_frames(speech), *[bytes(DISCORD_FRAME_BYTES)] * 5]
        updates: list[TurnUpdate] = []
        errors: list[BaseException] = []
        start = 1000.0
        latest = [start]

        def router() -> None:
            try:
                for i, pcm in enumerate(frames, 1):
                    now = round(start + i * _FRAME_S, 6)
                    update = turns.feed(pcm, now=now)
                    _ = turns.speech_ms  # the session reads it after every frame
                    latest[0] = now
                    if update is not None:
                        updates.append(update)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=router, name="contract-router", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                update = turns.poll(now=latest[0])
                if update is not None:
                    updates.append(update)
                await asyncio.sleep(0.001)
        finally:
            thread.join(self.deadline)
        if errors:
            raise errors[0]
        now = latest[0]
        for _ in range(round(self.end_within_s / _POLL_S)):
            now = round(now + _POLL_S, 6)
            update = turns.poll(now=now)
            if update is not None:
                updates.append(update)
                self.settle(turns, update)
            if update is not None and update.kind in ("end", "dropped"):
                break
        kinds = [u.kind for u in updates]
        assert kinds.count("speech") == 1, f"one sentence, fed on a thread: {kinds}"
        assert kinds[-1:] == ["end"], f"no end when fed on a thread: {kinds}"
        utterance = updates[-1].utterance
        _check_utterance(utterance, "end", 5)
        assert not turns.speaking and turns.speech_ms == 0, "still speaking after the end"

    async def test_calls_are_cheap(
        self, turn_detector: TurnDetector, voice_settings: dict[str, Any], speech: AudioClip
    ) -> None:
        """Every speaker's every frame runs on one router thread: heavy work only at pauses."""
        await _within(self.deadline, turn_detector.warm(), "warm()")
        s = self.driven(turn_detector, voice_settings)
        s.speak(speech)
        s.quiet(self.end_within_s)
        for call, seconds, count in (
            ("feed()", s.feed_seconds, s.feeds),
            ("poll()", s.poll_seconds, s.polls),
        ):
            mean_ms = seconds / count * 1000
            assert mean_ms <= self.max_call_ms, (
                f"{call} took {mean_ms:.2f} ms on average (at most {self.max_call_ms:g} ms):"
                " run models only at pauses, off the caller's thread if they are slow"
            )
