"""The four provider kinds. Plugins subclass one and implement ``_impl``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hark.providers.base import Provider
from hark.providers.errors import BadOutputError
from hark.providers.policy import RetryPolicy
from hark.providers.types import (
    AudioClip,
    Capability,
    ContextPart,
    ContextRequest,
    ImagePart,
    PromptMessage,
    ToolCall,
    ToolSpec,
    Transcript,
)
from hark.text import chunk_text


async def _empty() -> AsyncIterator[AudioClip]:
    return
    yield  # pragma: no cover - makes this an async generator


class Transcriber(Provider):
    """Speech to text. ``_impl`` gets a mono or stereo s16le clip at any rate."""

    capability: ClassVar[Capability] = Capability.TRANSCRIBE
    # The rate the model wants; callers may resample to it to save the provider work.
    preferred_sample_rate: int = 16_000
    timeout = 120.0

    async def transcribe(
        self,
        clip: AudioClip,
        *,
        language: str | None = None,
        prompt: str | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> Transcript:
        """Transcribe ``clip``. ``prompt`` primes vocabulary (e.g. member names).

        A declared plugin's ``_impl`` also gets ``settings=`` (this server's values)."""
        extra = self._settings_kwargs(guild_id, channel_id)
        result = await self._call(
            "transcribe",
            lambda: self._impl(clip, language=language, prompt=prompt, guild_id=guild_id, **extra),
        )
        if not isinstance(result, Transcript):
            raise BadOutputError(f"_impl returned {type(result).__name__}", provider=self.id)
        return result

    async def _impl(
        self, clip: AudioClip, *, language: str | None, prompt: str | None, guild_id: int | None
    ) -> Transcript:
        raise NotImplementedError


@dataclass(slots=True)
class GenerationRequest:
    """Everything a generator needs for one reply."""

    messages: list[PromptMessage]
    model: str | None = None
    guild_id: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    channel_id: int | None = None
    # A declared plugin's settings model instance for this server (None otherwise).
    settings: Any = None
    # Tools the model may call (only ever non-empty for a generator with supports_tools).
    tools: list[ToolSpec] = field(default_factory=list)


def image_note(image: ImagePart) -> str:
    """What a model without vision reads in place of an image."""
    return f"[image not shown: {image.name}]" if image.name else "[image not shown]"


def without_images(messages: Sequence[PromptMessage]) -> list[PromptMessage]:
    """``messages`` with every image replaced by a note naming it, for a generator
    that cannot see them."""
    out = []
    for message in messages:
        if not message.images:
            out.append(message)
            continue
        notes = " ".join(image_note(image) for image in message.images)
        content = f"{message.content}\n{notes}" if message.content else notes
        out.append(dataclasses.replace(message, content=content, images=()))
    return out


Delta = str | ToolCall


class Generator(Provider):
    """An LLM that streams its reply as text deltas, and tool calls when offered tools."""

    capability: ClassVar[Capability] = Capability.GENERATE
    # Capability flag: list_models() is implemented.
    supports_model_listing: bool = False
    # Capability flag: images in messages reach _impl (otherwise the core replaces
    # each with a note naming it, so the model still knows one was there).
    supports_vision: bool = False
    # Capability flag: _impl reads request.tools, may yield ToolCall items, and
    # understands assistant messages with tool_calls and "tool" messages.
    supports_tools: bool = False
    default_model: str | None = None

    async def prime(
        self,
        messages: Sequence[PromptMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        guild_id: int | None = None,
    ) -> None:
        """Have the backend evaluate this server's prompt before its first turn:
        ``messages`` are how a turn here begins (persona, history), ``tools`` what it
        would offer. A local server (llama.cpp, Ollama) caches what it evaluated, so
        the first turn then starts as fast as later ones. Called after :meth:`warm`
        when a voice session starts. The default does nothing (a hosted API would
        bill for it); the core logs a failure and goes on."""

    def generate(
        self,
        messages: Sequence[PromptMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        model: str | None = None,
        guild_id: int | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        channel_id: int | None = None,
        **options: Any,
    ) -> AsyncIterator[Delta]:
        """Stream the reply to ``messages``: ``str`` deltas and, only when ``tools`` were
        offered (and the generator supports them), complete :class:`ToolCall` items.

        Without ``supports_vision`` images become notes; without ``supports_tools``
        no tools are offered (the model just answers in text)."""
        resolved = self.resolve(guild_id, channel_id)
        request = GenerationRequest(
            messages=list(messages) if self.supports_vision else without_images(messages),
            model=model or self.model_for(guild_id),
            guild_id=guild_id,
            max_tokens=max_tokens,
            temperature=temperature,
            options=options,
            channel_id=channel_id,
            settings=None if resolved is None else resolved.values,
            tools=list(tools) if self.supports_tools else [],
        )
        return self._stream("generate", lambda: self._checked(request))

    async def _checked(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        calls = 0
        # aclosing: when the caller stops early, the plugin's generator is closed now,
        # in this task, so its cleanup (releasing an HTTP response) is not deferred.
        async with contextlib.aclosing(self._impl(request)) as stream:
            async for delta in stream:
                if isinstance(delta, ToolCall):
                    if not request.tools:
                        raise BadOutputError(
                            f"a tool call ({delta.name!r}) but no tools were offered",
                            provider=self.id,
                        )
                    if not isinstance(delta.name, str) or not isinstance(delta.arguments, str):
                        raise BadOutputError(
                            "a tool call without name or arguments text", provider=self.id
                        )
                    calls += 1
                    if not delta.id:
                        # Some backends (Ollama) give no ids; results are matched by id.
                        delta = dataclasses.replace(delta, id=f"call_{calls}")
                    yield delta
                    continue
                if not isinstance(delta, str):
                    raise BadOutputError(
                        f"yielded {type(delta).__name__}, not str", provider=self.id
                    )
                if delta:
                    yield delta

    async def complete(self, messages: Sequence[PromptMessage], **kwargs: Any) -> str:
        """The whole reply as one string, for callers that do not stream (extraction,
        summaries, tests); the same deadline, retries and settings as generate().
        Text only: use generate(tools=...) for tool calls."""
        if kwargs.get("tools"):
            raise TypeError("complete() is for text; call generate(tools=...) for tool calls")
        kwargs.pop("tools", None)
        # No tools offered, so the wrapper lets only str through.
        return "".join([d async for d in self.generate(messages, **kwargs) if isinstance(d, str)])

    def _impl(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        raise NotImplementedError

    def match_model(self, name: str, models: list[str]) -> str | None:
        """The entry of ``models`` that ``name`` means, or None. Backends with aliases
        (Ollama's implied ``:latest``) override this."""
        return name if name in models else None

    def _declares_model(self) -> bool:
        declared = self._declared_settings_model()
        return declared is not None and "model" in declared.model_fields

    def model_for(self, guild_id: int | None) -> str | None:
        """The model this server uses. A plugin whose declared settings have a ``model``
        field gets it resolved like any setting (server, bot-wide, environment,
        bot.toml, default); otherwise the ``model`` setting (``!model``), else the
        global one, else ``default_model``."""
        if self._declares_model():
            resolved = self.resolve(guild_id)
            if resolved is not None:
                return resolved.values.model or self.default_model
        return self.setting("model", guild_id) or self.default_model

    async def set_model(self, guild_id: int | None, model: str | None) -> None:
        """Store ``model`` for this server (None: bot-wide), or remove it (``model`` None).
        A declared ``model`` field is validated and written like ``!config`` does."""
        if self.settings is None:
            raise RuntimeError("provider is not bound to the bot's settings")
        if self._declares_model():
            store, plugin = self.settings.store, self.settings.namespace
            scope, target = ("global", None) if guild_id is None else ("server", guild_id)
            if model is None:
                await store.reset_value(plugin, "model", scope, target)
            else:
                await store.set_value(plugin, "model", model, scope, target)
            return
        scope = self.settings.guild(guild_id)
        await (scope.clear("model") if model is None else scope.set("model", model))

    async def list_models(self) -> list[str]:
        """Models the backend offers (only when ``supports_model_listing``)."""
        return await self._call("list_models", self._list_models_impl)

    async def _list_models_impl(self) -> list[str]:
        raise NotImplementedError


class Synthesizer(Provider):
    """Text to speech, streamed as s16le PCM clips as they are produced."""

    capability: ClassVar[Capability] = Capability.SYNTHESIZE
    # The format this provider yields; consumers resample/remix when they need another.
    sample_rate: int = 48_000
    channels: int = 1
    # Longest text accepted in one call; the core splits longer text at sentences.
    max_text_length: int = 5_000

    def synthesize(
        self,
        text: str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> AsyncIterator[AudioClip]:
        """Stream speech for ``text``. Blank text yields nothing (no backend call);
        text over ``max_text_length`` is sent in several calls, cut between sentences.

        A declared plugin's ``_impl`` also gets ``settings=`` (this server's values,
        resolved once for the whole text)."""
        if not text.strip():
            return _empty()
        extra = self._settings_kwargs(guild_id, channel_id)
        pieces = chunk_text(text, self.max_text_length)
        if len(pieces) == 1:
            return self._stream("synthesize", lambda: self._checked(text, guild_id, extra))
        return self._pieces(pieces, guild_id, extra)

    async def _pieces(
        self, pieces: list[str], guild_id: int | None, extra: dict[str, Any]
    ) -> AsyncIterator[AudioClip]:
        for piece in pieces:
            stream = self._stream("synthesize", lambda p=piece: self._checked(p, guild_id, extra))
            async with contextlib.aclosing(stream):
                async for clip in stream:
                    yield clip

    async def _checked(
        self, text: str, guild_id: int | None, extra: dict[str, Any]
    ) -> AsyncIterator[AudioClip]:
        produced = False
        impl = self._impl(text, guild_id=guild_id, **extra)
        async with contextlib.aclosing(impl) as stream:
            async for clip in stream:
                if not isinstance(clip, AudioClip):
                    raise BadOutputError(
                        f"yielded {type(clip).__name__}, not AudioClip", provider=self.id
                    )
                if clip.pcm:
                    produced = True
                    yield clip
        # Text with nothing to pronounce ("...", a lone emoji) may legitimately be silent.
        if not produced and any(ch.isalnum() for ch in text):
            raise BadOutputError("no audio for non-empty text", provider=self.id)

    def _impl(self, text: str, *, guild_id: int | None) -> AsyncIterator[AudioClip]:
        raise NotImplementedError


class ContextProvider(Provider):
    """Contributes a part of the prompt. Runs concurrently with the others.

    ``timeout`` is the provider's deadline: a late provider is skipped for that
    turn, never fatal. Context is not retried (a retry would miss the deadline).
    """

    capability: ClassVar[Capability] = Capability.CONTEXT
    timeout = 2.0
    retry = RetryPolicy(attempts=1)
    #: True when ``_impl`` does no I/O (it reads memory only): it then runs in the
    #: turn's own task instead of one of its own. Its deadline still applies.
    inline: ClassVar[bool] = False

    async def provide(self, request: ContextRequest) -> ContextPart | None:
        """A declared plugin's ``_impl`` also gets ``settings=`` (for the request's
        server, channel and member)."""
        resolved = self.resolve(request.guild_id, request.channel_id, request.user_id)
        extra = {} if resolved is None else {"settings": resolved.values}
        part = await self._call("provide", lambda: self._impl(request, **extra))
        if part is not None and not isinstance(part, ContextPart):
            raise BadOutputError(f"_impl returned {type(part).__name__}", provider=self.id)
        if part is not None and not part.source:
            part.source = self.id
        return part

    async def _impl(self, request: ContextRequest) -> ContextPart | None:
        raise NotImplementedError

    # Hooks for providers that keep state (history): told about finished exchanges.
    async def record(self, request: ContextRequest, reply: str) -> None:
        """Called after a reply was delivered in full or in part (``reply`` is what was said)."""
