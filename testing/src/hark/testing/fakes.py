"""Scriptable fake providers, for Hark's own tests and for plugin authors'.

Each fake is a real subclass of a core provider class, so its public method
(``generate``, ``transcribe``, ``synthesize``, ``provide``) runs through the real
core wrapper: deadline, retries with backoff, metrics, error wrapping. Script a
fake with constructor arguments:

``fail_with``
    Exceptions raised by successive calls, one per call (retries count as
    calls), before the fake starts succeeding. ``[ProviderStatusError("busy",
    status=503)]`` makes the first try fail and the retry succeed.
``delay``
    Seconds to sleep before answering (before each chunk, for streams), e.g.
    longer than ``timeout`` to provoke a :class:`~hark.ProviderTimeoutError`.
``name``, ``timeout``, ``retry``, ``default_priority``, ``unavailable``
    The usual provider attributes; ``unavailable`` is what
    :meth:`~hark.Provider.unavailable_reason` returns.

Fakes retry fast by default (:data:`FAST_RETRY`) so tests do not sleep; pass
``retry=RetryPolicy(...)`` to exercise real backoff. Every fake records what it
was asked (``requests``, ``clips``, ``texts``) and counts ``calls`` to its
``_impl``. :func:`fake_plugin` wraps providers in an in-memory plugin module for
a :class:`~hark.plugins.PluginManager`.

    gen = FakeGenerator(["Hi!", "Bye."], fail_with=[ProviderConnectionError("down")])
    assert await gen.complete([PromptMessage("user", "hello")]) == "Hi!"
    assert gen.calls == 2 and gen.stats.retries == 1

A generator that calls a tool, then answers with its result (``supports_tools``)::

    gen = FakeGenerator(
        [["Let me roll.", tool_call("roll_die", sides=6)], lambda m: tool_results(m)[0]],
        supports_tools=True,
    )
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
import sys
import types
from array import array
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypedDict, Unpack

from hark.hookspecs import hookimpl
from hark.providers import (
    AudioClip,
    ContextPart,
    ContextProvider,
    ContextRequest,
    GenerationRequest,
    Generator,
    PromptMessage,
    Provider,
    RetryPolicy,
    Synthesizer,
    ToolCall,
    Transcriber,
    Transcript,
)
from hark.providers.errors import ProviderConnectionError

__all__ = [
    "FAST_RETRY",
    "EchoGenerator",
    "FakeContextProvider",
    "FakeGenerator",
    "FakeSynthesizer",
    "FakeTranscriber",
    "fake_plugin",
    "silence",
    "split_sentences",
    "tone",
    "tool_call",
    "tool_results",
]

#: Same number of tries as the core default, but milliseconds between them.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.002, max_delay=0.01, max_retry_after=30.0)

_KEEP = object()  # "leave the class default" for timeout / retry


# -- audio helpers ---------------------------------------------------------


def tone(
    seconds: float,
    sample_rate: int = 48_000,
    channels: int = 1,
    *,
    frequency: float = 440.0,
    amplitude: float = 0.3,
) -> AudioClip:
    """A sine tone as an s16le :class:`~hark.AudioClip` (deterministic)."""
    frames = max(0, round(seconds * sample_rate))
    peak = int(32767 * max(0.0, min(1.0, amplitude)))
    step = 2 * math.pi * frequency / sample_rate
    samples = array("h")
    for i in range(frames):
        value = int(peak * math.sin(step * i))
        samples.extend([value] * channels)
    if sys.byteorder == "big":
        samples.byteswap()
    return AudioClip(samples.tobytes(), sample_rate, channels)


def silence(seconds: float, sample_rate: int = 48_000, channels: int = 1) -> AudioClip:
    """Digital silence as an s16le :class:`~hark.AudioClip`."""
    frames = max(0, round(seconds * sample_rate))
    return AudioClip(bytes(frames * channels * AudioClip.SAMPLE_WIDTH), sample_rate, channels)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """``text`` cut after ``.``, ``!`` and ``?``; blank pieces dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


# -- shared scripting ------------------------------------------------------


class _Options(TypedDict, total=False):
    """The keyword arguments every fake takes (see the module docs)."""

    delay: float
    fail_with: Iterable[BaseException]
    name: str
    timeout: float
    retry: RetryPolicy
    default_priority: int
    unavailable: str | None


