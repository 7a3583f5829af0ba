"""History and state writes are never lost: concurrency, a locked database, shutdown.

Against a real SQLite file. The lock is held by a second, plain sqlite3 connection,
as another process (`bot db ...`, a backup tool) would.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from hark.chat.history import Entry, HistoryStore
from hark.store import Database, PluginState, SettingsStore
from hark.store.database import DatabaseBusy


@pytest.fixture
async def db(tmp_path: Path):
    database = Database(tmp_path / "hark.sqlite3")
    await database.open()
    yield database
    await database.close()


def exchange(i: int) -> list[Entry]:
    return [Entry("user", f"q{i}", "alice", 7), Entry("assistant", f"a{i}", "Hark")]


async def table_rows(db: Database) -> list[tuple]:
    return await db.fetchall("SELECT channel_id, role, content FROM history ORDER BY id")


class HeldLock:
    """Another connection holding SQLite's write lock (BEGIN IMMEDIATE) until released."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


async def test_concurrent_appends_all_land(db: Database) -> None:
    history = HistoryStore(db)
    # The bug: 1,000 appends racing on the shared connection lost ~2% of them.
    await asyncio.gather(*(history.append(i % 10, 1, exchange(i)) for i in range(1000)))
    assert await history.flush(timeout=30)
    rows = await table_rows(db)
    assert len(rows) == 2000
    assert sorted(c for _, r, c in rows if r == "user") == sorted(f"q{i}" for i in range(1000))


async def test_concurrent_state_and_settings_writes_all_land(tmp_path: Path, db: Database) -> None:
    state, settings = PluginState(db), SettingsStore(db)
    conf = settings.for_plugin("demo")
    conf.register(value=0)
    await asyncio.gather(
        *(state.set_enabled(g, "demo", g % 2 == 0) for g in range(1, 101)),
        *(conf.guild(g).set("value", g) for g in range(1, 101)),
        *(state.set_choice(g, "generate", f"p{g}") for g in range(1, 101)),
    )
    again = Database(tmp_path / "hark.sqlite3")
    await again.open()
    try:
        state2, settings2 = PluginState(again), SettingsStore(again)
        await state2.load()
        await settings2.load()
        assert all(state2.enabled(g, "demo") == (g % 2 == 0) for g in range(1, 101))
        assert all(state2.choice(g, "generate") == f"p{g}" for g in range(1, 101))
        conf2 = settings2.for_plugin("demo")
        assert all(conf2.guild(g).get("value") == g for g in range(1, 101))
    finally:
        await again.close()


async def test_queued_exchanges_are_visible_before_they_are_written(
    tmp_path: Path, db: Database
) -> None:
    history = HistoryStore(db)
    lock = HeldLock(tmp_path / "hark.sqlite3")
    try:
        await history.append(5, 1, exchange(1))
        await history.append(6, 1, exchange(2))
        await asyncio.sleep(0.2)
        assert await table_rows(db) == []  # still locked out
        assert [e.content for e in await history.recent(5, 10)] == ["q1", "a1"]
        assert await history.count(6) == 2
    finally:
        lock.release()
    assert await history.flush(timeout=10)
    assert [e.content for e in await history.recent(5, 10)] == ["q1", "a1"]  # once, not twice
    assert len(await table_rows(db)) == 4


async def test_a_lock_past_the_busy_timeout_delays_the_write(
    tmp_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock held for 8 s (past SQLite's 5 s busy timeout): written late, not lost."""
    caplog.set_level(logging.DEBUG)
    history = HistoryStore(db)
    lock = HeldLock(tmp_path / "hark.sqlite3")
    try:
        await history.append(5, 1, exchange(1))
        await asyncio.sleep(8)
        assert await table_rows(db) == []
    finally:
        lock.release()
    assert await history.flush(timeout=10)
    assert await table_rows(db) == [(5, "user", "q1"), (5, "assistant", "a1")]
    delayed = [r for r in caplog.records if "history write delayed" in r.getMessage()]
    assert delayed and all(r.levelno == logging.WARNING for r in delayed)
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.WARNING)


async def test_clear_removes_queued_and_written_rows(tmp_path: Path, db: Database) -> None:
    history = HistoryStore(db)
    await history.append(5, 1, exchange(1))
    assert await history.flush(timeout=5)
    lock = HeldLock(tmp_path / "hark.sqlite3")
    await history.append(5, 1, exchange(2))
    lock.release()
    assert await history.clear(5) == 4
    assert await history.flush(timeout=5)
    assert await history.recent(5, 10) == []
    assert await table_rows(db) == []


async def test_shutdown_while_locked_keeps_the_rows_for_the_next_start(tmp_path: Path) -> None:
    path, spill = tmp_path / "hark.sqlite3", tmp_path / "history.pending.jsonl"
    db = Database(path)
    await db.open()
    history = HistoryStore(db, spill_path=spill)
    lock = HeldLock(path)
    await history.append(5, 1, exchange(1))
    await history.close(timeout=0.5)
    await db.close()
    assert spill.is_file()
    lock.release()

    db = Database(path)
    await db.open()
    try:
        history = HistoryStore(db, spill_path=spill)
        await history.open()
        assert await table_rows(db) == [(5, "user", "q1"), (5, "assistant", "a1")]
        assert not spill.exists()
        assert [e.author_name for e in await history.recent(5, 10)] == ["alice", "Hark"]
    finally:
        await db.close()


async def test_a_settings_write_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    db = Database(tmp_path / "hark.sqlite3", write_patience=0.3)
    await db.open()
    lock = HeldLock(tmp_path / "hark.sqlite3")
    try:
        with pytest.raises(DatabaseBusy, match="locked"):
            await db.execute("INSERT INTO settings VALUES ('n', 'global', 'k', '1')")
        # The lock of this process is free again: reads still work.
        assert await db.fetchall("SELECT COUNT(*) FROM settings") == [(0,)]
    finally:
        lock.release()
        await db.close()


async def test_cancelled_writer_leaves_no_open_transaction(db: Database) -> None:
    async def slow_write() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO settings VALUES ('n', 'global', 'a', '1')")
            await asyncio.sleep(10)

    task = asyncio.create_task(slow_write())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await db.execute("INSERT INTO settings VALUES ('n', 'global', 'b', '1')")
    assert await db.fetchall("SELECT key FROM settings") == [("b",)]


async def test_old_rows_are_trimmed_every_few_writes(db: Database, monkeypatch):
    from hark.chat import history

    monkeypatch.setattr(history, "KEEP_PER_CHANNEL", 10)
    monkeypatch.setattr(history, "TRIM_EVERY", 4)
    store = HistoryStore(db)
    for i in range(20):
        await store.append(9, 1, exchange(i))
        await store.flush()
        rows = await db.fetchall("SELECT COUNT(*) FROM history WHERE channel_id = 9")
        assert rows[0][0] <= 10 + 4
    assert [e.content for e in await store.recent(9, 2)] == ["q19", "a19"]
    await store.close()
