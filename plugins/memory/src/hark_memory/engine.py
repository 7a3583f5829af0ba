"""The memory of one bot: learning in the background, recall before a reply.

Learning: :meth:`Memory.enqueue` (called from the context provider's ``record``,
after every delivered reply, text or voice) queues the exchange in its space. A
background task sends a space's queue to the server's own generator once it holds
``batch_exchanges`` exchanges or its oldest waited ``batch_seconds``, at most
``extractions_per_hour`` times per hour per space (the cost cap; an exchange that
waits longer than that stays queued, the oldest dropped past :data:`MAX_PENDING`).
Recall: :meth:`Memory.recall` reads the speaker's profile and the facts matching
the message, within the token budget. Neither ever raises into a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

import hark
from hark.api import Host
from hark_memory.extract import Exchange, extraction_messages, parse_facts
from hark_memory.secrets import looks_secret, redact
from hark_memory.settings import MemorySettings
from hark_memory.store import Fact, MemoryStore, NewFact, space_of

MAX_PENDING = 50  # exchanges kept per space while the cost cap holds extraction back
HOUR = 3600.0
TICK = 0.5  # how often the worker looks at queues that are waiting for time


def estimate_tokens(text: str) -> int:
    """A model-free estimate (about four characters per token in English)."""
    return max(1, (len(text) + 3) // 4)


def render(facts_about: list[Fact], related: list[Fact], speaker: str | None) -> str:
    lines = [
        "Long-term memory: facts learned in earlier conversations in this place. They may"
        " be out of date; use them when they help, and don't recite them unprompted."
    ]
    if facts_about:
        lines.append(f"About {speaker or 'the person speaking'}:")
        lines += [f"- {f.text}" for f in facts_about]
    if related:
        lines.append("Also remembered:")
        for f in related:
            who = (f.subject_name or "someone") if f.subject_id is not None else "the server"
            lines.append(f"- ({who}) {f.text}")
    return "\n".join(lines)


class Memory:
    def __init__(
        self,
        host: Host,
        plugin_id: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.plugin_id = plugin_id
        self.store = MemoryStore(host.database(plugin_id))
        self.log = host.logger(plugin_id)
        self.clock = clock
        self.pending: dict[str, deque[Exchange]] = {}
        self.calls: dict[str, deque[float]] = {}
        self._capped_logged: dict[str, float] = {}
        # (space, member) -> when `!forget me` ran: an extraction already under way
        # must not bring back what they said before it.
        self._forgotten: dict[tuple[str, int], float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    # -- settings ------------------------------------------------------------

    def settings(self, guild_id: int | None, channel_id: int | None = None) -> MemorySettings:
        values = self.host.settings(self.plugin_id, guild_id=guild_id, channel_id=channel_id)
        return values.values if isinstance(values.values, MemorySettings) else MemorySettings()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="memory-extraction")

    async def stop(self, *, flush_within: float = 10.0) -> None:
        """Stop the worker; extract what is queued first (within the cost cap), bounded."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_within):
                await self._flush(force=True)
                if self._running:
                    await asyncio.wait(list(self._running))

    # -- learning ------------------------------------------------------------

    def enqueue(self, request: hark.ContextRequest, reply: str) -> None:
        """Queue a delivered exchange for extraction (nothing waits for it)."""
        if request.user_id is None or request.kind == "event":
            return  # no speaker to learn about (a Twitch raid, a plugin's own turn)
        space = space_of(request.guild_id, request.user_id)
        if space is None or not self.settings(request.guild_id, request.channel_id).enabled:
            return
        exchange = Exchange(
            guild_id=request.guild_id,
            channel_id=request.channel_id,
            user_id=request.user_id,
            user_name=request.user_name or str(request.user_id),
            # A secret said in chat never reaches the extraction prompt either.
            text=redact(request.text),
            reply=redact(reply),
            at=self.clock(),
            kind=request.kind,
        )
        queue = self.pending.setdefault(space, deque())
        queue.append(exchange)
        while len(queue) > MAX_PENDING:
            queue.popleft()
        self._wake.set()

    def drop_pending(self, space: str, user_id: int | None = None) -> None:
        """Forget queued exchanges of ``space`` (of one member, or all)."""
        if user_id is not None:
            self._forgotten[(space, user_id)] = self.clock()
        queue = self.pending.get(space)
        if queue is None:
            return
        kept = [ex for ex in queue if user_id is not None and ex.user_id != user_id]
        self.pending[space] = deque(kept)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush(force=False)
            except Exception:
                self.log.exception("memory extraction scheduling failed")

    async def _flush(self, *, force: bool) -> None:
        for space, queue in list(self.pending.items()):
            if not queue:
                continue
            first = queue[0]
            settings = self.settings(first.guild_id)
            due = (
                force
                or len(queue) >= settings.batch_exchanges
                or self.clock() - first.at >= settings.batch_seconds
            )
            if not due or not self._allowed(space, settings):
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), settings.batch_exchanges))]
            self.calls.setdefault(space, deque()).append(self.clock())
            task = asyncio.create_task(self._extract(space, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _allowed(self, space: str, settings: MemorySettings) -> bool:
        calls = self.calls.setdefault(space, deque())
        now = self.clock()
        while calls and now - calls[0] >= HOUR:
            calls.popleft()
        if len(calls) < settings.extractions_per_hour:
            return True
        if now - self._capped_logged.get(space, -HOUR) >= HOUR:
            self._capped_logged[space] = now
            self.log.info(
                "memory: %s reached its cap of %d extractions per hour; exchanges wait",
                space,
                settings.extractions_per_hour,
            )
        return False

    async def _extract(self, space: str, batch: list[Exchange]) -> None:
        """One extraction call and its facts stored. Any failure drops this batch."""
        first = batch[-1]
        try:
            settings = self.settings(first.guild_id, first.channel_id)
            if not settings.enabled:
                return
            generator = self.host.provider(hark.Capability.GENERATE, first.guild_id)
            if not isinstance(generator, hark.Generator):
                return
            speakers = sorted({ex.user_id for ex in batch})
            known: list[Fact] = []
            for user_id in speakers:
                known += await self.store.about(space, user_id, limit=20)
            known += await self.store.about(space, None, limit=20)
            answer = await generator.complete(
                extraction_messages(batch, known),
                guild_id=first.guild_id,
                channel_id=first.channel_id,
                temperature=0.0,
            )
            candidates = parse_facts(answer, batch, {f.id for f in known})
            if candidates is None:
                # Once per bad answer, without its text (it may repeat what was said).
                self.log.warning(
                    "memory: the extraction answer in %s was not the JSON asked for "
                    "(%d characters); dropped",
                    space,
                    len(answer),
                )
                return
            facts = []
            for c in candidates:
                if self._was_forgotten(space, c.source) or (
                    c.subject_id is not None
                    and self._forgotten.get((space, c.subject_id), -1.0) >= c.source.at
                ):
                    continue
                if looks_secret(c.text):
                    self.log.info("memory: a fact that looked like a secret was not stored")
                    continue
                names = {ex.user_id: ex.user_name for ex in batch}
                facts.append(
                    NewFact(
                        text=c.text,
                        subject_id=c.subject_id,
                        subject_name=names.get(c.subject_id) if c.subject_id else None,
                        importance=c.importance,
                        said_by=c.source.user_id,
                        said_by_name=c.source.user_name,
                        guild_id=c.source.guild_id,
                        channel_id=c.source.channel_id,
                        at=c.source.at,
                        replaces=c.replaces,
                    )
                )
            if facts:
                # Memory may have been switched off, or a member forgotten, meanwhile.
                if not self.settings(first.guild_id, first.channel_id).enabled:
                    return
                await self.store.save(space, facts, max_facts=settings.max_facts)
        except hark.ProviderError as exc:
            self.log.warning("memory: extraction in %s failed: %s", space, exc)
        except Exception:
            self.log.exception("memory: extraction in %s failed", space)

    def _was_forgotten(self, space: str, exchange: Exchange) -> bool:
        return self._forgotten.get((space, exchange.user_id), -1.0) >= exchange.at

    async def remember(
        self, request: hark.ContextRequest, text: str, *, about_speaker: bool = True
    ) -> int | None:
        """Store one fact now (the ``remember`` tool); None when refused."""
        space = space_of(request.guild_id, request.user_id)
        settings = self.settings(request.guild_id, request.channel_id)
        if space is None or not settings.enabled or looks_secret(text):
            return None
        subject = request.user_id if about_speaker else None
        fact = NewFact(
            text=" ".join(text.split()),
            subject_id=subject,
            subject_name=request.user_name if subject is not None else None,
            importance=4,
            said_by=request.user_id,
            said_by_name=request.user_name,
            guild_id=request.guild_id,
            channel_id=request.channel_id,
            at=self.clock(),
            origin="tool",
        )
        ids = await self.store.save(space, [fact], max_facts=settings.max_facts)
        return ids[0] if ids else None

    # -- recall --------------------------------------------------------------

    async def recall(self, request: hark.ContextRequest) -> str | None:
        """The memory part of the prompt for this turn, or None."""
        space = space_of(request.guild_id, request.user_id)
        if space is None:
            return None
        settings = self.settings(request.guild_id, request.channel_id)
        if not settings.enabled:
            return None
        about = await self.store.about(space, request.user_id, limit=50) if request.user_id else []
        found = await self.store.search(space, request.text, limit=30)
        seen = {f.id for f in about}
        related = [f for f in found if f.id not in seen]
        # Within the budget: the speaker's profile first, then what the message is about.
        budget = settings.recall_tokens - estimate_tokens(render([], [], None)) - 10
        kept_about: list[Fact] = []
        kept_related: list[Fact] = []
        for fact, into in [(f, kept_about) for f in about] + [(f, kept_related) for f in related]:
            cost = estimate_tokens(fact.text) + 3
            if cost > budget:
                continue
            budget -= cost
            into.append(fact)
        if not kept_about and not kept_related:
            return None
        return render(kept_about, kept_related, request.user_name)