class _Scripted(Provider):
    """The scripting every fake shares; not a provider kind by itself."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        fail_with: Iterable[BaseException] = (),
        name: str = "",
        timeout: float = _KEEP,  # type: ignore[assignment]
        retry: RetryPolicy = FAST_RETRY,
        default_priority: int = 0,
        unavailable: str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        if timeout is not _KEEP:
            self.timeout = timeout
        if retry is not _KEEP:
            self.retry = retry
        self.default_priority = default_priority
        self.unavailable = unavailable
        self.fail_with: list[BaseException] = list(fail_with)
        self.delay = delay
        #: Times ``_impl`` was entered (failed tries and retries included).
        self.calls = 0

    def unavailable_reason(self) -> str | None:
        return self.unavailable

    async def _begin(self) -> None:
        """One ``_impl`` call starts: count it, wait ``delay``, raise the next scripted error."""
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with:
            raise self.fail_with.pop(0)


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _pick(script: Any, index: int) -> Any:
    """A str stays itself; a sequence gives its ``index``-th item, its last once used up."""
    if isinstance(script, str | ToolCall) or callable(script):
        return script
    items = list(script)
    if not items:
        raise ValueError("an empty list of scripted answers")
    return items[min(index, len(items) - 1)]


# -- generators --------------------------------------------------------------


def tool_call(name: str, id: str = "", /, **arguments: Any) -> ToolCall:
    """A scripted tool call: ``tool_call("roll_die", sides=6)`` (arguments as JSON text;
    an empty ``id`` is filled in by the core, ``call_1``, ``call_2``...). ``name`` and
    ``id`` are positional, so a tool's arguments may use those names too."""
    return ToolCall(id=id, name=name, arguments=json.dumps(arguments))


def tool_results(messages: Sequence[PromptMessage]) -> list[str]:
    """The contents of the ``tool`` messages after the last user message (the results
    the model was just given), for a scripted reply that reads them."""
    out: list[str] = []
    for message in reversed(messages):
        if message.role == "user":
            break
        if message.role == "tool":
            out.append(message.content)
    return out[::-1]


# One call's output: text, a tool call, or several of them in order.
Reply = str | ToolCall | Sequence[str | ToolCall]


def _items(reply: Any) -> list[str | ToolCall]:
    if isinstance(reply, str | ToolCall):
        return [reply]
    items = list(reply)
    for item in items:
        if not isinstance(item, str | ToolCall):
            raise TypeError(f"a scripted reply holds str and ToolCall items, not {item!r}")
    return items


