"""Fixtures for testing the fake Discord server with a real discord.py client."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import discord
import pytest
import yarl
from discord.ext import commands

try:
    import hark.testing.discord  # noqa: F401
except ImportError:  # the package is not installed yet: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hark.testing.discord import (
    MANAGE_GUILD,
    ChannelRecord,
    FakeDiscord,
    GuildRecord,
    MemberRecord,
)

StartBot = Callable[..., Awaitable[discord.Client]]


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake
    # A handler crash inside the fake is a bug in the fake, whatever the test did.
    assert not fake.internal_errors, fake.internal_errors


@pytest.fixture
def pointed(server: FakeDiscord) -> Iterator[FakeDiscord]:
    """Point discord.py at the fake server the way the bot does from its settings."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    discord.http.Route.BASE = server.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
    yield server
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


@dataclass
class World:
    guild: GuildRecord
    text: ChannelRecord
    voice: ChannelRecord
    alice: MemberRecord
    admin: MemberRecord


@pytest.fixture
def world(server: FakeDiscord) -> World:
    guild = server.create_guild("Test Server")
    return World(
        guild=guild,
        text=server.create_text_channel(guild, "general"),
        voice=server.create_voice_channel(guild, "Lounge"),
        alice=server.create_member(guild, "alice"),
        admin=server.create_member(guild, "boss", permissions=MANAGE_GUILD),
    )


@pytest.fixture(name="make_bot")
def make_bot_fixture() -> Callable[..., commands.Bot]:
    """Test modules get the bot factory through this fixture (conftest is not importable)."""
    return make_bot


def make_intents() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True
    intents.members = True
    intents.voice_states = True
    return intents


def make_bot(**options: object) -> commands.Bot:
    # guild_ready_timeout: discord.py waits this long after the last GUILD_CREATE
    # before on_ready; the default 2 s only slows the tests down.
    options.setdefault("intents", make_intents())
    options.setdefault("guild_ready_timeout", 0.05)
    return commands.Bot(command_prefix="!", **options)  # type: ignore[arg-type]


@pytest.fixture
async def start_bot(pointed: FakeDiscord) -> AsyncIterator[StartBot]:
    """``await start_bot(bot)`` starts it against the fake and waits until ready."""
    running: list[tuple[discord.Client, asyncio.Task[None]]] = []

    async def start(bot: discord.Client, token: str | None = None) -> discord.Client:
        task = asyncio.create_task(bot.start(token or pointed.bot_token))
        running.append((bot, task))
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait({ready, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()  # re-raise the start-up failure
            raise RuntimeError("bot stopped during start-up")
        if ready not in done:
            ready.cancel()
            raise TimeoutError("bot did not become ready")
        return bot

    yield start
    for bot, task in running:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10)
