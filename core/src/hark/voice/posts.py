"""The voice session's posts in its linked text channel: one ordered queue, sent in
the background, so nothing on a turn's path waits for Discord's REST API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import discord

from hark.chat.streaming import NO_PINGS

# The session's logger: these lines read (and are filtered) as the session's, as before.
log = logging.getLogger("hark.voice.session")

# close() waits this long for queued posts (e.g. a goodbye notice) to go out.
POST_FLUSH_TIMEOUT = 5.0


class PostQueue:
    """Posts for one server's voice session, sent one at a time in the order queued."""

    def __init__(self, guild_id: int) -> None:
        self.guild_id = guild_id
        # Each post keeps the channel it was queued for (the linked channel may change).
        self._posts: asyncio.Queue[tuple[Any, str]] = asyncio.Queue()
        self._poster: asyncio.Task[None] | None = None

    def put(self, channel: Any, text: str) -> None:
        """Queue ``text`` for ``channel`` (nothing when there is no channel); the poster
        starts with the first post."""
        if channel is None:
            return
        if self._poster is None or self._poster.done():
            self._poster = asyncio.create_task(self._loop(), name=f"voice-posts-{self.guild_id}")
        self._posts.put_nowait((channel, text))

    async def _loop(self) -> None:
        while True:
            channel, text = await self._posts.get()
            try:
                await channel.send(text[:2000], allowed_mentions=NO_PINGS)
            except discord.HTTPException as exc:
                log.warning(
                    "guild %s: could not post in the linked channel: %s", self.guild_id, exc
                )
            except Exception:
                log.exception("guild %s: posting in the linked channel failed", self.guild_id)
            finally:
                self._posts.task_done()

    async def flush(self, timeout: float = POST_FLUSH_TIMEOUT) -> None:
        """Wait (up to ``timeout``) until every queued post went out."""
        if self._poster is None or self._poster.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._posts.join(), timeout)

    async def close(self) -> None:
        """Let queued posts go out (see :meth:`flush`), then stop the poster."""
        await self.flush()
        if self._poster is not None:
            self._poster.cancel()
