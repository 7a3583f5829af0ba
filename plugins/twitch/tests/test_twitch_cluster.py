"""A bot of two processes (here: two bots in one test process, shards 0 and 1 of one
loopback Discord, sharing one database): only the leader of "twitch" opens EventSub,
its events reach the other one's servers, and the other takes over when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import hark_twitch.relay
import pytest
from fake_twitch import FakeTwitch, chat_event, raid_event
from hark_twitch import twitch_status
from twitch_support import CHANNEL, CHAT, FAST, TOKEN, eventually, plugins, set_env

from hark import ContextRequest, ToolCall, ToolContext
from hark.store import locks
from hark.testing.discord import FakeDiscord
from hark.testing.fakes import FakeGenerator
from hark.testing.harness import BotHarness
from hark.tools import run_tool

POLL = 0.3


def commentator(messages) -> str:
    return f"Wow! {messages[-1].content.removeprefix('Twitch: ')}"


async def settle(message: Any, h: BotHarness) -> str:
    return await h.final(message)


@pytest.fixture(params=["sqlite", "postgresql"])
async def cluster(
    request, tmp_path, monkeypatch, twitch: FakeTwitch
) -> AsyncIterator[SimpleNamespace]:
    """Two bots on one database (an SQLite file, or PostgreSQL), one shard each, each
    with a linked channel in its own server; the first one started leads."""
    config = dict(CHAT)
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres_cluster")  # sync: allowed here
        config["database_url"] = await postgres.create_database()
    monkeypatch.setattr(locks, "LEADER_POLL", POLL)
    monkeypatch.setattr(hark_twitch.relay, "RELAY_POLL", 0.05)
    set_env(monkeypatch, twitch.env(TOKEN, CHANNEL, TWITCH_CHAT_REPLIES="on", **FAST))
    server = FakeDiscord(shard_count=2, max_concurrency=2)
    await server.start()
    world = SimpleNamespace(server=server, bots=[])
    for shard in (0, 1):
        guild = server.create_guild(f"Shard {shard}", shard=shard)
        channel = server.create_text_channel(guild, "stream")
        generator = FakeGenerator(commentator)
        h = BotHarness(tmp_path, plugins=plugins(generator), config=config, server=server)
        h.bot_options = {"shard_id": shard, "shard_count": 2}
        h.guild, h.channel, h.generator = guild, channel, generator
        world.bots.append(h)
    try:
        for h in world.bots:
            await h.start()
            h.cog = h.bot.get_cog("Twitch")
            if h is world.bots[0]:
                await h.cog.connection.wait_connected(10)
                await twitch.wait_for_subscriptions()
        for h in world.bots:
            owner = server.owner
            await h.ask(f"!config twitch channel_id <#{h.channel.id}>", author=owner)
            await h.ask("!config twitch min_interval 0", author=owner)
        yield world
    finally:
        for h in world.bots:
            await h.close()
        await server.close()


async def test_only_the_leader_connects_and_every_shard_gets_the_events(
    cluster, twitch: FakeTwitch, streamer
):
    leader, other = cluster.bots
    assert leader.cog.leadership.leading and not other.cog.leadership.leading
    await asyncio.sleep(3 * POLL)
    assert len(twitch.live_sessions()) == 1
    assert other.cog.connection.state == "standby" and other.cog.connection.helix is None
    # Each bot sees only its own shard's server.
    assert [g.id for g in leader.bot.guilds] == [leader.guild.id]
    assert [g.id for g in other.bot.guilds] == [other.guild.id]

    here = asyncio.create_task(leader.next_reply())
    there = asyncio.create_task(other.next_reply())
    await asyncio.sleep(0)
    assert await twitch.send_event("channel.raid", raid_event(streamer, "alice", 42)) == 1
    # The leader comments in its server; the other bot, which got the event through
    # the relay, in its own. Each turn ran in the bot that owns the server.
    assert await settle(await here, leader) == "Wow! alice raided the channel with 42 viewers"
    assert await settle(await there, other) == "Wow! alice raided the channel with 42 viewers"
    assert {r.guild_id for r in leader.generator.requests} == {leader.guild.id}
    assert {r.guild_id for r in other.generator.requests} == {other.guild.id}
    # Recorded in the history of the bot that posted it.
    await other.history(2, channel=other.channel)
    # The relayed event is context and a recent event there too.
    assert "alice raided" in other.cog.activity.render()
    assert [e.text for e in other.cog.recent.latest(other.guild.id, 5)] == [
        "alice raided the channel with 42 viewers"
    ]
    assert other.cog.relay.received == 1 and leader.cog.relay.received == 0

    # `!twitch` says who holds the connection.
    status = (await other.ask("!twitch", author=cluster.server.owner)).content
    assert status.startswith(
        "**Twitch**: twitch.tv/streamer is followed by another process of this bot"
        f" ({leader.bot.runtime.status.process}), which passes its events on to this one."
    )
    assert "Subscriptions:" not in status
    assert "Last event: alice raided the channel with 42 viewers" in status
    assert f"commentary in <#{other.channel.id}>" in status
    status = (await leader.ask("!twitch", author=cluster.server.owner)).content
    assert status.startswith("**Twitch**: connected to twitch.tv/streamer as streamer")
    held = f"Connection held by this process ({leader.bot.runtime.status.process})"
    assert f"{held} for the whole bot." in status
    assert "raids ✅" in status

    # Twitch chat: the leader answers once; the relayed copy is context only.
    question = chat_event(streamer, "viewer1", "robot, which game is this?")
    await twitch.send_event("channel.chat.message", question)
    await twitch.wait_for(lambda: len(twitch.chat_messages) == 1)
    asked = 'viewer1 in chat: "robot, which game is this?"'
    await eventually(lambda: asked in (other.cog.activity.render() or ""))
    await asyncio.sleep(0.5)
    assert len(twitch.chat_messages) == 1
    assert leader.cog.chat_replies == 1 and other.cog.chat_replies == 0


async def test_the_other_process_takes_over_when_the_leader_stops(
    cluster, twitch: FakeTwitch, streamer
):
    leader, other = cluster.bots
    await leader.stop()
    await eventually(lambda: not twitch.live_sessions())
    # Within a poll the other bot holds the connection and subscribes.
    await other.cog.leadership.wait_leading(timeout=POLL + 5)
    await other.cog.connection.wait_connected(10)
    await twitch.wait_for_subscriptions()
    assert len(twitch.live_sessions()) == 1

    there = asyncio.create_task(other.next_reply())
    await asyncio.sleep(0)
    await twitch.send_event("channel.raid", raid_event(streamer, "bob", 7))
    assert await settle(await there, other) == "Wow! bob raided the channel with 7 viewers"
    assert other.cog.relay.received == 0  # its own event now, not a relayed one
    status = (await other.ask("!twitch status", author=cluster.server.owner)).content
    assert status.startswith("**Twitch**: connected to twitch.tv/streamer")


async def test_the_tools_work_where_the_connection_is_not(cluster, twitch: FakeTwitch, streamer):
    """twitch_status in the bot that does not hold the connection: it looks the stream
    up through Helix with a client of its own (EventSub stays with the leader)."""
    _, other = cluster.bots
    twitch.go_live(CHANNEL, title="Speedruns", game="Celeste", viewers=12)
    request = ContextRequest(text="live?", guild_id=other.guild.id, channel_id=other.channel.id)
    result = await run_tool(
        twitch_status,
        ToolCall("c1", "twitch_status", "{}"),
        ToolContext(request, host=other.bot.host),
    )
    assert not result.error, result.content
    assert "is live now." in result.content and "Viewers: 12" in result.content
    assert len(twitch.live_sessions()) == 1  # no second EventSub session for a lookup
    assert other.cog.connection.state == "standby"
