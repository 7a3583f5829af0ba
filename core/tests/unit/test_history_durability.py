"""History and state writes are never lost: concurrency, a locked database, shutdown.

Against a real database, on each backend (core/tests/conftest.py): a SQLite file,
whose lock is held by a second, plain sqlite3 connection, and PostgreSQL, whose
tables another connection locks (LOCK TABLE ... IN EXCLUSIVE MODE), as another
process (`bot db ...`, a backup tool, a long migration) would.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from hark.chat.history import Entry, HistoryStore
from hark.store import Database, DatabaseBusy, PluginState, SettingsStore


def exchange(i: int) -> list[Entry]:
    return [Entry("user", f"q{i}", "alice", 7), Entry("assistant", f"a{i}", "Hark")]


async def table_rows(db: Database) -> list[tuple]:
    return await db.fetchall("SELECT channel_id, role, content FROM history ORDER BY id")


async def test_concurrent_appends_all_land(database: Database) -> None:
    history = HistoryStore(database)
    # The bug: 1,000 appends racing on the shared connection lost ~2% of them.
    await asyncio.gather(*(history.append(i % 10, 1, exchange(i)) for i in range(1000)))
    assert await history.flush(timeout=30)
    rows = await table_rows(database)
    assert len(rows) == 2000
    assert sorted(c for _, r, c in rows if r == "user") == sorted(f"q{i}" for i in range(1000))


async def test_reads_see_each_exchange_once_while_it_is_being_written(database: Database):
    """A read racing the writer's commit sees every exchange exactly once (in the
    table or still queued), never twice or not at all."""
    history = HistoryStore(database)
    for i in range(90):  # 180 rows: below KEEP_PER_CHANNEL, nothing is trimmed
        await history.append(5, 1, exchange(i))
        entries = await history.recent(5, 1000)
        assert [e.content for e in entries] == [f"{p}{n}" for n in range(i + 1) for p in "qa"]
    assert await history.flush(timeout=30)


async def test_concurrent_state_and_settings_writes_all_land(db_factory) -> None:
    db = await db_factory()
    state, settings = PluginState(db), SettingsStore(db)
    conf = settings.for_plugin("demo")
    conf.register(value=0)
    await asyncio.gather(
        *(state.set_enabled(g, "demo", g % 2 == 0) for g in range(1, 101)),
        *(conf.guild(g).set("value", g) for g in range(1, 101)),
        *(state.set_choice(g, "generate", f"p{g}") for g in range(1, 101)),
    )
    again = await db_factory()
    state2, settings2 = PluginState(again), SettingsStore(again)
    await state2.load()
    await settings2.load()
    assert all(state2.enabled(g, "demo") == (g % 2 == 0) for g in range(1, 101))
    assert all(state2.choice(g, "generate") == f"p{g}" for g in range(1, 101))
    conf2 = settings2.for_plugin("demo")
    assert all(conf2.guild(g).get("value") == g for g in range(1, 101))


async def test_queued_exchanges_are_visible_before_they_are_written(
    database: Database, database_url: str, hold_lock
) -> None:
    history = HistoryStore(database)
    lock = await hold_lock(database_url)
    try:
        await history.append(5, 1, exchange(1))
        await history.append(6, 1, exchange(2))
        await asyncio.sleep(0.2)
        assert await table_rows(database) == []  # still locked out
        assert [e.content for e in await history.recent(5, 10)] == ["q1", "a1"]
        assert await history.count(6) == 2
    finally:
        await lock.release()
    assert await history.flush(timeout=10)
    assert [e.content for e in await history.recent(5, 10)] == ["q1", "a1"]  # once, not twice
    assert len(await table_rows(database)) == 4


async def test_a_lock_past_the_busy_timeout_delays_the_write(
    database: Database, database_url: str, hold_lock, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock held past what one write waits (SQLite's 5 s busy timeout; the writer's
    1 s lock_timeout in PostgreSQL): written late, not lost."""
    caplog.set_level(logging.DEBUG)
    history = HistoryStore(database)
    lock = await hold_lock(database_url)
    try:
        await history.append(5, 1, exchange(1))
        await asyncio.sleep(8 if database.dialect == "sqlite" else 3)
        assert await table_rows(database) == []
    finally:
        await lock.release()
    assert await history.flush(timeout=10)
    assert await table_rows(database) == [(5, "user", "q1"), (5, "assistant", "a1")]
    delayed = [r for r in caplog.records if "history write delayed" in r.getMessage()]
    assert delayed and all(r.levelno == logging.WARNING for r in delayed)
    assert "locked" in delayed[0].getMessage()
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.WARNING)


