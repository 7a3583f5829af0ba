"""One conversational turn: context -> generator (and tools) -> (delivery) -> record.

Used by text chat, ``bot console`` and voice alike, so they behave the same. When
the server's generator supports tools and plugins enabled there offer some, the
turn runs the tool loop (:mod:`hark.chat.toolloop`), bounded by the chat plugin's
``tool_rounds`` and ``tool_seconds``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import discord

from hark.chat.settings import ChatSettings
from hark.chat.streaming import ReplyTarget, ReplyTracker, StreamingReply, TypingIndicator
from hark.chat.toolloop import StatusCallback, ToolLimits, ToolLoop
from hark.context import Prompt, assemble, settle
from hark.control import PluginControl
from hark.metrics import TurnClock, TurnMetrics
from hark.providers import (
    Capability,
    ContextProvider,
    ContextRequest,
    Generator,
    PromptMessage,
)
from hark.providers.errors import BadOutputError, ConfigurationError, ProviderError
from hark.store import SettingsStore
from hark.tools import Tool, ToolContext

log = logging.getLogger(__name__)


class NoGenerator(ConfigurationError):
    """No generator is enabled where a reply was asked for; the notice says how to fix it."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "no LLM is enabled here: install a generator plugin (e.g. `llm_ollama`) "
            "and restart the bot."
        )

    @classmethod
    def for_guild(cls, control: PluginControl, guild_id: int | None) -> NoGenerator:
        """The notice for ``guild_id`` (None: a DM): name an installed generator plugin
        that is switched off and the exact command (with the prefix) that turns it on."""
        prefix = control.config.prefix
        installed = [
            p for p in control.manager.providers(Capability.GENERATE) if isinstance(p, Generator)
        ]
        off = [p for p in installed if not control.is_enabled(p.plugin_id, guild_id)]
        if not off:
            return cls()
        # The one this server chose, if any, else the one that would be used by default.
        name, _ = control.chosen(Capability.GENERATE, guild_id)
        chosen = control.find(Capability.GENERATE, name, off) if name else None
        best = chosen or min(
            off, key=lambda p: (p.unavailable_reason() is not None, -p.default_priority, p.id)
        )
        plugin = best.plugin_id
        if guild_id is None:  # a DM: only the owner's global default applies
            command = f"{prefix}plugins global enable {plugin}"
            how = f"the bot's owner can turn on `{plugin}` with `{command}`"
        else:
            how = f"an admin can turn on `{plugin}` with `{prefix}plugins enable {plugin}`"
        return cls(f"no LLM is enabled here: {how}.")


@dataclass(slots=True)
class Delivery:
    text: str
    # What was posted: discord.Message objects (None for an interaction's original response).
    messages: list[Any]


def user_message(request: ContextRequest) -> PromptMessage:
    """The triggering message as the model reads it: its text, then what came with it
    (text files, notes on files not read), and its images. History keeps the text only."""
    content = "\n\n".join(part for part in (request.text, request.attachments) if part)
    return PromptMessage("user", content, name=request.user_name, images=request.images)


@dataclass(slots=True)
class Turn:
    request: ContextRequest
    prompt: Prompt
    generator: Generator
    # The tools offered this turn (only when the generator supports tools).
    tools: list[Tool] = field(default_factory=list)
    limits: ToolLimits = field(default_factory=ToolLimits)
    # What a tool gets as ToolContext.host (hark.api.Host); None without a bot.
    host: Any = None
    # Resolves each tool's plugin settings for ToolContext.settings.
    settings: SettingsStore | None = None
    # The last stream's tool loop (None when no tools were offered).
    loop: ToolLoop | None = None
    # Awaited before tools run (voice's speculative replies: until the turn is
    # confirmed); read when the tools are about to run, so it may be set late.
    before_tools: Callable[[], Awaitable[object]] | None = None

    @property
    def notes(self) -> list[str]:
        """What the user should be told after the answer (a tool limit was reached)."""
        return list(self.loop.notes) if self.loop is not None else []

    def stream(self, *, on_status: StatusCallback | None = None) -> AsyncIterator[str]:
        """The answer's text deltas. With tools, the tool loop runs inside: ``on_status``
        hears "using NAME…" while tools run (text replies show it)."""
        if not self.tools or not self.generator.supports_tools or self.limits.rounds <= 0:
            # No ToolCall can come without tools offered: the stream is text only.
            text = self.generator.generate(
                self.prompt.messages,
                guild_id=self.request.guild_id,
                channel_id=self.request.channel_id,
            )
            return cast("AsyncIterator[str]", text)
        self.loop = ToolLoop(
            self.generator,
            self.prompt.messages,
            tools=self.tools,
            limits=self.limits,
            context=self.tool_context,
            guild_id=self.request.guild_id,
            channel_id=self.request.channel_id,
            on_status=on_status,
            before_tools=self._before_tools,
        )
        return self.loop.stream()

    async def _before_tools(self) -> None:
        if self.before_tools is not None:
            await self.before_tools()

    def tool_context(self, tool: Tool) -> ToolContext:
        request = self.request
        values = None
        if self.settings is not None and self.settings.model(tool.plugin_id) is not None:
            values = self.settings.resolve(
                tool.plugin_id,
                guild_id=request.guild_id,
                channel_id=request.channel_id,
                user_id=request.user_id,
            ).values
        return ToolContext(request, host=self.host, settings=values)


