"""End-to-end: the real discord.py client, the real HarkBot, the loopback Discord server.

Covers the plugin system as a server admin sees it: `!plugins`, per-server
enable/disable (prefix, slash, listeners, providers), persistence across a
restart, owner-only global defaults, and a plugin that fails to import.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import EntryPoint

import pytest
from hark_example_hello import plugin as hello

from hark.providers import Capability
from hark.testing.fakes import EchoGenerator, FakeGenerator, fake_plugin
from hark.testing.harness import BotHarness

BROKEN = EntryPoint(name="broken", value="hark_no_such_module_xyz", group="hark")


@pytest.fixture
async def harness(tmp_path):
    h = BotHarness(tmp_path, plugins={"hello": hello}, entry_points=[BROKEN])
    await h.start()
    try:
        yield h
    finally:
        await h.close()


def second_guild(h: BotHarness):
    server = h.server
    guild = server.create_guild("Other Server")
    channel = server.create_text_channel(guild, "lobby")
    member = server.create_member(guild, "carol")
    return guild, channel, member


def command_names(server, guild) -> set[str]:
    return {c.name for c in server.commands(guild)}


async def wait_until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_plugins_lists_example_and_broken_plugin(harness: BotHarness) -> None:
    reply = await harness.ask("!plugins")
    text = reply.content
    assert "`core`" in text and "on (core)" in text
    assert "`hello` 0.1.0" not in text  # added directly, not from a distribution: no version
    assert "`hello`" in text and "**on**" in text and "context, commands" in text
    assert "`broken`" in text and "failed to load" in text and "ModuleNotFoundError" in text
    # ...and the bot keeps working alongside the broken plugin.
    greeting = await harness.ask("!hello")
    assert greeting.content == "Hello, alice!"


async def test_non_admin_cannot_disable(harness: BotHarness) -> None:
    reply = await harness.ask("!plugins disable hello", author=harness.member)
    assert "Manage Server" in reply.content
    assert harness.bot.control.is_enabled("hello", harness.guild.id)


async def test_unknown_plugin_and_core_are_refused(harness: BotHarness) -> None:
    reply = await harness.ask("!plugins disable nope", author=harness.admin)
    assert "No plugin called `nope`" in reply.content and "hello" in reply.content
    reply = await harness.ask("!plugins disable core", author=harness.admin)
    assert "can't be disabled" in reply.content
    reply = await harness.ask("!plugins use thinking hello", author=harness.admin)
    assert "not a capability" in reply.content
    reply = await harness.ask("!plugins enable", author=harness.admin)
    assert "Usage:" in reply.content


async def test_disable_hides_everything_in_that_server_only(harness: BotHarness) -> None:
    server, bot = harness.server, harness.bot
    guild2, lobby, carol = second_guild(harness)
    await wait_until(lambda: bot.get_guild(guild2.id) is not None)
    await bot.sync_guild_commands(guild2.id)
    assert "hello" in command_names(server, harness.guild)

    reply = await harness.ask("!plugins disable hello", author=harness.admin)
    assert "disabled in this server" in reply.content

    # prefix command: silent, as if it did not exist
    await harness.say("!hello")
    await harness.expect_silence()
    # slash command: no longer offered in this server
    assert "hello" not in command_names(server, harness.guild)
    with pytest.raises((LookupError, AssertionError)):
        await server.invoke_slash(harness.guild, harness.channel, harness.member, "hello")
    # listener: no wave here, but a wave in the other server
    ignored = await harness.say("hello hark, anyone here?")
    waved = await harness.say("hello hark!", author=carol, channel=lobby)
    await wait_until(lambda: waved.reactions)
    assert not ignored.reactions
    # providers: its context provider no longer runs here
    ids = [p.id for p in bot.control.context_providers(harness.guild.id)]
    assert "hello:clock" not in ids
    assert "hello:clock" in [p.id for p in bot.control.context_providers(guild2.id)]

    # the other server is untouched
    reply = await harness.ask("!hello", author=carol, channel=lobby)
    assert reply.content == "Hello, carol!"
    assert "hello" in command_names(server, guild2)
    inter = await server.invoke_slash(guild2, lobby, carol, "hello")
    response = await inter.wait_response()
    assert response.content == "Hello, carol!"


async def test_state_survives_restart(harness: BotHarness) -> None:
    await harness.ask("!plugins disable hello", author=harness.admin)
    await harness.restart()
    assert not harness.bot.control.is_enabled("hello", harness.guild.id)
    await harness.say("!hello")
    await harness.expect_silence()
    reply = await harness.ask("!plugins")
    assert "`hello` — **off**" in reply.content
    reply = await harness.ask("!plugins enable hello", author=harness.admin)
    assert "enabled" in reply.content
    assert (await harness.ask("!hello")).content == "Hello, alice!"


async def test_plugin_settings_survive_restart(harness: BotHarness) -> None:
    reply = await harness.ask("!config hello greeting Ahoy", author=harness.admin)
    assert "Ahoy" in reply.content
    refused = await harness.ask("!config hello greeting Boo", author=harness.member)
    assert "Manage Server" in refused.content
    await harness.restart()
    assert (await harness.ask("!hello")).content == "Ahoy, alice!"


async def test_slash_plugins(harness: BotHarness) -> None:
    server = harness.server
    inter = await server.invoke_slash(
        harness.guild, harness.channel, harness.member, "plugins", subcommand="list"
    )
    listing = await inter.wait_response()
    assert "`hello`" in listing.content and "**on**" in listing.content

    inter = await server.invoke_slash(
        harness.guild,
        harness.channel,
        harness.member,
        "plugins",
        subcommand="disable",
        options={"plugin": "hello"},
    )
    refused = await inter.wait_response()
    assert "Manage Server" in refused.content and refused.ephemeral
    assert harness.bot.control.is_enabled("hello", harness.guild.id)

    inter = await server.invoke_slash(
        harness.guild,
        harness.channel,
        harness.admin,
        "plugins",
        subcommand="disable",
        options={"plugin": "hello"},
    )
    done = await inter.wait_response()
    assert "disabled" in done.content
    assert not harness.bot.control.is_enabled("hello", harness.guild.id)
    assert "hello" not in command_names(server, harness.guild)


async def test_use_chooses_provider_per_server(tmp_path) -> None:
    async with BotHarness(
        tmp_path,
        plugins={
            "alpha": fake_plugin(EchoGenerator()),
            "beta": fake_plugin(FakeGenerator(replies=["b"])),
        },
    ) as h:
        control = h.bot.control
        auto = control.provider_for(Capability.GENERATE, h.guild.id)
        assert auto is not None and auto.plugin_id == "alpha"  # ranked by id when nothing is chosen
        reply = await h.ask("!plugins use generate beta", author=h.admin)
        assert "generate now uses `beta`" in reply.content
        assert control.provider_for(Capability.GENERATE, h.guild.id).plugin_id == "beta"
        await h.ask("!plugins disable beta", author=h.admin)
        # the chosen provider is disabled: fall back, and say so in the listing
        assert control.provider_for(Capability.GENERATE, h.guild.id).plugin_id == "alpha"
        listing = await h.ask("!plugins")
        assert "`beta` is unavailable" in listing.content


async def test_global_defaults_need_the_owner(harness: BotHarness) -> None:
    server = harness.server
    refused = await harness.ask("!plugins global disable hello", author=harness.admin)
    assert "owner" in refused.content
    owner = server.owner  # the application owner (also this guild's owner)
    reply = await harness.ask("!plugins global disable hello", author=owner)
    assert "by default" in reply.content
    assert not harness.bot.control.is_enabled("hello", harness.guild.id)
    _, lobby, carol = second_guild(harness)
    await harness.say("!hello", author=carol, channel=lobby)
    await harness.expect_silence(channel=lobby)
    # a server's own switch beats the global default
    await harness.ask("!plugins enable hello", author=harness.admin)
    assert (await harness.ask("!hello")).content == "Hello, alice!"


async def test_plugins_stats_shows_each_providers_calls_and_latency(tmp_path) -> None:
    from hark import ProviderTimeoutError
    from hark.providers import RetryPolicy

    slow = FakeGenerator(
        "fine", name="slow", fail_with=[ProviderTimeoutError("no answer")], retry=RetryPolicy(2, 0)
    )
    async with BotHarness(tmp_path, plugins={"llm": fake_plugin(slow)}) as h:
        refused = await h.ask("!plugins stats")
        assert "Manage Server" in refused.content
        await h.ask("!ask hello")
        stats = await h.ask("!plugins stats", author=h.admin)
        line = next(x for x in stats.content.splitlines() if x.startswith("`llm:slow`"))
        assert "(generate): 2 calls, 1 failed, 1 retried, 1 timed out; p50 " in line
        assert "first piece p50" in line
