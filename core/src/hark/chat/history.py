"""Per-channel conversation history in SQLite, offered to the model as context.

The history provider is an ordinary ContextProvider (the core dogfoods its plugin
API): it contributes the channel's last ``depth`` entries, and its ``record`` hook
writes an exchange once the reply was delivered. A failed turn is never recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hark.providers import ContextPart, ContextProvider, ContextRequest, PromptMessage
from hark.store import Database

# Rows kept per channel; the prompt uses far fewer (HISTORY_DEPTH), the rest is slack
# so a raised depth has something to show.
KEEP_PER_CHANNEL = 200


@dataclass(frozen=True, slots=True)
class Entry:
    role: str
    content: str
    author_name: str | None = None
    author_id: int | None = None


class HistoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def recent(self, channel_id: int, limit: int) -> list[Entry]:
        rows = await self.db.fetchall(
            "SELECT role, content, author_name, author_id FROM history "
            "WHERE channel_id = ? ORDER BY id DESC LIMIT ?",
            (channel_id, limit),
        )
        return [Entry(*row) for row in reversed(rows)]

    async def append(self, channel_id: int, guild_id: int | None, entries: list[Entry]) -> None:
        now = time.time()
        conn = self.db.conn
        # One transaction: an exchange is stored whole or not at all.
        await conn.executemany(
            "INSERT INTO history (channel_id, guild_id, role, author_id, author_name, content, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (channel_id, guild_id, e.role, e.author_id, e.author_name, e.content, now)
                for e in entries
            ],
        )
        await conn.execute(
            "DELETE FROM history WHERE channel_id = ? AND id <= "
            "(SELECT id FROM history WHERE channel_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (channel_id, channel_id, KEEP_PER_CHANNEL),
        )
        await conn.commit()

    async def clear(self, channel_id: int) -> int:
        async with self.db.conn.execute(
            "DELETE FROM history WHERE channel_id = ?", (channel_id,)
        ) as cur:
            count = cur.rowcount
        await self.db.conn.commit()
        return count

    async def count(self, channel_id: int) -> int:
        rows = await self.db.fetchall(
            "SELECT COUNT(*) FROM history WHERE channel_id = ?", (channel_id,)
        )
        return int(rows[0][0])


class HistoryContext(ContextProvider):
    """The channel's recent exchanges, speakers' names kept."""

    name = "history"
    timeout = 2.0

    default_settings = {"depth": None}

    def __init__(self, store: HistoryStore, depth: int = 12) -> None:
        super().__init__()
        self.store = store
        self.default_depth = depth

    def depth_for(self, guild_id: int | None) -> int:
        """HISTORY_DEPTH, unless the server set its own ``depth``."""
        depth = self.setting("depth", guild_id)
        return self.default_depth if depth is None else int(depth)

    async def _impl(self, request: ContextRequest) -> ContextPart | None:
        if not request.use_history or request.channel_id is None:
            return None
        depth = self.depth_for(request.guild_id)
        if depth <= 0:
            return None
        entries = await self.store.recent(request.channel_id, depth)
        if not entries:
            return None
        messages = [
            PromptMessage(
                "assistant" if e.role == "assistant" else "user", e.content, name=e.author_name
            )
            for e in entries
        ]
        return ContextPart(messages, order=50)

    async def record(self, request: ContextRequest, reply: str) -> None:
        if not request.use_history or request.channel_id is None or not reply.strip():
            return
        await self.store.append(
            request.channel_id,
            request.guild_id,
            [
                Entry("user", request.text, request.user_name, request.user_id),
                Entry("assistant", reply, request.bot_name, None),
            ],
        )
