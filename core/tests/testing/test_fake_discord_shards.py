"""The fake gateway's sharding: the shard an IDENTIFY names, routing each server's
events to its shard, and Discord's identify rate (one per bucket per window)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord.ext import commands

from hark.testing.discord import FakeDiscord, eventually, guild_id_on_shard, shard_of

pytestmark = pytest.mark.timeout(30)

GUILDS_AND_MESSAGES = 1 | (1 << 9) | (1 << 15)


@contextlib.asynccontextmanager
async def sharded(**options: Any) -> AsyncIterator[FakeDiscord]:
    """A started server with these options, discord.py pointed at it."""
    async with FakeDiscord(**options) as server:
        saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = server.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
        try:
            yield server
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
    assert not server.internal_errors, server.internal_errors


def shard_bot(shard_ids: list[int], shard_count: int, **options: Any) -> commands.AutoShardedBot:
    intents = discord.Intents.default()
    intents.message_content = True
    intents.members = True
    return commands.AutoShardedBot(
        command_prefix="!",
        intents=intents,
        shard_ids=shard_ids,
        shard_count=shard_count,
        guild_ready_timeout=0.05,
        **options,
    )


@contextlib.asynccontextmanager
async def running(server: FakeDiscord, *bots: discord.Client) -> AsyncIterator[None]:
    """Start ``bots`` at the same moment; close them at the end."""
    tasks = [asyncio.create_task(bot.start(server.bot_token)) for bot in bots]
    try:
        yield
    finally:
        for bot in bots:
            await bot.close()
        # A shard waiting to identify again (discord.py sleeps 5 s first) is cut short.
        _, late = await asyncio.wait(tasks, timeout=2)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def ready(*bots: discord.Client, timeout: float = 15) -> None:
    await asyncio.wait_for(asyncio.gather(*(b.wait_until_ready() for b in bots)), timeout)


async def raw_identify(
    http: aiohttp.ClientSession, server: FakeDiscord, shard: Any = None
) -> aiohttp.ClientWebSocketResponse:
    """A socket that has sent IDENTIFY (with ``shard`` if not None)."""
    ws = await http.ws_connect(server.gateway_url)
    assert (await ws.receive_json())["op"] == 10  # HELLO
    data: dict[str, Any] = {"token": server.bot_token, "intents": GUILDS_AND_MESSAGES}
    if shard is not None:
        data["shard"] = shard
    await ws.send_json({"op": 2, "d": data})
    return ws


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    message = await ws.receive()
    assert message.type is aiohttp.WSMsgType.CLOSE, message
    return ws.close_code


# -- ids on a chosen shard ------------------------------------------------------------


def test_guild_ids_land_on_the_shard_asked_for() -> None:
    for count in (1, 2, 3, 16):
        ids = [guild_id_on_shard(shard, count) for shard in range(count) for _ in range(3)]
        assert [shard_of(i, count) for i in ids] == [s for s in range(count) for _ in range(3)]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        # minted now: discord.py reads creation times from ids
        assert abs(((ids[0] >> 22) + 1420070400000) / 1000 - time.time()) < 5
    for shard, count in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError):
            guild_id_on_shard(shard, count)


async def test_create_guild_on_a_shard_and_what_gateway_bot_reports() -> None:
    async with sharded(shard_count=3, max_concurrency=2) as server:
        guilds = [server.create_guild(f"g{n}", shard=n % 3) for n in range(6)]
        assert [server.shard_of(g) for g in guilds] == [0, 1, 2, 0, 1, 2]
        assert len({g.id for g in guilds}) == 6
        headers = {"Authorization": f"Bot {server.bot_token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(f"{server.api_base}/gateway/bot") as response:
                body = await response.json()
            assert body["shards"] == 3 and body["url"] == server.gateway_url
            limit = body["session_start_limit"]
            assert limit["max_concurrency"] == 2 and limit["remaining"] == 1000
            ws = await raw_identify(http, server, [1, 3])
            assert (await ws.receive_json())["t"] == "READY"
            await ws.close()
            async with http.get(f"{server.api_base}/gateway/bot") as response:
                assert (await response.json())["session_start_limit"]["remaining"] == 999


# -- the shard an IDENTIFY names -------------------------------------------------------


async def test_identify_must_name_a_shard_of_the_bots_shard_count() -> None:
    async with sharded(shard_count=2, max_concurrency=2) as server:
        on_0 = server.create_guild("zero", shard=0)
        on_1 = server.create_guild("one", shard=1)
        async with aiohttp.ClientSession() as http:
            for shard, code in (
                (None, 4011),  # a sharded bot must shard
                ([0, 3], 4010),  # not the bot's shard count
                ([2, 2], 4010),  # no such shard
                (["1", 2], 4010),
                ([1], 4010),
            ):
                ws = await raw_identify(http, server, shard)
                assert await close_code(ws) == code, shard
                await ws.close()
            assert server.identifies == []  # none of those started a session
            ws = await raw_identify(http, server, [1, 2])
            ready = await ws.receive_json()
            assert ready["t"] == "READY" and ready["d"]["shard"] == [1, 2]
            assert ready["d"]["guilds"] == [{"id": str(on_1.id), "unavailable": True}]
            created = await ws.receive_json()
            assert created["t"] == "GUILD_CREATE" and created["d"]["id"] == str(on_1.id)
            # events of the other shard's server never come here
            channel = server.create_text_channel(on_0, "general")
            await server.post_message(channel, server.owner, "for shard 0")
            mine = server.create_text_channel(on_1, "general")
            await server.post_message(mine, server.owner, "for shard 1")
            names = []
            while "MESSAGE_CREATE" not in names:
                event = await asyncio.wait_for(ws.receive_json(), 5)
                names.append(event["t"])
                if event["t"] == "MESSAGE_CREATE":
                    assert event["d"]["content"] == "for shard 1"
            assert names == ["CHANNEL_CREATE", "MESSAGE_CREATE"]
            await ws.close()


async def test_a_single_shard_server_takes_unsharded_identifies_at_any_pace() -> None:
    async with sharded() as server, aiohttp.ClientSession() as http:
        sockets = [await raw_identify(http, server, shard) for shard in (None, None, [0, 1])]
        for ws in sockets:
            assert (await ws.receive_json())["t"] == "READY"
        assert server.refused_identifies == [] and len(server.identifies) == 3
        ws = await raw_identify(http, server, [0, 2])  # a count the bot does not have
        assert await close_code(ws) == 4010
        for ws in sockets:
            await ws.close()


# -- routing ---------------------------------------------------------------------------


async def test_each_servers_events_reach_only_its_shard_and_dms_shard_0() -> None:
    async with sharded(shard_count=2, max_concurrency=2) as server:
        g0, g1 = server.create_guild("zero", shard=0), server.create_guild("one", shard=1)
        c0, c1 = (
            server.create_text_channel(g0, "general"),
            server.create_text_channel(g1, "general"),
        )
        alice = server.create_user("alice")
        server.create_member(g0, user=alice)
        server.create_member(g1, user=alice)
        first, second = shard_bot([0], 2), shard_bot([1], 2)
        seen: dict[str, list[str]] = {"first": [], "second": []}
        joined: dict[str, list[int]] = {"first": [], "second": []}
        for name, bot in (("first", first), ("second", second)):

            async def on_message(message: discord.Message, name: str = name) -> None:
                seen[name].append(message.content)

            async def on_guild_join(guild: discord.Guild, name: str = name) -> None:
                joined[name].append(guild.id)

            bot.add_listener(on_message)
            bot.add_listener(on_guild_join)
        async with running(server, first, second):
            await ready(first, second)
            assert [g.id for g in first.guilds] == [g0.id]
            assert [g.id for g in second.guilds] == [g1.id]
            assert {s.shard for s in server.connected_sessions} == {(0, 2), (1, 2)}
            await server.post_message(c1, alice, "in one")
            await server.post_message(c0, alice, "in zero")
            await server.post_message(server.create_dm(alice), alice, "a DM")
            await eventually(lambda: len(seen["first"]) == 2 and seen["second"])
            later = server.create_guild("later", shard=1)
            await eventually(lambda: joined["second"])
            await asyncio.sleep(0.1)  # a wrongly routed event would have come by now
        assert seen == {"first": ["in zero", "a DM"], "second": ["in one"]}
        assert joined == {"first": [], "second": [later.id]}


# -- the identify rate ------------------------------------------------------------------


async def test_identifies_in_one_bucket_inside_the_window_are_refused_with_op_9() -> None:
    async with (
        sharded(shard_count=2, max_concurrency=1, identify_interval=0.5) as server,
        aiohttp.ClientSession() as http,
    ):
        first = await raw_identify(http, server, [0, 2])
        assert (await first.receive_json())["t"] == "READY"
        refused = await raw_identify(http, server, [1, 2])
        assert await refused.receive_json() == {"op": 9, "d": False, "s": None, "t": None}
        await refused.close()
        assert [(i.shard, i.bucket, i.refused) for i in server.identifies] == [
            ((0, 2), 0, False),
            ((1, 2), 0, True),
        ]
        assert server.refused_identifies == server.identifies[1:]
        assert [s.shard for s in server.sessions] == [(0, 2)]
        await asyncio.sleep(0.5)
        again = await raw_identify(http, server, [1, 2])
        assert (await again.receive_json())["t"] == "READY"
        for ws in (first, again):
            await ws.close()

    async with (
        sharded(shard_count=2, max_concurrency=2) as server,
        aiohttp.ClientSession() as http,
    ):
        # Two buckets: shards 0 and 1 may identify together.
        sockets = [await raw_identify(http, server, [shard, 2]) for shard in (0, 1)]
        for ws in sockets:
            assert (await ws.receive_json())["t"] == "READY"
        assert [i.bucket for i in server.identifies] == [0, 1]
        assert server.refused_identifies == []
        for ws in sockets:
            await ws.close()


async def test_a_bot_ignoring_max_concurrency_is_refused_and_one_spacing_identifies_is_not():
    # Two processes' worth of discord.py clients started at the same moment: each
    # sends its first IDENTIFY at once (discord.py waits only before later ones).
    async with sharded(shard_count=2, max_concurrency=1, identify_interval=1.0) as server:
        first, second = shard_bot([0], 2), shard_bot([1], 2)
        async with running(server, first, second):
            await eventually(lambda: server.identifies and len(server.identifies) >= 2)
        assert len(server.refused_identifies) == 1

    # Spacing them by the bucket's window (what hark.store.locks.identify_slot does
    # across processes) is accepted.
    lock = asyncio.Lock()
    last = 0.0

    async def spaced(shard_id: int | None, *, initial: bool = False) -> None:
        nonlocal last
        async with lock:
            await asyncio.sleep(max(0.0, last + 1.1 - time.monotonic()))
            last = time.monotonic()

    async with sharded(shard_count=2, max_concurrency=1, identify_interval=1.0) as server:
        first, second = shard_bot([0], 2), shard_bot([1], 2)
        first.before_identify_hook = spaced  # type: ignore[method-assign]
        second.before_identify_hook = spaced  # type: ignore[method-assign]
        async with running(server, first, second):
            await ready(first, second)
        assert server.refused_identifies == []
        times = [i.at for i in server.identifies]
        assert len(times) == 2 and times[1] - times[0] >= 1.0
