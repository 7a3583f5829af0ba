"""History reads from memory: once a process knows a channel's newest entries, a
reply needs no database read (and waits for no write), on both backends; another
process's write to the channel makes this one read it from the database again."""

from __future__ import annotations

import asyncio
import contextlib

from hark.chat.history import Entry, HistoryStore


def exchange(n: int) -> list[Entry]:
    return [Entry("user", f"question {n}", "alice", 1), Entry("assistant", f"answer {n}")]


class CountingReads:
    """Counts the store's reads of the database (and can make them fail)."""

    def __init__(self, db) -> None:
        self.db = db
        self.count = 0
        self.fail = False
        self._reading = db.reading

    @contextlib.asynccontextmanager
    async def reading(self):
        self.count += 1
        if self.fail:
            raise AssertionError("the database was read")
        async with self._reading() as reader:
            yield reader


async def counted_store(database) -> tuple[HistoryStore, CountingReads]:
    """A history store on ``database`` (built before it opens, as the runtime does:
    no reload-all notice), and the count of its database reads."""
    store = HistoryStore(database)
    await database.open()
    await store.open()
    reads = CountingReads(database)
    database.reading = reads.reading
    return store, reads


async def test_reads_after_the_first_come_from_memory_with_every_write(db_factory):
    database = await db_factory(open=False)
    store, reads = await counted_store(database)
    try:
        assert await store.recent(7, 12) == []
        assert reads.count == 1  # the channel's whole (empty) history is known now
        reads.fail = True
        for n in range(8):
            await store.append(7, 1, exchange(n))
            seen = await store.recent(7, 12)
            assert seen[-1] == Entry("assistant", f"answer {n}")
            assert len(seen) == min(12, 2 * (n + 1))
        await store.flush()
        # Written, and still exactly once each.
        assert [e.content for e in await store.recent(7, 4)] == [
            "question 6",
            "answer 6",
            "question 7",
            "answer 7",
        ]
        # A deeper read than memory holds goes to the database.
        reads.fail = False
        assert len(await store.recent(7, 100)) == 16
    finally:
        await store.close()
    rows = await database.fetchall("SELECT COUNT(*) FROM history WHERE channel_id = 7")
    assert rows[0][0] == 16


async def test_a_channel_with_more_history_than_asked_is_read_once_then_from_memory(db_factory):
    database = await db_factory()
    first = HistoryStore(database)
    for n in range(10):
        await first.append(9, 1, exchange(n))
    await first.close()
    database = await db_factory(open=False)  # a new process on the same database
    store, reads = await counted_store(database)
    try:
        assert [e.content for e in await store.recent(9, 3)] == [
            "answer 8",
            "question 9",
            "answer 9",
        ]
        reads.fail = True
        await store.append(9, 1, exchange(10))
        assert [e.content for e in await store.recent(9, 3)] == [
            "answer 9",
            "question 10",
            "answer 10",
        ]
        # Cleared: known to be empty, no read needed either.
        await store.clear(9)
        assert await store.recent(9, 3) == []
    finally:
        await store.close()


async def test_another_processs_write_is_seen_within_a_second(db_factory, store_backend):
    if store_backend == "sqlite":
        return  # one process per SQLite database: nothing else writes its history
    one, other = await db_factory(open=False), await db_factory(open=False)
    here, there = HistoryStore(one), HistoryStore(other)
    await one.open()
    await other.open()
    await here.open()
    await there.open()
    try:
        await here.append(5, 1, exchange(1))
        await here.flush()
        assert len(await here.recent(5, 12)) == 2  # known, and read from memory now
        await there.append(5, 1, exchange(2))
        await there.flush()
        async with asyncio.timeout(1.0):
            while len(await here.recent(5, 12)) != 4:
                await asyncio.sleep(0.02)
        assert [e.content for e in await here.recent(5, 12)][-1] == "answer 2"
    finally:
        await here.close()
        await there.close()
