"""Memory: the companion remembers people and facts across conversations.

After every delivered reply (text or voice) the exchange is queued; in the
background, batched and under a cost cap per server, the server's own LLM is asked
for durable facts, stored in the bot's database with who said them, when and
where. Before a reply, the speaker's profile and the facts the message is about
(full-text search: SQLite FTS5 or PostgreSQL tsvector) go into the prompt within a
token budget. Memory is per server (DMs: per member), capped in size, never stores
secret-looking strings, and is erased on request (`!forget me`).
"""

from __future__ import annotations

import hark
from hark_memory.cog import MemoryCog
from hark_memory.context import ORDER, MemoryContext
from hark_memory.engine import Memory, estimate_tokens
from hark_memory.extract import EXTRACTION_MARKER, Exchange, extraction_messages, parse_facts
from hark_memory.secrets import looks_secret, redact
from hark_memory.settings import MemorySettings
from hark_memory.store import MIGRATIONS, Fact, MemoryStore, NewFact, fts_query, space_of
from hark_memory.tools import TOOLS, recall, remember

__all__ = [
    "EXTRACTION_MARKER",
    "MIGRATIONS",
    "ORDER",
    "TOOLS",
    "Exchange",
    "Fact",
    "Memory",
    "MemoryCog",
    "MemoryContext",
    "MemorySettings",
    "MemoryStore",
    "NewFact",
    "estimate_tokens",
    "extraction_messages",
    "fts_query",
    "looks_secret",
    "parse_facts",
    "plugin",
    "recall",
    "redact",
    "remember",
    "space_of",
]

plugin = hark.Plugin(
    description="Long-term memory of people and facts, per server, forgotten on request",
    settings=MemorySettings,
    providers=[MemoryContext],
    cogs=[MemoryCog],
    tools=list(TOOLS),
    migrations=MIGRATIONS,
)
