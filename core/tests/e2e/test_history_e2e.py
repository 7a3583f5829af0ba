"""History through the whole bot: many turns at once, a locked database, restarts."""

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
