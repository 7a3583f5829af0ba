"""One conversational turn: context -> generator -> (delivery) -> record.

Used by text chat, ``bot console`` and voice alike, so they behave the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import discord

from hark.chat.streaming import ReplyTarget, ReplyTracker, StreamingReply
from hark.context import Prompt, assemble
from hark.control import PluginControl
from hark.providers import Capability, ContextRequest, Generator, PromptMessage
from hark.providers.errors import BadOutputError, ConfigurationError, ProviderError

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


@dataclass(slots=True)
class Turn:
    request: ContextRequest
    prompt: Prompt
    generator: Generator

    def stream(self) -> AsyncIterator[str]:
        return self.generator.generate(
            self.prompt.messages,
            guild_id=self.request.guild_id,
            channel_id=self.request.channel_id,
        )


class Conversation:
    def __init__(self, control: PluginControl, inflight: ReplyTracker | None = None) -> None:
        self.control = control
        # Remembers replies being streamed, so a crash cannot leave them unfinished.
        self.inflight = inflight

    async def prepare(self, request: ContextRequest) -> Turn:
        generator = self.control.provider_for(Capability.GENERATE, request.guild_id)
        if not isinstance(generator, Generator):
            raise NoGenerator.for_guild(self.control, request.guild_id)
        providers = self.control.context_providers(request.guild_id)
        prompt = await assemble(
            providers,
            request,
            user_message=PromptMessage("user", request.text, name=request.user_name),
        )
        return Turn(request, prompt, generator)

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
        nothing is recorded and, if ``notify_errors``, one short notice is posted."""
        reply = StreamingReply(target, interval=interval, tracker=self.inflight)
        typing_cm = typing.typing() if typing is not None else contextlib.nullcontext()
        try:
            turn = await self.prepare(request)
            async with typing_cm:
                async for delta in turn.stream():
                    await reply.feed(delta)
            if not reply.text.strip():
                raise BadOutputError(
                    "the model returned an empty reply", provider=turn.generator.id
                )
            text = await reply.finish()
        except ProviderError as exc:
            log.warning("reply in channel %s failed: %s", request.channel_id, exc)
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
            return None
        except BaseException:
            reply.cancel()  # cancelled (shutdown): no late edit from the timer
            raise
        await self.record(turn, text)
        return Delivery(text, list(reply.handles))

    async def record(self, turn: Turn, reply: str) -> None:
        """Tell every context provider what was actually said. Called only for delivered replies."""
        providers = self.control.context_providers(turn.request.guild_id)
        results = await asyncio.gather(
            *(p.record(turn.request, reply) for p in providers), return_exceptions=True
        )
        for provider, result in zip(providers, results, strict=True):
            if isinstance(result, Exception):
                log.error("context provider %s failed to record", provider.id, exc_info=result)
