"""Deliver a streamed reply to Discord: post, edit as it grows, split at the limit.

Edits are throttled to one per ``interval`` seconds (Discord rate-limits edits).
When the text outgrows one message it continues in the next; code fences stay
balanced in each part (see :func:`hark.text.split_message`). Nothing sent ever
pings anyone.

While a tool runs the live message ends with a status line ("using roll_die…"),
which goes once answer text streams; notes (a tool limit was reached) follow the
final text. Neither is part of :attr:`StreamingReply.text`, so history never
sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

import discord

from hark.chat.inflight import CUT_OFF
from hark.text import MESSAGE_LIMIT, split_message

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
PLACEHOLDER = "…"
# Discord's subtext: status lines and notes read as asides, not as the answer.
ASIDE = "-# "


#: Seconds a turn may take before the bot is shown typing: a reply (or its first
#: token) that comes sooner needs no indicator, and saves Discord a request.
TYPING_DELAY = 0.3
#: Discord shows "typing" for about 10 s; discord.py renews it every 5 s, and so do we.
TYPING_RENEW = 5.0
#: A reply posted in a channel hides the bot's indicator there; while other turns in
#: that channel still wait it is shown again, but not sooner than this after the last
#: request (a busy channel costs a request every couple of seconds, not one per reply).
TYPING_REPOST_GAP = 2.0
# After a turn ends its reply may still be on its way: the repost waits this long.
REPOST_AFTER = 0.5
#: Seconds from a reply's first text to its first post, at the least: a reply whose
#: model was slow to start (first text past the edit interval) but then answers in one
#: piece is posted once, with no "still writing" post and edit.
FIRST_POST_GRACE = 0.15


class _ChannelTyping:
    """The one indicator of a channel, shared by every turn waiting there."""

    __slots__ = ("channel", "key", "owner", "poked", "task", "waiting")

    def __init__(self, channel: Any, owner: object, key: tuple[int, Any]) -> None:
        self.channel = channel
        self.owner = owner
        self.key = key
        self.waiting = 0
        self.poked = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.channel.typing()  # one request (discord.py's Typing.__await__)
                sent = loop.time()
                self.poked.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TYPING_RENEW):
                        await self.poked.wait()
                        # A reply hid the indicator (or is about to be posted): show
                        # it again after that, and not within the gap.
                        again = max(sent + TYPING_REPOST_GAP, loop.time() + REPOST_AFTER)
                        await asyncio.sleep(again - loop.time())
        except discord.HTTPException as exc:
            where = getattr(self.channel, "id", "?")
            log.debug("no typing indicator in channel %s: %s", where, exc)


# (id of the client's connection state, channel id) -> the channel's indicator.
_typing: dict[tuple[int, Any], _ChannelTyping] = {}


def _join_typing(channel: Any) -> _ChannelTyping:
    # Keyed per client: two bots in one process each show their own indicator.
    owner = getattr(channel, "_state", None) or channel
    key = (id(owner), getattr(channel, "id", id(channel)))
    shared = _typing.get(key)
    if (
        shared is None
        or shared.owner is not owner
        or shared.task.done()
        or shared.task.get_loop() is not asyncio.get_running_loop()
    ):
        shared = _typing[key] = _ChannelTyping(channel, owner, key)
    shared.waiting += 1
    return shared


class TypingIndicator:
    """Shows the bot typing in ``channel`` once a turn has taken ``delay`` seconds.

    ``start()`` arms a timer (no task, no request); if the turn is still waiting
    for its first token when it fires, the turn joins its channel's indicator,
    which is posted and renewed until the last turn waiting there calls ``stop()``.
    Several turns in one channel share one indicator (one request, not one each);
    when one of them ends while others wait, its reply has hidden the indicator, so
    it is shown again (at most every :data:`TYPING_REPOST_GAP` seconds).
    ``first_token()`` disarms the timer (an indicator already shown goes on until
    ``stop()``, as the turn streams). A channel that refuses the indicator (no
    permission) costs the indicator only, never the turn.
    """

    __slots__ = ("_shared", "_timer", "channel", "delay")

    def __init__(self, channel: Any, *, delay: float = TYPING_DELAY) -> None:
        self.channel = channel
        self.delay = delay
        self._timer: asyncio.TimerHandle | None = None
        self._shared: _ChannelTyping | None = None

    @property
    def shown(self) -> bool:
        """True once the indicator was asked for (the delay passed)."""
        return self._shared is not None

    def start(self) -> TypingIndicator:
        if self._timer is None and self._shared is None:
            if self.delay <= 0:
                self._fire()
            else:
                self._timer = asyncio.get_running_loop().call_later(self.delay, self._fire)
        return self

    def _fire(self) -> None:
        self._timer = None
        if self._shared is None:
            self._shared = _join_typing(self.channel)

    def first_token(self) -> None:
        """The answer started: no indicator is needed any more if none is shown yet."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self) -> None:
        self.first_token()
        shared, self._shared = self._shared, None
        if shared is None:
            return
        shared.waiting -= 1
        if shared.waiting > 0:
            shared.poked.set()
            return
        shared.task.cancel()
        if _typing.get(shared.key) is shared:
            del _typing[shared.key]

    async def __aenter__(self) -> TypingIndicator:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()


