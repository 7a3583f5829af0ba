"""ShardedHarkBot in this test process (BotHarness with shard settings): a process
serves only the servers of its shards; two of them on one PostgreSQL follow each
other's plugin switches and take turns to identify. The same with real `bot run`
processes: test_shards_e2e.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

import hark
from hark.bot import ShardedHarkBot
from hark.config import Secret
from hark.testing.discord import MANAGE_GUILD, FakeDiscord, WaitTimeout
from hark.testing.harness import BotHarness

pytestmark = pytest.mark.timeout(60)


class Greeter(hark.PluginCog, name="Greeter"):
    @commands.command()
    async def greet(self, ctx: commands.Context[Any]) -> None:
        await ctx.send(f"hi from {self.bot.shard_label}")

    @app_commands.command(name="greet", description="Say hi")
    async def slash_greet(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hi")


GREETER = hark.Plugin(description="a command per shard", cogs=[Greeter])


def two_servers(server: FakeDiscord) -> Any:
    """A server on each shard of ``server``, a member in both, an admin in each."""
    alice = server.create_user("alice")
    world: dict[str, Any] = {"alice": alice, "guilds": [], "channels": [], "admins": []}
    for shard in (0, 1):
        guild = server.create_guild(f"Shard {shard}", shard=shard)
        world["guilds"].append(guild)
        world["channels"].append(server.create_text_channel(guild, "general"))
        server.create_member(guild, user=alice)
        world["admins"].append(
            server.create_member(guild, f"boss{shard}", permissions=MANAGE_GUILD)
        )
    return world


async def ask(server: FakeDiscord, channel: Any, author: Any, text: str) -> Any:
    reply = asyncio.create_task(server.wait_for_message(channel, author=server.bot_user))
    await asyncio.sleep(0)
    await server.post_message(channel, author, text)
    return await reply


async def silent(server: FakeDiscord, channel: Any, author: Any, text: str) -> None:
    waiting = asyncio.create_task(
        server.wait_for_message(channel, author=server.bot_user, timeout=0.8)
    )
    await asyncio.sleep(0)
    await server.post_message(channel, author, text)
    try:
        reply = await waiting
    except WaitTimeout:
        return
    raise AssertionError(f"expected no reply to {text!r}, got {reply.content!r}")


def names(server: FakeDiscord, guild: Any) -> set[str]:
    """The slash commands synced for this server (not the global ones)."""
    return {c.name for c in server.state.commands.get(guild.id, {}).values()}


@pytest.fixture
async def sharded_server(request) -> AsyncIterator[FakeDiscord]:
    options = getattr(request, "param", {})
    async with FakeDiscord(shard_count=2, **options) as server:
        yield server
    assert not server.internal_errors, server.internal_errors


@pytest.mark.parametrize("sharded_server", [{"max_concurrency": 2}], indirect=True)
async def test_a_process_serves_only_the_servers_of_its_shards(
    tmp_path: Path, sharded_server: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    server = sharded_server
    world = two_servers(server)
    (g0, g1), (c0, c1), alice = world["guilds"], world["channels"], world["alice"]
    caplog.set_level(logging.INFO, logger="hark.bot")
    token = "dash-token-for-shard-tests-0123456789"
    config = {
        "shards": [1],
        "shard_count": 2,
        "dashboard": "127.0.0.1:0",
        "dashboard_token": Secret(token),
    }
    async with BotHarness(
        tmp_path, server=server, plugins={"greeter": GREETER}, config=config
    ) as h:
        bot = h.bot
        assert isinstance(bot, ShardedHarkBot) and bot.shard_label == "shard 1 of 2"
        assert [g.id for g in bot.guilds] == [g1.id]
        assert [s.shard for s in server.connected_sessions] == [(1, 2)]
        assert "this process runs shard 1 of 2" in caplog.text
        # shard 1 of 2 on SQLite: the other shard's process could not share it
        assert "runs only some shards, on SQLite" in caplog.text

        # Slash commands are offered where this process runs; shard 0's server is
        # another process's business.
        assert "greet" in names(server, g1)
        assert names(server, g0) == set()
        assert (await ask(server, c1, alice, "!greet")).content == "hi from shard 1 of 2"
        await silent(server, c0, alice, "!greet")
        await silent(server, server.create_dm(alice), alice, "!greet")  # DMs: shard 0

        pong = await ask(server, c1, alice, "!ping")
        pong = await server.wait_for_edit(pong, lambda m: "heartbeat" in m.content)
        assert pong.content.endswith("(shard 1 of 2).")
        assert bot.gateway_open and bot.gateway_socket(g1.id) is not None
        assert bot.gateway_socket(g0.id) is None  # not this process's shard

        # The dashboard's overview: connected (every shard of this process), and which.
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(bot.dashboard.url.rstrip("/") + "/api/overview") as r:
                overview = await r.json()
            assert overview["connected"] and overview["shards"] == "shard 1 of 2"
            assert [g["id"] for g in overview["guilds"]] == [str(g1.id)]
            async with http.get(bot.dashboard.url) as r:
                page = await r.text()
            assert "This process" in page and "shard 1 of 2" in page

        # A switch in this server re-syncs it.
        done = await ask(server, c1, world["admins"][1], "!plugins disable greeter")
        assert "disabled" in done.content, done.content
        assert "greet" not in names(server, g1)


@pytest.mark.parametrize("sharded_server", [{"max_concurrency": 1}], indirect=True)
async def test_two_processes_on_one_postgresql_identify_in_turn_and_follow_each_other(
    tmp_path: Path, sharded_server: FakeDiscord, postgres_url: str
) -> None:
    server = sharded_server
    world = two_servers(server)
    (g0, g1), (c0, c1), alice = world["guilds"], world["channels"], world["alice"]
    harnesses = [
        BotHarness(
            tmp_path / f"process{shard}",
            server=server,
            plugins={"greeter": GREETER},
            config={"shards": [shard], "shard_count": 2, "database_url": postgres_url},
        )
        for shard in (0, 1)
    ]
    try:
        # Started at the same moment, like two processes: one identify bucket, so
        # the shared identify lock makes the second wait out Discord's 5 s.
        await asyncio.gather(*(h.start() for h in harnesses))
        assert server.refused_identifies == [], server.identifies
        first, second = server.identifies
        assert second.at - first.at >= 5.0 and {first.shard, second.shard} == {(0, 2), (1, 2)}
        assert [g.id for g in harnesses[0].bot.guilds] == [g0.id]
        assert [g.id for g in harnesses[1].bot.guilds] == [g1.id]
        assert "greet" in names(server, g0) and "greet" in names(server, g1)

        # The owner switches the plugin off for every server, through shard 0's
        # process; shard 1's process re-syncs its server within a second.
        done = await ask(server, c0, server.owner, "!plugins global disable greeter")
        assert "disabled" in done.content, done.content
        switched = time.monotonic()
        while "greet" in names(server, g1):
            assert time.monotonic() - switched < 1.0, "shard 1 kept offering /greet"
            await asyncio.sleep(0.01)
        assert "greet" not in names(server, g0)
        await silent(server, c1, alice, "!greet")
        await ask(server, c1, server.owner, "!plugins global enable greeter")  # through shard 1
        switched = time.monotonic()
        while "greet" not in names(server, g0):
            assert time.monotonic() - switched < 1.0, "shard 0 did not offer /greet again"
            await asyncio.sleep(0.01)
        assert (await ask(server, c0, alice, "!greet")).content == "hi from shard 0 of 2"
    finally:
        for h in harnesses:
            await h.close()
