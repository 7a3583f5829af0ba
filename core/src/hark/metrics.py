"""The core's turn metrics: bounded in-memory rings of recent turns and notable events.

One :class:`TurnMetrics` per bot (``runtime.conversation.metrics``; ``bot.metrics``
on a running bot). The text pipeline, voice sessions and ``bot console`` record each
turn into it; a logging handler (:meth:`TurnMetrics.log_handler`) feeds WARNING and
above into the events ring, and the bot adds explicit events (reconnects, plugin
load errors). The dashboard, ``bot console``'s ``/stats`` and tests read it.

Nothing here holds a secret: every message and every kept text goes through
:func:`hark.logs.redact` when it is recorded. Message text is kept only when the
operator turns it on (``keep_text``: the dashboard's ``show_text``).

Thread-safe for recording (a voice router thread may log); subscribers are asyncio
queues, each woken on the loop it subscribed from.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from hark.logs import redact

MAX_TURNS = 200
MAX_EVENTS = 200
MAX_TEXT = 500  # characters of a kept message text
MAX_MESSAGE = 500  # characters of an event's message

# A voice turn's waterfall, in order: end of speech -> the turn detector's decision ->
# transcribed -> the LLM's first token -> first sentence -> first audio -> first RTP
# frame -> done. Barge-in marks (paused_at, resumed_at, interrupted) come on top.
VOICE_STAGES = (
    "utterance_end",
    "turn_end",
    "transcribed",
    "first_delta",
    "first_sentence",
    "first_audio",
    "first_frame",
    "reply_done",
)
STAGE_LABELS = {
    "speech_start": "speech start",
    "utterance_end": "end of speech",
    "turn_end": "turn decision",
    "transcribed": "transcribed",
    "first_delta": "LLM first token",
    "first_sentence": "first sentence",
    "first_audio": "first audio",
    "first_frame": "first RTP packet",
    "reply_done": "done",
    "paused_at": "barge-in: paused",
    "resumed_at": "barge-in: resumed",
    "interrupted": "barge-in: interrupted",
    "warm_waited": "waited for warm-up",
    "warm_done": "warm-up done",
    "turn_pause": "pause (speculative STT)",
    "speculative_transcribed": "speculative transcript",
    "start": "start",
}
BARGE_IN_MARKS = ("paused_at", "resumed_at", "interrupted")
OUTCOMES = ("delivered", "failed", "interrupted")


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class TurnRecord:
    """One finished turn. Times in seconds; ``stages`` in milliseconds from the turn's
    origin (a voice turn: the end of speech; a text turn: when it started)."""

    id: int
    kind: str  # "text", "voice" or "console"
    guild_id: int | None
    channel_id: int | None
    started_at: float  # wall-clock time (time.time()) the turn started
    outcome: str  # delivered | failed | interrupted
    first_token_s: float | None = None
    total_s: float | None = None
    provider: str | None = None
    # None when the provider does not report them (no generator does today).
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    stages: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    request_text: str | None = None  # only with keep_text
    reply_text: str | None = None  # only with keep_text

    @property
    def barge_in(self) -> bool:
        return any(mark in self.stages for mark in BARGE_IN_MARKS)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["barge_in"] = self.barge_in
        return data


@dataclass(slots=True)
class Event:
    id: int
    at: float  # wall-clock time
    level: str  # WARNING, ERROR, INFO...
    kind: str  # log, reconnect, plugin_error, rate_limit, provider_error...
    source: str  # a logger's or a plugin's name
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TurnClock:
    """Times one turn: ``first()`` at the first streamed token, ``elapsed`` at the end."""

    __slots__ = ("first_at", "started", "wall")

    def __init__(self) -> None:
        self.wall = time.time()
        self.started = time.monotonic()
        self.first_at: float | None = None

    def first(self) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()

    @property
    def first_token_s(self) -> float | None:
        return None if self.first_at is None else self.first_at - self.started

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def voice_stages(trace: dict[str, float]) -> tuple[float, dict[str, float]]:
    """A voice trace (monotonic stamps) as (origin, stage -> ms from the end of speech)."""
    origin = trace.get("utterance_end", trace.get("turn_end"))
    if origin is None:
        origin = min(trace.values(), default=time.monotonic())
    stages = {name: round((at - origin) * 1000, 1) for name, at in trace.items()}
    return origin, dict(sorted(stages.items(), key=lambda item: item[1]))


def _kind_of(record: logging.LogRecord, message: str) -> str:
    lowered = message.lower()
    if "rate limit" in lowered or "rate-limit" in lowered or "429" in lowered:
        return "rate_limit"
    if "reconnect" in lowered or "resum" in lowered:
        return "reconnect"
    if "failed to load" in lowered:
        return "plugin_error"
    if record.name.startswith(("hark.provider.", "hark.providers")) or "provider" in lowered:
        return "provider_error"
    if record.name.startswith("hark.plugin"):
        return "plugin"
    return "log"


class _EventHandler(logging.Handler):
    """Feeds log records at WARNING and above into a store's events ring."""

    def __init__(self, store: TurnMetrics, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.store = store

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                message = f"{message} ({type(exc).__name__}: {exc})"
            self.store.event(
                _kind_of(record, message), message, level=record.levelname, source=record.name
            )
        except Exception:  # a metrics failure must never break logging
            self.handleError(record)


class Subscription:
    """Live updates from a store: ``("turn", TurnRecord)`` or ``("event", Event)``.

    Bounded: a subscriber that does not keep up loses the oldest updates."""

    def __init__(self, store: TurnMetrics, maxsize: int = 256) -> None:
        self.store = store
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize)

    def _put(self, item: tuple[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(item)

    def push(self, item: tuple[str, Any]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._put(item)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._put, item)

    async def get(self) -> tuple[str, Any]:
        return await self.queue.get()

    def close(self) -> None:
        self.store._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class TurnMetrics:
    """Recent turns and events, bounded; cumulative counts since start."""

    def __init__(
        self, *, max_turns: int = MAX_TURNS, max_events: int = MAX_EVENTS, keep_text: bool = False
    ) -> None:
        self.keep_text = keep_text
        self.started_at = time.time()
        self.turns: deque[TurnRecord] = deque(maxlen=max_turns)
        self.events: deque[Event] = deque(maxlen=max_events)
        # (kind, outcome) -> turns since start; level -> events since start.
        self.turn_counts: Counter[tuple[str, str]] = Counter()
        self.event_counts: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._handler: _EventHandler | None = None

    # -- recording -------------------------------------------------------------

    def record_turn(
        self,
        *,
        kind: str,
        outcome: str,
        guild_id: int | None = None,
        channel_id: int | None = None,
        started_at: float | None = None,
        first_token_s: float | None = None,
        total_s: float | None = None,
        provider: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        stages: dict[str, float] | None = None,
        error: str | None = None,
        request_text: str | None = None,
        reply_text: str | None = None,
    ) -> TurnRecord:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        keep = self.keep_text
        with self._lock:
            record = TurnRecord(
                id=next(self._ids),
                kind=kind,
                guild_id=guild_id,
                channel_id=channel_id,
                started_at=time.time() if started_at is None else started_at,
                outcome=outcome,
                first_token_s=first_token_s,
                total_s=total_s,
                provider=provider,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                stages=dict(stages or {}),
                error=_clip(error, MAX_MESSAGE),
                request_text=_clip(request_text, MAX_TEXT) if keep else None,
                reply_text=_clip(reply_text, MAX_TEXT) if keep else None,
            )
            self.turns.append(record)
            self.turn_counts[(kind, outcome)] += 1
        self._publish(("turn", record))
        return record

    def text_turn(
        self,
        request: Any,
        clock: TurnClock,
        outcome: str,
        *,
        provider: str | None = None,
        reply: str | None = None,
        error: str | None = None,
    ) -> TurnRecord:
        """A text (or console) turn timed by ``clock``; ``request`` is its ContextRequest."""
        total = clock.elapsed
        stages = {"start": 0.0}
        if clock.first_token_s is not None:
            stages["first_delta"] = round(clock.first_token_s * 1000, 1)
        stages["reply_done"] = round(total * 1000, 1)
        return self.record_turn(
            kind="console" if getattr(request, "kind", None) == "console" else "text",
            outcome=outcome,
            guild_id=getattr(request, "guild_id", None),
            channel_id=getattr(request, "channel_id", None),
            started_at=clock.wall,
            first_token_s=clock.first_token_s,
            total_s=total,
            provider=provider,
            stages=stages,
            error=error,
            request_text=getattr(request, "text", None),
            reply_text=reply,
        )

    def voice_turn(
        self,
        request: Any,
        trace: dict[str, float],
        outcome: str,
        *,
        provider: str | None = None,
        reply: str | None = None,
        error: str | None = None,
    ) -> TurnRecord:
        """A voice turn from its stage trace (monotonic stamps, hark.voice.session)."""
        origin, stages = voice_stages(trace)
        first = trace.get("first_delta")
        done = trace.get("reply_done")
        return self.record_turn(
            kind="voice",
            outcome=outcome,
            guild_id=getattr(request, "guild_id", None),
            channel_id=getattr(request, "channel_id", None),
            started_at=time.time() - (time.monotonic() - origin),
            first_token_s=None if first is None else first - origin,
            total_s=None if done is None else done - origin,
            provider=provider,
            stages=stages,
            error=error,
            request_text=getattr(request, "text", None),
            reply_text=reply,
        )

    def event(self, kind: str, message: str, *, level: str = "INFO", source: str = "hark") -> Event:
        """Record a notable event (redacted, cut to a bounded length)."""
        with self._lock:
            record = Event(
                id=next(self._ids),
                at=time.time(),
                level=level,
                kind=kind,
                source=source,
                message=_clip(message, MAX_MESSAGE) or "",
            )
            self.events.append(record)
            self.event_counts[level] += 1
        self._publish(("event", record))
        return record

    # -- reading ----------------------------------------------------------------

    def recent_turns(self, limit: int | None = None) -> list[TurnRecord]:
        """Newest first."""
        with self._lock:
            turns = list(self.turns)
        turns.reverse()
        return turns if limit is None else turns[:limit]

    def recent_events(self, limit: int | None = None) -> list[Event]:
        """Newest first."""
        with self._lock:
            events = list(self.events)
        events.reverse()
        return events if limit is None else events[:limit]

    def first_token_percentiles(self, kind: str | None = None) -> dict[str, float | None]:
        """p50/p95 of the time to first token over the turns in the ring."""
        values = sorted(
            t.first_token_s
            for t in self.recent_turns()
            if t.first_token_s is not None and (kind is None or t.kind == kind)
        )

        def pick(p: float) -> float | None:
            if not values:
                return None
            return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]

        return {"p50_s": pick(50), "p95_s": pick(95)}

    # -- live updates ------------------------------------------------------------

    def subscribe(self, maxsize: int = 256) -> Subscription:
        """A queue of what is recorded from now on (call on the event loop)."""
        subscription = Subscription(self, maxsize)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _publish(self, item: tuple[str, Any]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.push(item)

    # -- the logging handler -----------------------------------------------------

    def log_handler(self, level: int = logging.WARNING) -> logging.Handler:
        """The handler that feeds WARNING+ records into the events ring (one per store)."""
        if self._handler is None:
            self._handler = _EventHandler(self, level)
        return self._handler

    def attach_logging(self, logger: logging.Logger | None = None) -> None:
        """Feed ``logger``'s (default: the root logger's) WARNING+ records in."""
        target = logger or logging.getLogger()
        handler = self.log_handler()
        if handler not in target.handlers:
            target.addHandler(handler)

    def detach_logging(self, logger: logging.Logger | None = None) -> None:
        target = logger or logging.getLogger()
        if self._handler is not None:
            target.removeHandler(self._handler)

    def __iter__(self) -> Iterator[TurnRecord]:
        return iter(self.recent_turns())
