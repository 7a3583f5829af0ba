"""Slash commands, components and modals with a real discord.py command tree."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from hark.testing.discord import CommandNotAvailable, FakeDiscord, WaitTimeout, eventually

World = Any  # fixture type, defined in conftest.py
StartBot = Callable[..., Awaitable[discord.Client]]
MakeBot = Callable[..., commands.Bot]

pytestmark = pytest.mark.timeout(30)


def add_commands(bot: commands.Bot, guild_id: int) -> None:
    plugins = app_commands.Group(
        name="plugins",
        description="Manage plugins",
        default_permissions=discord.Permissions(manage_guild=True),
    )
    manage = app_commands.Group(name="manage", description="Change plugins", parent=plugins)

    @plugins.command(name="list", description="List plugins")
    async def list_plugins(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hello, music", ephemeral=True)

    @manage.command(name="enable", description="Enable a plugin")
    @app_commands.describe(name="Plugin id", level="How much")
    @app_commands.choices(
        mode=[
            app_commands.Choice(name="Fast", value="fast"),
            app_commands.Choice(name="Slow", value="slow"),
        ]
    )
    async def enable(
        interaction: discord.Interaction, name: str, level: int = 1, mode: str = "fast"
    ) -> None:
        await interaction.response.send_message(f"enabled {name} level={level} mode={mode}")

    @app_commands.command(name="slow", description="Deferred then edited")
    @app_commands.guild_only()
    async def slow(interaction: discord.Interaction, who: discord.Member) -> None:
        await interaction.response.defer(thinking=True)
        await asyncio.sleep(0.05)
        await interaction.edit_original_response(content=f"done for {who.display_name}")

    @app_commands.command(name="chatty", description="Reply and follow up")
    async def chatty(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await interaction.followup.send("first")
        await interaction.followup.send("second")

    @app_commands.command(name="local", description="Only in the test guild")
    async def local(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"local in {interaction.guild_id}")

    bot.tree.add_command(plugins)
    bot.tree.add_command(slow)
    bot.tree.add_command(chatty)
    bot.tree.add_command(local, guild=discord.Object(guild_id))


async def test_slash_commands_sync_and_invoke(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()
    add_commands(bot, world.guild.id)
    await start_bot(bot)
    synced = await bot.tree.sync()
    assert sorted(c.name for c in synced) == ["chatty", "plugins", "slow"]
    guild_obj = discord.Object(world.guild.id)
    await bot.tree.sync(guild=guild_obj)
    assert sorted(c.name for c in server.commands(world.guild)) == [
        "chatty",
        "local",
        "plugins",
        "slow",
    ]
    assert [c.name for c in server.commands()] == [c.name for c in synced]

    inter = await server.invoke_slash(
        world.guild,
        world.text,
        world.admin,
        "plugins",
        {"name": "music", "level": 3},
        "manage enable",
    )
    reply = await inter.wait_response()
    assert reply.content == "enabled music level=3 mode=fast" and not reply.ephemeral
    assert reply.author is server.bot_user and reply.interaction is not None

    inter = await server.invoke_slash(
        world.guild, world.text, world.admin, "plugins manage enable", {"name": "x", "mode": "Slow"}
    )
    assert (await inter.wait_response()).content == "enabled x level=1 mode=slow"

    listing = await server.invoke_slash(world.guild, world.text, world.admin, "plugins list")
    message = await listing.wait_response()
    assert message.ephemeral and message.content == "hello, music"

    # default_permissions(manage_guild) hides /plugins from a plain member.
    with pytest.raises(CommandNotAvailable):
        await server.invoke_slash(world.guild, world.text, world.alice, "plugins list")

    slow = await server.invoke_slash(
        world.guild, world.text, world.alice, "slow", {"who": world.admin}
    )
    done = await slow.wait_response()
    assert slow.deferred and done.content == "done for boss" and done.edits == [""]

    chatty = await server.invoke_slash(world.guild, world.text, world.alice, "chatty")
    first = await chatty.wait_response()
    second = await chatty.wait_followup(1)
    # The first followup after a defer fills in the deferred (ephemeral) message.
    assert first.content == "first" and first.ephemeral and first is chatty.followups[0]
    assert second.content == "second" and len(chatty.followups) == 2

    local = await server.invoke_slash(world.guild, world.text, world.alice, "local")
    assert (await local.wait_response()).content == f"local in {world.guild.id}"

    # Ids stay stable across syncs; a removed guild command can no longer be run.
    ids_before = {c.name: c.id for c in server.commands(world.guild)}
    bot.tree.remove_command("local", guild=guild_obj)
    await bot.tree.sync(guild=guild_obj)
    await bot.tree.sync()
    assert {c.name: c.id for c in server.commands(world.guild)} == {
        k: v for k, v in ids_before.items() if k != "local"
    }
    with pytest.raises(CommandNotAvailable):
        await server.invoke_slash(world.guild, world.text, world.alice, "local")


async def test_invalid_invocations_are_refused(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()
    add_commands(bot, world.guild.id)
    await start_bot(bot)
    await bot.tree.sync()
    with pytest.raises(CommandNotAvailable):
        await server.invoke_slash(world.guild, world.text, world.alice, "nope")
    with pytest.raises(LookupError):
        await server.invoke_slash(world.guild, world.text, world.admin, "plugins")  # needs a sub
    with pytest.raises(LookupError):
        await server.invoke_slash(
            world.guild, world.text, world.admin, "plugins manage enable", {"nme": "typo"}
        )
    with pytest.raises(ValueError):
        await server.invoke_slash(world.guild, world.text, world.admin, "plugins manage enable")
    with pytest.raises(TypeError):
        await server.invoke_slash(
            world.guild,
            world.text,
            world.admin,
            "plugins manage enable",
            {"name": "x", "level": "3"},
        )
    with pytest.raises(ValueError):
        await server.invoke_slash(
            world.guild,
            world.text,
            world.admin,
            "plugins manage enable",
            {"name": "x", "mode": "warp"},
        )


async def test_unacknowledged_interaction_times_out(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()

    @bot.tree.command(name="sleepy", description="Answers too late")
    async def sleepy(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.5)
        try:
            await interaction.response.send_message("too late")
        except discord.NotFound as exc:
            errors.append(exc.code)

    errors: list[int] = []
    await start_bot(bot)
    await bot.tree.sync()
    server.interaction_ack_timeout = 0.2
    inter = await server.invoke_slash(world.guild, world.text, world.alice, "sleepy")
    with pytest.raises(AssertionError, match="did not respond"):
        await inter.wait_response(timeout=5)
    await eventually(lambda: errors)
    assert errors == [10062]  # Unknown interaction, like Discord after 3 s


async def test_components_modals_and_autocomplete(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()

    class Feedback(discord.ui.Modal, title="Feedback"):
        text = discord.ui.TextInput(label="What do you think?")

        async def on_submit(self, interaction: discord.Interaction) -> None:
            await interaction.response.send_message(f"thanks: {self.text.value}")

    class Buttons(discord.ui.View):
        @discord.ui.button(label="Ping", custom_id="ping")
        async def ping(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
            await interaction.response.edit_message(content="pong", view=None)

        @discord.ui.button(label="Tell", custom_id="tell")
        async def tell(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
            await interaction.response.send_modal(Feedback())

    @bot.tree.command(name="panel", description="Buttons")
    async def panel(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("panel", view=Buttons())

    async def fruit_choices(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        fruits = ["apple", "apricot", "banana"]
        return [app_commands.Choice(name=f, value=f) for f in fruits if f.startswith(current)]

    @bot.tree.command(name="fruit", description="Pick a fruit")
    @app_commands.autocomplete(name=fruit_choices)
    async def fruit(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(name)

    @bot.tree.context_menu(name="Wave at")
    async def wave(interaction: discord.Interaction, member: discord.Member) -> None:
        await interaction.response.send_message(f"waves at {member.name}")

    @bot.tree.context_menu(name="Quote")
    async def quote(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(f"> {message.content}", ephemeral=True)

    await start_bot(bot)
    await bot.tree.sync()

    waved = await server.invoke_context_menu(
        world.guild, world.text, world.alice, "Wave at", world.admin
    )
    assert (await waved.wait_response()).content == "waves at boss"
    original = await server.post_message(world.text, world.admin, "wise words")
    quoted = await server.invoke_context_menu(
        world.guild, world.text, world.alice, "Quote", original
    )
    assert (await quoted.wait_response()).content == "> wise words"

    choices = await server.invoke_autocomplete(
        world.guild, world.text, world.alice, "fruit", {"name": "ap"}, focused="name"
    )
    assert [c["value"] for c in choices] == ["apple", "apricot"]

    inter = await server.invoke_slash(world.guild, world.text, world.alice, "panel")
    panel_message = await inter.wait_response()
    with pytest.raises(LookupError):
        await server.click_button(panel_message, world.alice, "missing")
    click = await server.click_button(panel_message, world.alice, "ping")
    updated = await click.wait_response()
    assert updated is panel_message and updated.content == "pong" and updated.components == []

    inter = await server.invoke_slash(world.guild, world.text, world.alice, "panel")
    second_panel = await inter.wait_response()
    opened = await server.click_button(second_panel, world.alice, "tell")
    await opened.wait_ack()
    assert opened.modal is not None and opened.modal["title"] == "Feedback"
    text_id = opened.modal["components"][0]
    custom_id = text_id.get("component", text_id.get("components", [{}])[0])["custom_id"]
    submitted = await server.submit_modal(opened, {custom_id: "great"})
    assert (await submitted.wait_response()).content == "thanks: great"

    with pytest.raises(WaitTimeout):
        await server.wait_for_message(world.text, author=world.alice, timeout=0.1)