class ReplyTarget(Protocol):
    async def send(self, content: str, *, first: bool) -> Any: ...
    async def edit(self, handle: Any, content: str) -> None: ...


class ChannelTarget:
    """Replies to a message (the first part references it), or posts in a channel."""

    def __init__(self, channel: discord.abc.Messageable, reference: discord.Message | None) -> None:
        self.channel = channel
        self.reference = reference

    async def send(self, content: str, *, first: bool) -> discord.Message:
        reference = self.reference if first else None
        if reference is not None:
            return await self.channel.send(
                content,
                reference=reference.to_reference(fail_if_not_exists=False),
                allowed_mentions=NO_PINGS,
                mention_author=False,
            )
        return await self.channel.send(content, allowed_mentions=NO_PINGS)

    async def edit(self, handle: discord.Message, content: str) -> None:
        await handle.edit(content=content, allowed_mentions=NO_PINGS)


class InteractionTarget:
    """A deferred interaction: the original response, then follow-ups."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction

    async def send(self, content: str, *, first: bool) -> Any:
        if first:
            await self.interaction.edit_original_response(
                content=content, allowed_mentions=NO_PINGS
            )
            return None  # None stands for the original response
        return await self.interaction.followup.send(content, allowed_mentions=NO_PINGS, wait=True)

    async def edit(self, handle: Any, content: str) -> None:
        if handle is None:
            await self.interaction.edit_original_response(
                content=content, allowed_mentions=NO_PINGS
            )
        else:
            await handle.edit(content=content, allowed_mentions=NO_PINGS)


class ReplyTracker(Protocol):
    """Told about messages posted with the still-writing marker, and when the reply is
    over (see :class:`hark.chat.inflight.InflightReplies`)."""

    async def started(self, handle: Any) -> None: ...
    async def ended(self, handles: list[Any]) -> None: ...


class StreamingReply:
    def __init__(
        self,
        target: ReplyTarget,
        *,
        interval: float = 1.0,
        limit: int = MESSAGE_LIMIT,
        tracker: ReplyTracker | None = None,
    ) -> None:
        self.target = target
        self.tracker = tracker
        self._tracked = False
        self.interval = interval
        self.limit = limit
        self.text = ""
        self.handles: list[Any] = []
        self._shown: list[str] = []
        # The first post also waits one interval: a reply that completes sooner is
        # posted once, final, with no edit at all.
        self._last_flush = time.monotonic()
        self._lock = asyncio.Lock()
        # A pending flush for text that arrived before the interval was up, so a
        # pause in the model's output does not hide what it already said.
        self._timer: asyncio.TimerHandle | None = None
        self._timed: asyncio.Task[None] | None = None
        self._finished = False
        # The status line shown while tools run ("" for none); notes for the end.
        self._status = ""
        self._notes: list[str] = []

    def _first_limit(self) -> int | None:
        # A target may want a shorter first message (the rest goes to a thread).
        return getattr(self.target, "first_limit", None)

    @property
    def started(self) -> bool:
        return bool(self.handles)

    async def feed(self, delta: str) -> None:
        if not self.handles and not self.text and delta:
            # A model that was slow to start may still answer in one piece: the first
            # post waits FIRST_POST_GRACE after the first text, so such a reply is one
            # POST with no edit (the typing indicator covered the wait before it).
            now = time.monotonic()
            grace = min(self.interval, FIRST_POST_GRACE)
            self._last_flush = max(self._last_flush, now - self.interval + grace)
        self.text += delta
        if self._status and delta.strip():
            self._status = ""  # the answer is streaming: what ran is over
        await self._schedule()

    async def status(self, text: str | None) -> None:
        """Show ``text`` (e.g. "using roll_die…") under what was said so far, until
        answer text streams; None removes it."""
        self._status = (text or "").strip()
        await self._schedule()

    def note(self, text: str) -> None:
        """Add a line after the final text (not part of :attr:`text`, nor history)."""
        if text.strip():
            self._notes.append(text.strip())

    async def _schedule(self) -> None:
        due = self._last_flush + self.interval - time.monotonic()
        if due <= 0:
            await self.flush(final=False)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self._finished:
            self._timed = asyncio.ensure_future(self._timed_flush())

    async def _timed_flush(self) -> None:
        # A failed edit here is retried by the next flush (or finish), which reports.
        with contextlib.suppress(Exception):
            await self.flush(final=False)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def flush(self, *, final: bool) -> None:
        async with self._lock:
            if self._finished and not final:
                return
            await self._render(final)

    def _display(self, final: bool) -> str:
        """What the messages show: the text, then the status line (live) or the notes."""
        asides = self._notes if final else [self._status] if self._status else []
        if not asides:
            return self.text
        lines = "\n".join(ASIDE + aside for aside in asides)
        return f"{self.text.rstrip()}\n{lines}" if self.text.strip() else lines

    async def _render(self, final: bool) -> None:
        display = self._display(final)
        if not display.strip():
            return
        parts = split_message(display, self.limit, first_limit=self._first_limit())
        # The live (last) part shows it is still being written; a status line, which
        # ends in the same marker, says so already.
        if not final and not self._status:
            tail = parts[-1]
            if len(tail) + len(PLACEHOLDER) + 1 <= self.limit:
                parts[-1] = f"{tail} {PLACEHOLDER}"
        for index, part in enumerate(parts):
            if index < len(self.handles):
                if self._shown[index] != part:
                    await self.target.edit(self.handles[index], part)
                    self._shown[index] = part
            else:
                handle = await self.target.send(part, first=index == 0)
                self.handles.append(handle)
                self._shown.append(part)
                if not final and self.tracker is not None:
                    self._tracked = True
                    await self.tracker.started(handle)
        # A re-split can shorten the list (rare): blank extra parts rather than leave stale text.
        for index in range(len(parts), len(self.handles)):
            if self._shown[index] != PLACEHOLDER:
                await self.target.edit(self.handles[index], PLACEHOLDER)
                self._shown[index] = PLACEHOLDER
        self._last_flush = time.monotonic()

    def cancel(self) -> None:
        """The turn ended abnormally (cancelled): post nothing more."""
        self._finished = True
        self._cancel_timer()
        if self._timed is not None and not self._timed.done():
            self._timed.cancel()

    async def _stop_timer(self) -> None:
        self._finished = True
        self._cancel_timer()
        if self._timed is not None and not self._timed.done():
            await asyncio.wait([self._timed])

    async def finish(self) -> str:
        self._status = ""
        await self._stop_timer()
        await self.flush(final=True)
        await self._untrack()
        return self.text

    async def _untrack(self) -> None:
        if self._tracked and self.tracker is not None:
            self._tracked = False
            await self.tracker.ended(self.handles)

    async def abandon(self, notice: str) -> None:
        """The reply failed part-way: mark what was shown as cut off and say why, once
        (an empty ``notice`` only marks the cut)."""
        self._status = ""
        await self._stop_timer()
        async with self._lock:
            if self.handles and not self.text.strip():
                # Only a status line was shown: it becomes the notice (or the cut mark).
                await self.target.edit(self.handles[0], notice or CUT_OFF)
                self._shown[0] = notice or CUT_OFF
            elif self.handles:
                shown = split_message(self.text, self.limit, first_limit=self._first_limit())
                last = len(shown) - 1
                cut = f"{shown[last]} {CUT_OFF}"
                if len(cut) <= self.limit and last < len(self.handles):
                    await self.target.edit(self.handles[last], cut)
                if notice:
                    await self.target.send(notice, first=False)
            elif notice:
                await self.target.send(notice, first=True)
        await self._untrack()
