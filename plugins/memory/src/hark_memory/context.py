"""The context provider: recall before a reply, and the learning trigger after it."""

from __future__ import annotations

import logging

import hark
from hark_memory.engine import Memory

log = logging.getLogger("hark.plugin.memory")

#: Where memory goes in the prompt (persona 0, memory 20, live events 40, history 50).
ORDER = 20


class MemoryContext(hark.ContextProvider):
    """Facts about the speaker and facts the message is about, as one system message."""

    name = "recall"
    timeout = 1.5

    def __init__(self) -> None:
        super().__init__()
        # Set by the Cog once the bot (and so the database) is there; None in `bot console`.
        self.memory: Memory | None = None

    async def _impl(self, request: hark.ContextRequest, **_: object) -> hark.ContextPart | None:
        if self.memory is None:
            return None
        try:
            text = await self.memory.recall(request)
        except Exception:
            # Recall never holds up or fails a reply: answer without memory this turn.
            log.exception("memory: recall failed")
            return None
        if text is None:
            return None
        return hark.ContextPart([hark.PromptMessage("system", text)], order=ORDER)

    async def record(self, request: hark.ContextRequest, reply: str) -> None:
        if self.memory is None:
            return
        try:
            self.memory.enqueue(request, reply)
        except Exception:
            log.exception("memory: could not queue an exchange")
