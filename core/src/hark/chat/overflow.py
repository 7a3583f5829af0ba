"""Long answers that continue in a thread (``!config chat thread_after_chars N``).

:class:`ThreadOverflowTarget` is a :class:`~hark.chat.streaming.ReplyTarget`: the
answer's first message is posted in the channel as usual (a reply to the question),
at most ``N`` characters long; the parts after it go into a thread started from that
message, created when the first of them is sent. Where no thread can be made (no
permission, a channel without threads), the answer goes on in the channel as any
other, its first message no longer held short.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from hark.chat.streaming import NO_PINGS, ChannelTarget
from hark.text import MESSAGE_LIMIT

log = logging.getLogger(__name__)

# Discord's limit on a thread's name.
THREAD_NAME_LIMIT = 100


def thread_name(question: str, fallback: str = "Answer") -> str:
    """A thread's name from the question: its first line, shortened at a word."""
    line = next((ln.strip() for ln in question.splitlines() if ln.strip()), "")
    line = re.sub(r"\s+", " ", line)
    if not line:
        return fallback
    if len(line) <= 80:
        return line
    cut = line.rfind(" ", 0, 80)
    return (line[: cut if cut > 40 else 80]).rstrip(" ,.;:") + "…"


class ThreadOverflowTarget(ChannelTarget):
    def __init__(
        self,
        channel: Any,
        reference: discord.Message | None,
        *,
        after_chars: int,
        name: str,
    ) -> None:
        super().__init__(channel, reference)
        self.after_chars = after_chars
        self.name = name[:THREAD_NAME_LIMIT] or "Answer"
        self.thread: Any = None
        self.failed = False
        self._first: discord.Message | None = None
        # Length of each part posted in the channel (by message id): for limits past
        # one message, later parts go to the thread once the answer is that long.
        self._in_channel: dict[int, int] = {}

    @property
    def first_limit(self) -> int | None:
        """Read by :class:`~hark.chat.streaming.StreamingReply`: how long its first
        message may be (None: as usual)."""
        if self.failed or self.after_chars >= MESSAGE_LIMIT:
            return None
        return max(self.after_chars, 16)

    async def send(self, content: str, *, first: bool) -> discord.Message:
        if first:
            message = await super().send(content, first=True)
            self._first = message
            self._in_channel[message.id] = len(content)
            return message
        if self.thread is None and not self.failed and self._wants_thread():
            self.thread = await self._start_thread()
        if self.thread is not None:
            return await self.thread.send(content, allowed_mentions=NO_PINGS)
        message = await super().send(content, first=False)
        self._in_channel[message.id] = len(content)
        return message

    async def edit(self, handle: discord.Message, content: str) -> None:
        await super().edit(handle, content)
        if handle.id in self._in_channel:
            self._in_channel[handle.id] = len(content)

    def _wants_thread(self) -> bool:
        shown = sum(self._in_channel.values())
        return self.after_chars < MESSAGE_LIMIT or shown >= self.after_chars

    async def _start_thread(self) -> Any:
        first = self._first
        create = getattr(first, "create_thread", None)
        if create is None:
            self.failed = True
            return None
        try:
            return await create(name=self.name, auto_archive_duration=1440)
        except (discord.HTTPException, ValueError, TypeError) as exc:
            # No permission (or threads are off here): the answer stays in the channel.
            log.info("could not start a thread for a long answer: %s", exc)
            self.failed = True
            return None
