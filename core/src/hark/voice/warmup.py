"""Warming a server's voice providers (model loaded, connection open), so the first
turn is as fast as the next.

:class:`Warmup`, one per voice session, warms everything on a voice turn's path in
the background (at `join` and `listen`); a turn that needs a provider still warming
waits for it, a bounded time, and records ``warm_waited`` in its stage trace.
:func:`warm_guild` does the same at start-up for servers that had a voice session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hark.providers import Capability, Generator, PromptMessage, Provider, ToolSpec

if TYPE_CHECKING:
    from hark.control import PluginControl

# The session's logger: these lines read (and are filtered) as the session's, as before.
log = logging.getLogger("hark.voice.session")

# One provider's warm-up may take this long (a cold model load from disk).
WARM_TIMEOUT = 120.0
# A turn waits at most this long for a warm-up under way (then goes ahead anyway).
WARM_WAIT = 30.0
# What a session warms: everything on a voice turn's path.
WARMED = (Capability.TURN, Capability.TRANSCRIBE, Capability.GENERATE, Capability.SYNTHESIZE)


@dataclass(frozen=True, slots=True)
class Priming:
    """How a server's voice turns begin: what :meth:`Generator.prime` is given."""

    messages: Sequence[PromptMessage]
    tools: Sequence[ToolSpec] = ()


async def warm_provider(provider: Provider) -> bool:
    """Run ``provider.warm()`` with a deadline; a failure is logged, never raised."""
    try:
        async with asyncio.timeout(WARM_TIMEOUT):
            await provider.warm()
    except Exception as exc:
        log.warning("warming %s failed: %s", provider.id, exc)
        return False
    return True


def providers_to_warm(control: PluginControl, guild_id: int) -> dict[Capability, Provider]:
    """The server's provider for each capability in :data:`WARMED` (those it has)."""
    found: dict[Capability, Provider] = {}
    for capability in WARMED:
        provider = control.provider_for(capability, guild_id)
        if provider is not None:
            found[capability] = provider
    return found


async def warm_guild(control: PluginControl, guild_id: int) -> None:
    """Warm a server's voice providers (at start-up, for servers that had a session)."""
    providers = {id(p): p for p in providers_to_warm(control, guild_id).values()}
    await asyncio.gather(*(warm_provider(p) for p in providers.values()))


class Warmup:
    """One server's warm-up: a task per provider, and when they had all finished."""

    def __init__(
        self,
        control: PluginControl,
        guild_id: int,
        *,
        prompt: Callable[[], Awaitable[Priming | None]] | None = None,
    ) -> None:
        self.control = control
        self.guild_id = guild_id
        # How this server's turns begin, for Generator.prime (None: not primed).
        self.prompt = prompt
        self._tasks: dict[Capability, asyncio.Task[bool]] = {}
        self._all: asyncio.Task[None] | None = None
        self.done_at: float | None = None  # monotonic; the latest warm-up's end

    def start(self) -> None:
        """Warm the server's turn detector, transcriber, generator and synthesizer in
        the background; a warm-up under way is not started twice."""
        if self._all is not None and not self._all.done():
            return
        started = time.monotonic()
        # A provider serving several capabilities is warmed once.
        by_provider: dict[int, asyncio.Task[bool]] = {}
        tasks: dict[Capability, asyncio.Task[bool]] = {}
        for capability, provider in providers_to_warm(self.control, self.guild_id).items():
            task = by_provider.get(id(provider))
            if task is None:
                work = (
                    self._warm_generator(provider)
                    if isinstance(provider, Generator)
                    else warm_provider(provider)
                )
                task = by_provider[id(provider)] = asyncio.create_task(
                    work, name=f"voice-warm-{provider.id}"
                )
            tasks[capability] = task
        self._tasks = tasks

        async def finish() -> None:
            await asyncio.gather(*by_provider.values())
            self.done_at = time.monotonic()
            log.info(
                "guild %s: voice providers warm in %.2fs (%s)",
                self.guild_id,
                self.done_at - started,
                ", ".join(p.id for p in providers_to_warm(self.control, self.guild_id).values()),
            )

        self._all = asyncio.create_task(finish(), name=f"voice-warm-{self.guild_id}")

    async def _warm_generator(self, generator: Generator) -> bool:
        """Warm the generator, then prime it with how this server's turns begin."""
        ok = await warm_provider(generator)
        if self.prompt is None:
            return ok
        try:
            async with asyncio.timeout(WARM_TIMEOUT):
                priming = await self.prompt()
                if priming is not None:
                    await generator.prime(
                        priming.messages, tools=priming.tools, guild_id=self.guild_id
                    )
        except Exception as exc:
            log.warning("priming %s failed: %s", generator.id, exc)
            return False
        return ok

    async def wait_for(self, capability: Capability, stages: dict[str, float]) -> None:
        """A turn that comes while its provider still warms up waits for it (recorded)."""
        task = self._tasks.get(capability)
        if task is None or task.done():
            return
        stages.setdefault("warm_waited", time.monotonic())
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), WARM_WAIT)

    def cancel(self) -> None:
        """Stop the providers' warm-ups (the session is closing)."""
        for task in self._tasks.values():
            task.cancel()
