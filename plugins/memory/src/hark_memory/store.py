"""The facts, in the bot's database (``host.database``): tables ``memory_*``.

A fact belongs to one *space*: ``guild:<id>`` for a server, ``dm:<user id>`` for a
member's DMs with the bot. Every query names its space, so nothing crosses between
servers or between one member's DMs and another's. Full-text search is SQLite
FTS5 (bm25 ranking), kept in step with the facts by triggers.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from hark.api import PluginDatabase

MIGRATIONS = [
    # 1: the facts, and FTS5 over their text. SQLite only for now: PostgreSQL (issue 16)
    # gets a step with a tsvector column and a GIN index instead.
    {
        "sqlite": """
        CREATE TABLE memory_facts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            space TEXT NOT NULL,
            subject_id INTEGER,
            subject_name TEXT,
            text TEXT NOT NULL,
            importance INTEGER NOT NULL,
            said_by INTEGER,
            said_by_name TEXT,
            guild_id INTEGER,
            channel_id INTEGER,
            origin TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX memory_facts_by_subject ON memory_facts (space, subject_id);
        CREATE INDEX memory_facts_by_said_by ON memory_facts (space, said_by);
        CREATE VIRTUAL TABLE memory_facts_fts USING fts5(
            text, content='memory_facts', content_rowid='id', tokenize='porter unicode61'
        );
        CREATE TRIGGER memory_facts_ai AFTER INSERT ON memory_facts BEGIN
            INSERT INTO memory_facts_fts (rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER memory_facts_ad AFTER DELETE ON memory_facts BEGIN
            INSERT INTO memory_facts_fts (memory_facts_fts, rowid, text)
                VALUES ('delete', old.id, old.text);
        END;
        CREATE TRIGGER memory_facts_au AFTER UPDATE OF text ON memory_facts BEGIN
            INSERT INTO memory_facts_fts (memory_facts_fts, rowid, text)
                VALUES ('delete', old.id, old.text);
            INSERT INTO memory_facts_fts (rowid, text) VALUES (new.id, new.text);
        END;
        """
    },
]

# Each importance point weighs as much as this many seconds of age in eviction.
IMPORTANCE_WEIGHT = 30 * 86400.0
_COLUMNS = (
    "id, space, subject_id, subject_name, text, importance, said_by, said_by_name,"
    " guild_id, channel_id, origin, created_at, updated_at"
)
_WORD = re.compile(r"\w+", re.UNICODE)
# Words that match everything and rank nothing.
_STOPWORD_TEXT = (
    "a an and are as at be but by can do does did for from has have he her his how i if"
    " in is it its me my of on or our she so that the their them they this to us was we"
    " were what when where which who whom why will with you your yours about just any"
    " know remember tell"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def space_of(guild_id: int | None, user_id: int | None) -> str | None:
    """Where a turn's facts live: its server, or the member's DMs (None: nowhere)."""
    if guild_id is not None:
        return f"guild:{guild_id}"
    if user_id is not None:
        return f"dm:{user_id}"
    return None


@dataclass(frozen=True, slots=True)
class Fact:
    id: int
    space: str
    subject_id: int | None  # the member it is about; None: the server (or the DM)
    subject_name: str | None
    text: str
    importance: int
    said_by: int | None
    said_by_name: str | None
    guild_id: int | None
    channel_id: int | None
    origin: str  # "extracted" or "tool"
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class NewFact:
    """A fact to store: what it says and where it came from."""

    text: str
    subject_id: int | None
    subject_name: str | None
    importance: int
    said_by: int | None
    said_by_name: str | None
    guild_id: int | None
    channel_id: int | None
    at: float
    origin: str = "extracted"
    replaces: int | None = None


def fts_query(text: str, limit: int = 24) -> str | None:
    """An FTS5 query for ``text``: its words, each quoted (no operator injection), OR'd."""
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if len(word) > 1 and word not in _STOPWORDS and word not in words:
            words.append(word)
    if not words:
        return None
    return " OR ".join(f'"{w}"' for w in words[:limit])


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def near_duplicate(a: str, b: str, threshold: float = 0.75) -> bool:
    """The same statement in other words (or repeated): most words shared."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return a.strip().lower() == b.strip().lower()
    return len(wa & wb) / len(wa | wb) >= threshold


def _same_subject(space: str, subject_id: int | None) -> tuple[str, tuple[object, ...]]:
    # "= NULL" matches nothing in SQL: a fact about the server has its own test.
    if subject_id is None:
        return "SELECT id, text FROM memory_facts WHERE space = ? AND subject_id IS NULL", (space,)
    return (
        "SELECT id, text FROM memory_facts WHERE space = ? AND subject_id = ?",
        (space, subject_id),
    )


class MemoryStore:
    def __init__(self, db: PluginDatabase) -> None:
        self.db = db

    async def get(self, space: str, fact_id: int) -> Fact | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM memory_facts WHERE space = ? AND id = ?", (space, fact_id)
        )
        return Fact(*row) if row else None

    async def about(self, space: str, subject_id: int | None, limit: int = 200) -> list[Fact]:
        """Facts about one member (or, with None, about the server), most important first."""
        where = "subject_id = ?" if subject_id is not None else "subject_id IS NULL"
        params = (space, subject_id) if subject_id is not None else (space,)
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM memory_facts WHERE space = ? AND {where}"
            " ORDER BY importance DESC, updated_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [Fact(*r) for r in rows]

    async def search(self, space: str, text: str, limit: int = 30) -> list[Fact]:
        """Facts of ``space`` matching ``text``, best (bm25) first."""
        query = fts_query(text)
        if query is None:
            return []
        rows = await self.db.fetchall(
            f"SELECT {', '.join('f.' + c.strip() for c in _COLUMNS.split(','))}"
            " FROM memory_facts_fts JOIN memory_facts AS f ON f.id = memory_facts_fts.rowid"
            " WHERE memory_facts_fts MATCH ? AND f.space = ?"
            " ORDER BY bm25(memory_facts_fts), f.importance DESC LIMIT ?",
            (query, space, limit),
        )
        return [Fact(*r) for r in rows]

    async def count(self, space: str) -> int:
        row = await self.db.fetchone("SELECT count(*) FROM memory_facts WHERE space = ?", (space,))
        return int(row[0]) if row else 0

    async def save(
        self, space: str, facts: list[NewFact], *, max_facts: int, now: float | None = None
    ) -> list[int]:
        """Store ``facts`` in one transaction: each replaces the fact it names, or a
        near-duplicate about the same subject, or is added. Then the space is cut to
        ``max_facts``. Returns the ids written (a replaced fact keeps its id)."""
        written: list[int] = []
        async with self.db.transaction() as tx:
            for fact in facts:
                target = None
                if fact.replaces is not None:
                    row = await tx.fetchone(
                        "SELECT id FROM memory_facts WHERE space = ? AND id = ?",
                        (space, fact.replaces),
                    )
                    target = row[0] if row else None
                if target is None:
                    same_subject = await tx.fetchall(*_same_subject(space, fact.subject_id))
                    target = next(
                        (i for i, text in same_subject if near_duplicate(text, fact.text)), None
                    )
                if target is not None:
                    await tx.execute(
                        "UPDATE memory_facts SET text = ?, importance = ?, subject_name = ?,"
                        " said_by = ?, said_by_name = ?, channel_id = ?, origin = ?,"
                        " updated_at = ? WHERE id = ?",
                        (
                            fact.text,
                            fact.importance,
                            fact.subject_name,
                            fact.said_by,
                            fact.said_by_name,
                            fact.channel_id,
                            fact.origin,
                            fact.at,
                            target,
                        ),
                    )
                    written.append(target)
                    continue
                row = await tx.fetchone(
                    "INSERT INTO memory_facts (space, subject_id, subject_name, text,"
                    " importance, said_by, said_by_name, guild_id, channel_id, origin,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " RETURNING id",
                    (
                        space,
                        fact.subject_id,
                        fact.subject_name,
                        fact.text,
                        fact.importance,
                        fact.said_by,
                        fact.said_by_name,
                        fact.guild_id,
                        fact.channel_id,
                        fact.origin,
                        fact.at,
                        fact.at,
                    ),
                )
                if row is not None:
                    written.append(int(row[0]))
            await self._evict(tx, space, max_facts, time.time() if now is None else now)
        return written

    @staticmethod
    async def _evict(tx, space: str, max_facts: int, now: float) -> int:
        """Cut ``space`` to ``max_facts``: lowest importance first, and among facts of
        equal weight the least recently confirmed (one importance point = 30 days)."""
        row = await tx.fetchone("SELECT count(*) FROM memory_facts WHERE space = ?", (space,))
        excess = (int(row[0]) if row else 0) - max_facts
        if excess <= 0:
            return 0
        return await tx.execute(
            "DELETE FROM memory_facts WHERE id IN (SELECT id FROM memory_facts WHERE space = ?"
            " ORDER BY importance * ? + (updated_at - ?) ASC, id ASC LIMIT ?)",
            (space, IMPORTANCE_WEIGHT, now, excess),
        )

    async def forget(self, space: str, fact_id: int) -> bool:
        return (
            await self.db.execute(
                "DELETE FROM memory_facts WHERE space = ? AND id = ?", (space, fact_id)
            )
            > 0
        )

    async def forget_member(self, space: str, user_id: int) -> int:
        """Delete every fact about ``user_id`` or told by them in ``space``; how many."""
        return await self.db.execute(
            "DELETE FROM memory_facts WHERE space = ? AND (subject_id = ? OR said_by = ?)",
            (space, user_id, user_id),
        )