class FakeGenerator(_Scripted, Generator):
    """A generator that streams scripted replies in ``chunk_size``-character deltas.

    ``replies`` is a reply (every call), a list of replies (successive calls, the
    last one repeating) or a callable ``(messages) -> reply`` (may be async). A
    reply is a string, a :class:`~hark.ToolCall` (see :func:`tool_call`), or a list
    of both, streamed in order: ``["Let me look.", tool_call("weather", city="Oslo")]``.
    ``streams=False`` yields each reply's text in one piece (a backend that does not
    stream), tool calls after it.
    ``fail_after_chars=n`` makes every stream break with
    :class:`~hark.ProviderConnectionError` once it has yielded the first ``n``
    characters. ``models`` turns on ``supports_model_listing``; ``supports_tools`` and
    ``supports_vision`` set those capability flags (without ``supports_tools`` the
    core offers no tools and a scripted tool call is a ``BadOutputError``).
    Every request is kept in ``requests``: its ``messages`` (images included) and
    ``tools`` show what reached the model.
    """

    def __init__(
        self,
        replies: Reply | Sequence[Reply] | Callable[[list[PromptMessage]], Any] = (
            "Hello from the fake generator."
        ),
        *,
        chunk_size: int = 8,
        streams: bool = True,
        fail_after_chars: int | None = None,
        models: Sequence[str] | None = None,
        supports_tools: bool = False,
        supports_vision: bool = False,
        **options: Unpack[_Options],
    ) -> None:
        super().__init__(**options)
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.replies = replies
        self.chunk_size = chunk_size
        self.streams = streams
        self.fail_after_chars = fail_after_chars
        self.models = None if models is None else list(models)
        self.supports_model_listing = models is not None
        self.supports_tools = supports_tools
        self.supports_vision = supports_vision
        #: Every request ``_impl`` received, retries included.
        self.requests: list[GenerationRequest] = []
        #: Streams currently inside ``_impl`` (0 once every stream was finished or closed).
        self.open_streams = 0
        self._answered = 0

    @property
    def offered_tools(self) -> list[list[str]]:
        """The names of the tools each request offered, in order."""
        return [[spec.name for spec in request.tools] for request in self.requests]

    async def reply_for(self, request: GenerationRequest) -> list[str | ToolCall]:
        """What this call will stream: text and tool calls, in order."""
        script = _pick(self.replies, self._answered)
        self._answered += 1
        if callable(script):
            script = await _resolve(script(list(request.messages)))
        return _items(script)

    async def _impl(self, request: GenerationRequest) -> AsyncIterator[str | ToolCall]:
        self.requests.append(request)
        self.open_streams += 1
        try:
            await self._begin()
            items = await self.reply_for(request)
            text = "".join(i for i in items if isinstance(i, str))
            breaks = self.fail_after_chars is not None and self.fail_after_chars < len(text)
            limit = self.fail_after_chars if breaks else len(text)
            if not self.streams:  # all the text at once, then the calls
                calls = [i for i in items if isinstance(i, ToolCall)]
                items = [text, *calls] if text else calls
            size = self.chunk_size if self.streams else max(1, len(text))
            sent = 0
            for item in items:
                if isinstance(item, ToolCall):
                    yield item
                    continue
                for start in range(0, len(item), size):
                    if sent >= limit:
                        raise ProviderConnectionError("the fake stream broke")
                    if sent and self.delay:
                        await asyncio.sleep(self.delay)
                    piece = item[start : start + size][: limit - sent]
                    sent += len(piece)
                    yield piece
            if breaks:
                raise ProviderConnectionError("the fake stream broke")
        finally:
            self.open_streams -= 1

    async def _list_models_impl(self) -> list[str]:
        if self.models is None:
            raise NotImplementedError
        await self._begin()
        return list(self.models)


