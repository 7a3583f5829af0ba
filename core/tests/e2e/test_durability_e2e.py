"""Nothing lost through the whole bot: many turns at once, a locked database, hung
providers, replies in progress."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest

from hark.testing.fakes import FakeGenerator, fake_plugin
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


def last_user_text(messages) -> str:
    return next(m.content for m in reversed(messages) if m.role == "user")


async def wait_for_replies(h: BotHarness, channels, count: int) -> None:
    async with asyncio.timeout(30):
        while (
            sum(
                1
                for c in channels
                for m in h.server.messages(c)
                if m.author.id == h.server.bot_user.id and not m.content.endswith("…")
            )
            < count
        ):
            await asyncio.sleep(0.05)


async def test_fifty_turns_finishing_at_once_are_all_in_history(tmp_path) -> None:
    gate = asyncio.Event()
    started = 0

    async def reply(messages) -> str:
        nonlocal started
        started += 1
        await gate.wait()  # every turn finishes at the same moment
        return f"answer to {last_user_text(messages).split()[-1]}"

    h = BotHarness(tmp_path, plugins={"llm": fake_plugin(FakeGenerator(reply))}, config=CHAT)
    await h.start()
    try:
        channels = [h.channel] + [
            h.server.create_text_channel(h.guild, f"room{i}") for i in range(4)
        ]
        await asyncio.sleep(0.2)  # the new channels reach the bot
        for i in range(50):
            await h.say(f"robot question q{i}", channel=channels[i % 5])
        async with asyncio.timeout(20):
            while started < 50:
                await asyncio.sleep(0.02)
        gate.set()
        await wait_for_replies(h, channels, 50)
        assert await h.bot.runtime.history.flush(timeout=10)
        rows = await h.bot.runtime.db.fetchall(
            "SELECT channel_id, role, content FROM history ORDER BY id"
        )
    finally:
        await h.close()
    users = sorted(c.split()[-1] for _, r, c in rows if r == "user")
    answers = sorted(c.split()[-1] for _, r, c in rows if r == "assistant")
    assert users == sorted(f"q{i}" for i in range(50))
    assert answers == users
    # each exchange in its own channel
    by_channel = {(ch, c.split()[-1]) for ch, r, c in rows if r == "user"}
    assert by_channel == {(channels[i % 5].id, f"q{i}") for i in range(50)}


async def test_a_locked_database_delays_history_but_not_the_reply(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    generator = FakeGenerator(lambda messages: f"echo {last_user_text(messages)}")
    h = BotHarness(tmp_path, plugins={"llm": fake_plugin(generator)}, config=CHAT)
    await h.start()
    other = sqlite3.connect(h.bot.runtime.db.path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        reply = await h.ask("robot first question")
        await wait_for_replies(h, [h.channel], 1)
        assert "echo robot first question" in h.server.messages(h.channel)[-1].content
        # The next turn already sees the exchange that is still waiting to be written.
        await h.ask("robot second question")
        await wait_for_replies(h, [h.channel], 2)
        prompt = [m.content for m in generator.requests[-1].messages]
        assert "robot first question" in prompt
        await asyncio.sleep(8)  # past SQLite's busy timeout
        assert other.execute("SELECT COUNT(*) FROM history").fetchone() == (0,)
        other.execute("COMMIT")
        assert await h.bot.runtime.history.flush(timeout=10)
        rows = await h.bot.runtime.db.fetchall("SELECT role, content FROM history ORDER BY id")
        assert [c for _, c in rows] == [
            "robot first question",
            reply.content if not reply.content.endswith("…") else "echo robot first question",
            "robot second question",
            "echo robot second question",
        ]
    finally:
        other.close()
        await h.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info]


async def test_shutdown_waits_for_history_held_up_by_a_lock(tmp_path) -> None:
    generator = FakeGenerator(lambda messages: f"echo {last_user_text(messages)}")
    h = BotHarness(tmp_path, plugins={"llm": fake_plugin(generator)}, config=CHAT)
    await h.start()
    other = sqlite3.connect(h.bot.runtime.db.path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        await h.ask("robot remember this")
        await wait_for_replies(h, [h.channel], 1)
        closing = asyncio.create_task(h.stop())
        await asyncio.sleep(0.5)
        other.execute("COMMIT")  # released while the bot is shutting down
        await closing
    finally:
        other.close()
    try:
        await h.start()
        assert await h.bot.runtime.history.count(h.channel.id) == 2
        contents = [e.content for e in await h.bot.runtime.history.recent(h.channel.id, 10)]
        assert contents == ["robot remember this", "echo robot remember this"]
    finally:
        await h.close()


async def test_a_hung_llm_gets_its_notice_within_the_deadline(tmp_path) -> None:
    """OPENROUTER_TIMEOUT=60 and 3 attempts used to mean ~3 minutes; now the deadline."""
    generator = FakeGenerator("never", delay=3600, timeout=60)
    h = BotHarness(
        tmp_path,
        plugins={"llm": fake_plugin(generator)},
        config={**CHAT, "provider_deadline": 1.0},
    )
    await h.start()
    try:
        notice = await h.ask("robot are you there?", timeout=15)
        assert "took too long" in notice.content
        assert generator.calls == 1  # no retry could start before the deadline
        assert await h.bot.runtime.history.count(h.channel.id) == 0
    finally:
        await h.close()


async def test_streamed_replies_leave_no_inflight_rows(tmp_path) -> None:
    generator = FakeGenerator("word " * 40, chunk_size=10, delay=0.03)
    h = BotHarness(tmp_path, plugins={"llm": fake_plugin(generator)}, config=CHAT)
    await h.start()
    try:
        reply = await h.ask("robot talk")
        await wait_for_replies(h, [h.channel], 1)
        assert reply.edits, "the reply was streamed (posted with the marker, then edited)"
        info = h.bot.runtime.manager.get("llm")
        info.providers[0].fail_after_chars = 100  # the next one breaks part-way
        cut = await h.ask("robot talk again")
        async with asyncio.timeout(10):
            while "[cut off]" not in cut.content:
                await asyncio.sleep(0.02)
        # The cut mark is posted before the turn forgets its row (inflight.ended), and
        # the forgetting is written behind: wait for it rather than race it.
        async with asyncio.timeout(10):
            while True:
                await h.bot.runtime.inflight.drain()
                rows = await h.bot.runtime.db.fetchall("SELECT * FROM inflight_reply")
                if not rows:
                    break
                await asyncio.sleep(0.05)
    finally:
        await h.close()
    assert rows == []


async def test_a_setting_changed_while_the_database_is_locked_gets_a_clear_reply(tmp_path):
    h = BotHarness(tmp_path, plugins={"llm": fake_plugin(FakeGenerator("hi"))}, config=CHAT)
    await h.start()
    other = sqlite3.connect(h.bot.runtime.db.path, isolation_level=None, timeout=0)
    try:
        h.bot.runtime.db.write_patience = 0.3
        other.execute("BEGIN IMMEDIATE")
        reply = await h.ask("!persona You are a pirate.", author=h.admin)
        assert "database is busy" in reply.content and "nothing was changed" in reply.content
        other.execute("COMMIT")
        reply = await h.ask("!persona", author=h.admin)
        assert "pirate" not in reply.content
    finally:
        other.close()
        await h.close()