class Conversation:
    def __init__(
        self,
        control: PluginControl,
        inflight: ReplyTracker | None = None,
        *,
        settings: SettingsStore | None = None,
        host: Any = None,
        metrics: TurnMetrics | None = None,
    ) -> None:
        self.control = control
        # Every turn's timings and outcome (hark.metrics): the dashboard and /stats read it.
        self.metrics = metrics if metrics is not None else TurnMetrics()
        # Remembers replies being streamed, so a crash cannot leave them unfinished.
        self.inflight = inflight
        # The chat plugin's settings (tool limits) and the tools' plugins' settings.
        self.settings = settings
        # The bot's hark.api.Host, handed to tools (set by the bot; None in the console).
        self.host = host

    def chat_settings(self, request: ContextRequest) -> ChatSettings:
        """The chat plugin's values for this server and channel."""
        if self.settings is None or self.settings.model("chat") is None:
            return ChatSettings()
        values = self.settings.resolve(
            "chat", guild_id=request.guild_id, channel_id=request.channel_id
        ).values
        return values if isinstance(values, ChatSettings) else ChatSettings()

    async def prepare(self, request: ContextRequest) -> Turn:
        generator = self.control.provider_for(Capability.GENERATE, request.guild_id)
        if not isinstance(generator, Generator):
            raise NoGenerator.for_guild(self.control, request.guild_id)
        providers = self.control.context_providers(request.guild_id)
        prompt = await assemble(providers, request, user_message=user_message(request))
        if request.reply_chain:
            # The chain the message answers comes right before it, oldest first.
            prompt.messages[-1:-1] = list(request.reply_chain)
        turn = Turn(request, prompt, generator, host=self.host, settings=self.settings)
        if generator.supports_tools:
            chat = self.chat_settings(request)
            turn.limits = ToolLimits(rounds=chat.tool_rounds, seconds=chat.tool_seconds)
            if turn.limits.rounds > 0:
                turn.tools = self.control.tools_for(request.guild_id)
        return turn

    async def deliver(
        self,
        request: ContextRequest,
        target: ReplyTarget,
        *,
        interval: float = 1.0,
        typing: Any = None,
        notify_errors: bool = True,
    ) -> Delivery | None:
        """Run one turn and stream it to ``target`` (posted, edited as it grows, split at
        Discord's limit, no pings). On success the exchange is recorded; on failure
        nothing is recorded and, if ``notify_errors``, one short notice is posted.

        ``typing`` is a channel (or a :class:`TypingIndicator` already started for
        it): the bot is shown typing there if the first token takes longer than
        :data:`~hark.chat.streaming.TYPING_DELAY`, until the turn ends."""
        reply = StreamingReply(target, interval=interval, tracker=self.inflight)
        indicator = (
            typing
            if isinstance(typing, TypingIndicator) or typing is None
            else TypingIndicator(typing)
        )
        clock, generator = TurnClock(), None
        try:
            if indicator is not None:
                indicator.start()
            turn = await self.prepare(request)
            generator = turn.generator.id
            async for delta in turn.stream(on_status=reply.status):
                if clock.first_at is None:
                    clock.first()
                    if indicator is not None:
                        indicator.first_token()
                await reply.feed(delta)
            if indicator is not None:
                indicator.stop()
            if not reply.text.strip():
                raise BadOutputError(
                    "the model returned an empty reply", provider=turn.generator.id
                )
            for note in turn.notes:
                reply.note(note)
            text = await reply.finish()
        except ProviderError as exc:
            if indicator is not None:
                indicator.stop()
            log.warning("reply in channel %s failed: %s", request.channel_id, exc)
            self.metrics.text_turn(request, clock, "failed", provider=generator, error=str(exc))
            with contextlib.suppress(discord.HTTPException):
                if notify_errors:
                    await reply.abandon(exc.user_message)
                elif reply.started:
                    await reply.abandon("")
            return None
        except discord.HTTPException as exc:
            # Discord refused a post or an edit (permissions, a deleted channel): the
            # reply is lost, so it is not recorded; there is nowhere to say so.
            reply.cancel()
            log.warning("could not post a reply in channel %s: %s", request.channel_id, exc)
            self.metrics.text_turn(request, clock, "failed", provider=generator, error=str(exc))
            return None
        except BaseException:
            reply.cancel()  # cancelled (shutdown): no late edit from the timer
            raise
        finally:
            if indicator is not None:
                indicator.stop()
        self.metrics.text_turn(request, clock, "delivered", provider=generator, reply=text)
        await self.record(turn, text)
        return Delivery(text, list(reply.handles))

    async def record(self, turn: Turn, reply: str) -> None:
        """Tell every context provider what was actually said. Called only for delivered replies."""
        providers = [
            p
            for p in self.control.context_providers(turn.request.guild_id)
            if type(p).record is not ContextProvider.record  # the default records nothing
        ]
        results = await settle(
            [functools.partial(p.record, turn.request, reply) for p in providers],
            [False] * len(providers),
        )
        for provider, result in zip(providers, results, strict=True):
            if isinstance(result, Exception):
                log.error("context provider %s failed to record", provider.id, exc_info=result)