def _last_user_message(messages: list[PromptMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.content.strip():
            return message.content
    return "(nothing to echo)"


class EchoGenerator(FakeGenerator):
    """Replies with the last user message: handy for end-to-end tests."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_last_user_message, **kwargs)


# -- transcriber -------------------------------------------------------------


class FakeTranscriber(_Scripted, Transcriber):
    """Returns scripted text: a string, a list (successive calls) or ``(clip) -> str``.

    Records every clip in ``clips`` and the keyword arguments in ``options``.
    """

    def __init__(
        self,
        text: str | Sequence[str] | Callable[[AudioClip], Any] = "hello world",
        *,
        language: str | None = "en",
        **options: Unpack[_Options],
    ) -> None:
        super().__init__(**options)
        self.text = text
        self.language = language
        self.clips: list[AudioClip] = []
        self.options: list[dict[str, Any]] = []

    async def _impl(
        self, clip: AudioClip, *, language: str | None, prompt: str | None, guild_id: int | None
    ) -> Transcript:
        self.clips.append(clip)
        self.options.append({"language": language, "prompt": prompt, "guild_id": guild_id})
        await self._begin()
        script = _pick(self.text, len(self.clips) - 1)
        text = str(await _resolve(script(clip))) if callable(script) else script
        return Transcript(
            text=text,
            language=language or self.language,
            confidence=1.0,
            duration=clip.duration,
        )


# -- synthesizer -------------------------------------------------------------


class FakeSynthesizer(_Scripted, Synthesizer):
    """Speaks every sentence as a sine tone, ``seconds_per_char`` long per character.

    Streams one clip per sentence (or one clip for everything with
    ``streams=False``) in the declared ``sample_rate`` / ``channels``. Output is
    deterministic, so tests can compare PCM. ``fail_after_chunks=n`` breaks every
    stream with :class:`~hark.ProviderConnectionError` after ``n`` clips.
    Records every text in ``texts``.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 48_000,
        channels: int = 1,
        seconds_per_char: float = 0.01,
        frequency: float = 440.0,
        streams: bool = True,
        fail_after_chunks: int | None = None,
        **options: Unpack[_Options],
    ) -> None:
        super().__init__(**options)
        self.sample_rate = sample_rate
        self.channels = channels
        self.seconds_per_char = seconds_per_char
        self.frequency = frequency
        self.streams = streams
        self.fail_after_chunks = fail_after_chunks
        self.texts: list[str] = []
        self.open_streams = 0

    def clip_for(self, sentence: str) -> AudioClip:
        """The clip this fake speaks for ``sentence``."""
        seconds = max(1, len(sentence)) * self.seconds_per_char
        return tone(seconds, self.sample_rate, self.channels, frequency=self.frequency)

    async def _impl(self, text: str, *, guild_id: int | None) -> AsyncIterator[AudioClip]:
        self.texts.append(text)
        self.open_streams += 1
        try:
            await self._begin()
            pieces = split_sentences(text)
            if not self.streams and pieces:
                pieces = [" ".join(pieces)]
            for index, sentence in enumerate(pieces):
                if self.fail_after_chunks is not None and index >= self.fail_after_chunks:
                    raise ProviderConnectionError("the fake stream broke")
                if index and self.delay:
                    await asyncio.sleep(self.delay)
                yield self.clip_for(sentence)
        finally:
            self.open_streams -= 1


# -- context provider --------------------------------------------------------


class FakeContextProvider(_Scripted, ContextProvider):
    """Contributes scripted messages at ``order``.

    ``messages`` is None (contribute nothing), a string (one system message), a
    list of :class:`~hark.PromptMessage`, or a callable ``(request) -> any of
    those or a ContextPart`` (may be async). Records every request in
    ``requests`` and every :meth:`record` call in ``recorded``.
    """

    def __init__(
        self,
        messages: str | Sequence[PromptMessage] | Callable[[ContextRequest], Any] | None = None,
        *,
        order: int = 50,
        **options: Unpack[_Options],
    ) -> None:
        # Unlike the other fakes, it keeps the class default retry policy unless given one.
        options.setdefault("retry", _KEEP)  # type: ignore[typeddict-item]
        super().__init__(**options)
        self.messages = messages
        self.order = order
        self.requests: list[ContextRequest] = []
        self.recorded: list[tuple[ContextRequest, str]] = []

    async def _impl(self, request: ContextRequest) -> ContextPart | None:
        self.requests.append(request)
        await self._begin()
        script = self.messages
        if callable(script):
            script = await _resolve(script(request))
        if script is None or isinstance(script, ContextPart):
            return script
        if isinstance(script, str):
            script = [PromptMessage("system", script)]
        return ContextPart(messages=list(script), order=self.order)

    async def record(self, request: ContextRequest, reply: str) -> None:
        self.recorded.append((request, reply))


# -- plugin modules ----------------------------------------------------------

_HOOK_FOR = {
    Transcriber: "register_transcribers",
    Generator: "register_generators",
    Synthesizer: "register_synthesizers",
    ContextProvider: "register_context_providers",
}


def fake_plugin(
    *providers: Provider,
    doc: str = "A fake plugin.",
    default_enabled: bool = True,
    cogs: Sequence[type] = (),
    tools: Sequence[Any] = (),
) -> types.ModuleType:
    """An in-memory plugin module whose hooks register ``providers`` (and ``cogs``, and
    ``tools``: ``hark.Tool`` or ``hark.Toolbox`` objects).

        manager.add(fake_plugin(FakeGenerator("hi")), "fakegen")

    Use fresh provider objects per manager: registering sets their ``plugin_id``.
    """
    module = types.ModuleType("hark_fake_plugin", doc)
    module.DEFAULT_ENABLED = default_enabled  # type: ignore[attr-defined]
    for kind, hook_name in _HOOK_FOR.items():
        mine = [p for p in providers if isinstance(p, kind)]
        if not mine:
            continue

        def hook(register: Callable[[Any], None], _mine: list[Provider] = mine) -> None:
            for provider in _mine:
                register(provider)

        hook.__name__ = hook_name
        setattr(module, hook_name, hookimpl(hook))
    unknown = [p for p in providers if not isinstance(p, tuple(_HOOK_FOR))]
    if unknown:
        raise TypeError(f"not a provider kind: {unknown!r}")
    if cogs:

        def register_cogs(register: Callable[[type], None]) -> None:
            for cog in cogs:
                register(cog)

        module.register_cogs = hookimpl(register_cogs)  # type: ignore[attr-defined]
    if tools:

        def register_tools(register: Callable[[Any], None]) -> None:
            for item in tools:
                register(item)

        module.register_tools = hookimpl(register_tools)  # type: ignore[attr-defined]
    return module