async def test_clear_removes_queued_and_written_rows(
    database: Database, database_url: str, hold_lock
) -> None:
    history = HistoryStore(database)
    await history.append(5, 1, exchange(1))
    assert await history.flush(timeout=5)
    lock = await hold_lock(database_url)
    await history.append(5, 1, exchange(2))
    await lock.release()
    assert await history.clear(5) == 4
    assert await history.flush(timeout=5)
    assert await history.recent(5, 10) == []
    assert await table_rows(database) == []


async def test_shutdown_while_locked_keeps_the_rows_for_the_next_start(
    tmp_path: Path, db_factory, database_url: str, hold_lock
) -> None:
    spill = tmp_path / "history.pending.jsonl"
    db = await db_factory()
    history = HistoryStore(db, spill_path=spill)
    lock = await hold_lock(database_url)
    await history.append(5, 1, exchange(1))
    await history.close(timeout=0.5)
    await db.close()
    assert spill.is_file()
    await lock.release()

    db = await db_factory()
    history = HistoryStore(db, spill_path=spill)
    await history.open()
    assert await table_rows(db) == [(5, "user", "q1"), (5, "assistant", "a1")]
    assert not spill.exists()
    assert [e.author_name for e in await history.recent(5, 10)] == ["alice", "Hark"]


async def test_a_settings_write_gives_up_with_a_clear_error(
    db_factory, database_url: str, hold_lock
) -> None:
    db = await db_factory(write_patience=0.3)
    lock = await hold_lock(database_url)
    try:
        with pytest.raises(DatabaseBusy, match="locked"):
            await db.execute("INSERT INTO settings VALUES ('n', 'global', 'k', '1')")
        # The lock of this process is free again: reads still work.
        assert await db.fetchall("SELECT COUNT(*) FROM settings") == [(0,)]
    finally:
        await lock.release()


async def test_cancelled_writer_leaves_no_open_transaction(database: Database) -> None:
    async def slow_write() -> None:
        async with database.transaction() as tx:
            await tx.execute("INSERT INTO settings VALUES ('n', 'global', 'a', '1')")
            await asyncio.sleep(10)

    task = asyncio.create_task(slow_write())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await database.execute("INSERT INTO settings VALUES ('n', 'global', 'b', '1')")
    assert await database.fetchall("SELECT key FROM settings") == [("b",)]


async def test_old_rows_are_trimmed_every_few_writes(database: Database, monkeypatch):
    from hark.chat import history

    monkeypatch.setattr(history, "KEEP_PER_CHANNEL", 10)
    monkeypatch.setattr(history, "TRIM_EVERY", 4)
    store = HistoryStore(database)
    for i in range(20):
        await store.append(9, 1, exchange(i))
        await store.flush()
        rows = await database.fetchall("SELECT COUNT(*) FROM history WHERE channel_id = 9")
        assert rows[0][0] <= 10 + 4
    assert [e.content for e in await store.recent(9, 2)] == ["q19", "a19"]
    await store.close()


async def test_a_usual_batch_is_one_statement_on_sqlite(tmp_path: Path) -> None:
    """Once a channel was trimmed this run, a small batch is one multi-row INSERT in
    autocommit: no BEGIN and COMMIT trips to aiosqlite's thread around it."""
    from hark.store.sqlite import SQLiteDatabase

    db = SQLiteDatabase(tmp_path / "hark.sqlite3")
    await db.open()
    try:
        history = HistoryStore(db)
        await history.append(5, 1, exchange(0))  # the channel's first write trims
        assert await history.flush(timeout=10)
        statements: list[str] = []
        await db.conn.set_trace_callback(statements.append)
        await history.append(5, 1, exchange(1))
        assert await history.flush(timeout=10)
        await db.conn.set_trace_callback(None)
        assert len(statements) == 1 and statements[0].startswith("INSERT INTO history")
        assert [c for _, _, c in await table_rows(db)] == ["q0", "a0", "q1", "a1"]
    finally:
        await db.close()
