"""Losing the PostgreSQL server while the bot runs, and getting it back.

The bot reaches the session's throwaway server through a TCP proxy the test cuts
(every connection dropped, new ones refused: the server "gone") and restores. Reads
of settings and plugin switches come from memory meanwhile, writes say the database
can't be reached, history is queued and written once the server is back (or kept
in the spill file at shutdown), and replies go on with the history held in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from hark.bot import UNAVAILABLE_TEXT
from hark.chat.history import Entry, HistoryStore
from hark.store import DatabaseUnavailable, PluginState, SettingsStore
from hark.store.postgres import PostgresDatabase
from hark.testing.fakes import FakeGenerator, fake_plugin
from hark.testing.harness import BotHarness

PASSWORD = "s3cret-pw-for-tests"
CHAT = {"trigger_names": ["robot"], "rate_limit": "0", "edit_interval": 0.05}


def exchange(i: int) -> list[Entry]:
    return [Entry("user", f"q{i}", "alice", 7), Entry("assistant", f"a{i}", "Hark")]


async def until(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def proxied(postgres_cluster, postgres_url, tcp_proxy):
    """(the proxy, this test's database through it with a password in the URL)."""
    proxy = await tcp_proxy(postgres_cluster.port)
    name = postgres_url.rsplit("/", 1)[1]
    return proxy, proxy.url(postgres_cluster.url(name, password=PASSWORD))


async def test_reads_come_from_memory_writes_fail_clearly_and_history_waits(
    proxied, tmp_path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    proxy, url = proxied
    spill = tmp_path / "history.pending.jsonl"
    db = PostgresDatabase(url, connect_timeout=2, reconnect_patience=0.5)
    settings, state = SettingsStore(db), PluginState(db)
    history = HistoryStore(db, spill_path=spill)
    settings.subscribe()
    state.subscribe()
    await db.open()
    try:
        await settings.load()
        await state.load()
        conf = settings.for_plugin("llm")
        conf.register(model="default")
        await conf.guild(1).set("model", "qwen")
        await state.set_enabled(1, "twitch", False)
        for i in (1, 2):
            await history.append(5, 1, exchange(i))
        assert await history.flush(timeout=5)
        assert len(await history.recent(5, 10)) == 4

        await proxy.cut()
        # Reads: from memory.
        assert conf.guild(1).get("model") == "qwen" and state.enabled(1, "twitch") is False
        # Writes: a clear error naming the database, never its password; nothing changed.
        with pytest.raises(DatabaseUnavailable) as info:
            await conf.guild(1).set("model", "mistral")
        assert str(info.value).startswith("cannot reach the database postgresql://hark:***@")
        assert PASSWORD not in str(info.value)
        assert conf.guild(1).get("model") == "qwen"
        with pytest.raises(DatabaseUnavailable):
            await state.set_enabled(1, "twitch", True)
        assert state.enabled(1, "twitch") is False
        # History: queued, and the next turn's context is what this process knew.
        await history.append(5, 1, exchange(3))
        entries = await history.recent(5, 10)
        assert [e.content for e in entries] == ["q1", "a1", "q2", "a2", "q3", "a3"]
        assert await history.recent(6, 10) == []  # never read, nothing queued

        def delayed() -> list[str]:
            return [r.getMessage() for r in caplog.records if "history write delayed" in r.msg]

        async def writer_waits() -> bool:
            return bool(delayed())

        await until(writer_waits, 10.0, "the history writer saying it waits")
        assert "database unreachable" in delayed()[0]
        assert any("history read from memory" in r.getMessage() for r in caplog.records)

        await proxy.restore()
        assert await history.flush(timeout=10)
        rows = await db.fetchall("SELECT content FROM history WHERE channel_id = 5 ORDER BY id")
        assert [r[0] for r in rows] == ["q1", "a1", "q2", "a2", "q3", "a3"]
        assert [e.content for e in await history.recent(5, 10)] == [r[0] for r in rows]
        await conf.guild(1).set("model", "mistral")  # writes work again
        assert conf.guild(1).get("model") == "mistral"

        # Gone at shutdown: the queued exchange waits in the spill file.
        await proxy.cut()
        await history.append(5, 1, exchange(4))
        await history.close(timeout=0.5)
        assert spill.is_file() and "q4" in spill.read_text()
    finally:
        await db.close()
    assert PASSWORD not in caplog.text

    await proxy.restore()
    again = PostgresDatabase(url)
    await again.open()
    try:
        history = HistoryStore(again, spill_path=spill)
        await history.open()
        assert not spill.exists()
        assert [e.content for e in await history.recent(5, 2)] == ["q4", "a4"]
    finally:
        await again.close()


async def test_the_bot_keeps_replying_while_the_database_is_gone(proxied, tmp_path):
    proxy, url = proxied
    llm = FakeGenerator(lambda messages: f"heard: {messages[-1].content}")
    config = {**CHAT, "database_url": url}
    async with BotHarness(tmp_path, plugins={"llm": fake_plugin(llm)}, config=config) as h:
        assert h.bot.runtime.db.dialect == "postgresql"
        await h.final(await h.ask("robot, my name is Alice"))
        await h.history(2)

        await proxy.cut()
        reply = await h.final(await h.ask("robot, what is my name?"))
        assert reply.startswith("heard:")
        # The model still had the earlier exchange (held in memory) in its prompt.
        prompt = " ".join(m.content for m in llm.requests[-1].messages)
        assert "my name is Alice" in prompt
        # A command that writes says why it could not.
        answer = await h.ask("!plugins disable llm", author=h.admin)
        assert answer.content == UNAVAILABLE_TEXT

        await proxy.restore()
        history = h.bot.runtime.history

        async def written() -> bool:
            rows = await h.bot.runtime.db.fetchall(
                "SELECT count(*) FROM history WHERE channel_id = ?", (h.channel.id,)
            )
            return rows[0][0] == 4

        await until(written, 15.0, "the exchange from the outage written")
        assert await history.flush(timeout=1)
        # And writes work again.
        answer = await h.ask("!plugins disable llm", author=h.admin)
        assert answer.content != UNAVAILABLE_TEXT
        assert h.bot.runtime.state.enabled(h.guild.id, "llm") is False


async def test_the_bot_on_postgresql_keeps_its_state_across_a_restart(postgres_url, tmp_path):
    llm = FakeGenerator(lambda messages: "noted")
    config = {**CHAT, "database_url": postgres_url}
    async with BotHarness(tmp_path, plugins={"llm": fake_plugin(llm)}, config=config) as h:
        await h.final(await h.ask("robot, remember the blue door"))
        await h.history(2)
        await h.ask("!plugins disable llm", author=h.admin)
        assert h.bot.runtime.state.enabled(h.guild.id, "llm") is False
        await h.restart()
        assert h.bot.runtime.state.enabled(h.guild.id, "llm") is False
        entries = await h.history(2)
        assert [e.content for e in entries][:1] == ["robot, remember the blue door"]
    # Nothing was written to a SQLite file.
    assert not (tmp_path / "hark.sqlite3").exists()
