"""The fake gateway: login failures, RESUME, restarts, raw protocol details."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord
import pytest
from discord.ext import commands

from hark.testing.discord import FakeDiscord, eventually

World = Any  # fixture type, defined in conftest.py
StartBot = Callable[..., Awaitable[discord.Client]]
MakeBot = Callable[..., commands.Bot]

pytestmark = pytest.mark.timeout(30)


async def test_wrong_token_is_a_login_failure(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    with pytest.raises(discord.LoginFailure):
        await start_bot(make_bot(), "not-the-token")
    assert ("GET", "/api/v10/users/@me", 401) in server.requests
    assert server.identify_count == 0


async def test_identify_with_wrong_token_closes_4004(server: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.gateway_url) as ws:
        hello = await ws.receive_json()
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41250
        await ws.send_json({"op": 1, "d": None})
        assert (await ws.receive_json())["op"] == 11
        await ws.send_json({"op": 2, "d": {"token": "nope", "intents": 513, "properties": {}}})
        message = await ws.receive()
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4004 or message.data == 4004


async def test_raw_resume_replays_missed_events(server: FakeDiscord, world: World) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.gateway_url) as ws:
            await ws.receive_json()  # HELLO
            await ws.send_json(
                {"op": 2, "d": {"token": server.bot_token, "intents": 513 | 2 | (1 << 15)}}
            )
            ready = await ws.receive_json()
            assert ready["t"] == "READY" and ready["s"] == 1
            assert ready["d"]["guilds"] == [{"id": str(world.guild.id), "unavailable": True}]
            guild_create = await ws.receive_json()
            assert guild_create["t"] == "GUILD_CREATE" and guild_create["s"] == 2
            assert guild_create["d"]["member_count"] == len(guild_create["d"]["members"])
            session_id = ready["d"]["session_id"]
            await ws.close(code=4000)
        await asyncio.sleep(0.05)
        missed = await server.post_message(world.text, world.alice, "while you were away")
        async with http.ws_connect(ready["d"]["resume_gateway_url"]) as ws:
            await ws.receive_json()  # HELLO
            await ws.send_json(
                {"op": 6, "d": {"token": server.bot_token, "session_id": session_id, "seq": 2}}
            )
            replayed = await ws.receive_json()
            assert replayed["t"] == "MESSAGE_CREATE" and replayed["s"] == 3
            assert replayed["d"]["id"] == str(missed.id)
            assert (await ws.receive_json())["t"] == "RESUMED"
        async with http.ws_connect(server.gateway_url) as ws:
            await ws.receive_json()
            await ws.send_json(
                {"op": 6, "d": {"token": server.bot_token, "session_id": "bogus", "seq": 1}}
            )
            assert await ws.receive_json() == {"op": 9, "d": False, "s": None, "t": None}


async def test_drop_gateway_resumes_and_delivers_missed_message(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()
    received: list[str] = []
    resumed = asyncio.Event()

    @bot.listen()
    async def on_message(message: discord.Message) -> None:
        received.append(message.content)

    @bot.listen()
    async def on_resumed() -> None:
        resumed.set()

    await start_bot(bot)
    await server.drop_gateway(resumable=True)
    await server.post_message(world.text, world.alice, "sent during the outage")
    await asyncio.wait_for(resumed.wait(), 10)
    await server.wait_for_resume()
    await eventually(lambda: received)
    assert received == ["sent during the outage"]
    assert server.resume_count == 1 and server.identify_count == 1

    # An abnormal closure (no close frame) is resumed the same way.
    await server.drop_gateway(abnormal=True)
    await server.wait_for_resume(2)
    await server.post_message(world.text, world.alice, "after the second outage")
    await eventually(lambda: len(received) == 2)
    assert received[-1] == "after the second outage"
    assert server.identify_count == 1


async def test_op7_reconnect_resumes(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    await start_bot(make_bot())
    server.request_reconnect()
    await server.wait_for_resume()
    assert server.identify_count == 1


async def test_restart_and_overlapping_sessions(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    first = await start_bot(make_bot())
    second = await start_bot(make_bot())  # e.g. a new process while the old one still runs
    assert server.identify_count == 2 and len(server.connected_sessions) == 2
    got: list[int] = []
    for bot in (first, second):

        async def on_message(message: discord.Message, bot: discord.Client = bot) -> None:
            got.append(id(bot))

        bot.add_listener(on_message)  # type: ignore[attr-defined]
    await server.post_message(world.text, world.alice, "both see this")
    await eventually(lambda: len(got) == 2)
    assert sorted(got) == sorted([id(first), id(second)])
    await first.close()
    await eventually(lambda: len(server.connected_sessions) == 1)
    # The first session is disconnected (discord.py closes with 4000, so Discord
    # keeps it resumable); the other one is unaffected.
    assert server.connected_sessions == [server.sessions[1]]
    await server.post_message(world.text, world.alice, "only the second")
    await eventually(lambda: len(got) == 3)
    await asyncio.sleep(0.05)  # give the closed bot a chance to (wrongly) see it too
    assert got[-1] == id(second) and len(got) == 3


async def test_member_query_over_the_gateway(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = await start_bot(make_bot())
    guild = bot.get_guild(world.guild.id)
    assert guild is not None
    found = await guild.query_members(query="ali")
    assert [m.id for m in found] == [world.alice.id]
    by_id = await guild.query_members(user_ids=[world.admin.id])
    assert [m.name for m in by_id] == ["boss"]


async def test_invalid_session_makes_the_client_identify_again(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    # discord.py sleeps 5 s before a non-initial IDENTIFY, so this one is slower.
    bot = make_bot()
    readies = 0

    @bot.listen()
    async def on_ready() -> None:
        nonlocal readies
        readies += 1

    await start_bot(bot)
    await server.drop_gateway(resumable=False)
    await eventually(lambda: readies >= 2, timeout=15)
    assert server.identify_count == 2 and server.resume_count == 0
    assert len(server.sessions) == 1  # the dropped one was ended
    event_names = [e.name for e in server.gateway_events]
    assert event_names.count("READY") == 2
