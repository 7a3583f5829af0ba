"""A real discord.py bot against the fake Discord: world, messages, files, mentions, DMs."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord
import pytest
from discord.ext import commands

from hark.testing.discord import ADMINISTRATOR, VIEW_CHANNEL, FakeDiscord, eventually

# Fixture types (defined in conftest.py, which test modules cannot import).
World = Any
StartBot = Callable[..., Awaitable[discord.Client]]
MakeBot = Callable[..., commands.Bot]


pytestmark = pytest.mark.timeout(30)


async def test_bot_sees_guild_channels_members_and_permissions(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    root = server.create_member(world.guild, "root", permissions=ADMINISTRATOR)
    other_bot = server.create_member(world.guild, "otherbot", bot=True)
    bot = await start_bot(make_bot())

    assert bot.user is not None and bot.user.id == server.bot_user.id
    assert bot.application_id == server.application_id
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.name == "Test Server"
    assert guild.chunked and guild.owner_id == server.owner.id
    assert {c.name for c in guild.text_channels} == {"general"}
    assert [c.name for c in guild.voice_channels] == ["Lounge"]

    admin = guild.get_member(world.admin.id)
    alice = guild.get_member(world.alice.id)
    assert admin is not None and alice is not None
    assert admin.guild_permissions.manage_guild
    assert not alice.guild_permissions.manage_guild
    assert alice.guild_permissions.send_messages
    assert guild.get_member(root.id).guild_permissions.administrator  # type: ignore[union-attr]
    assert guild.get_member(server.owner.id).guild_permissions.administrator  # type: ignore[union-attr]
    assert guild.get_member(other_bot.id).bot  # type: ignore[union-attr]
    assert guild.me.guild_permissions.send_messages
    text = guild.get_channel(world.text.id)
    assert isinstance(text, discord.TextChannel)
    assert text.permissions_for(guild.me).read_message_history

    app = await bot.application_info()
    assert app.owner.id == server.owner.id

    # Things created after READY arrive as gateway events.
    joined = asyncio.create_task(bot.wait_for("member_join", timeout=5))
    await asyncio.sleep(0)
    carol = server.create_member(world.guild, "carol")
    member = await joined
    assert member.id == carol.id and guild.get_member(carol.id) is not None
    created = server.create_text_channel(world.guild, "later")
    await eventually(lambda: guild.get_channel(created.id) is not None)
    new_guild = server.create_guild("Second")
    await eventually(lambda: bot.get_guild(new_guild.id) is not None)


async def test_prefix_command_reply_and_own_message_create(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()
    seen_own: list[discord.Message] = []

    @bot.command()
    async def echo(ctx: commands.Context, *, text: str) -> None:
        await ctx.reply(text)

    @bot.listen()
    async def on_message(message: discord.Message) -> None:
        if message.author.id == server.bot_user.id:
            seen_own.append(message)

    await start_bot(bot)
    sent = await server.post_message(world.text, world.alice, "!echo hi there")
    reply = await server.wait_for_message(world.text, author=server.bot_user)
    assert reply.content == "hi there"
    assert reply.reference_id == sent.id
    # ctx.reply() without allowed_mentions pings the replied-to author, like Discord.
    assert reply.mention_ids == [world.alice.id]
    assert [m.content for m in server.messages(world.text)] == ["!echo hi there", "hi there"]
    await eventually(lambda: seen_own)
    assert [m.id for m in seen_own] == [reply.id]  # Discord echoes the bot's own messages
    assert ("POST", f"/api/v10/channels/{world.text.id}/messages", 200) in server.requests


async def test_edit_file_upload_and_history(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()
    payload = bytes(range(256)) * 40

    @bot.command()
    async def count(ctx: commands.Context) -> None:
        message = await ctx.send("3")
        await message.edit(content="2")
        await message.edit(content="done", embed=discord.Embed(title="ok"))

    @bot.command()
    async def upload(ctx: commands.Context) -> None:
        await ctx.send("here", file=discord.File(io.BytesIO(payload), "blob.bin"))

    @bot.command()
    async def history(ctx: commands.Context) -> None:
        seen = [m.content async for m in ctx.channel.history(limit=10)]
        await ctx.send("|".join(seen))

    await start_bot(bot)
    await server.post_message(world.text, world.alice, "!count")
    first = await server.wait_for_message(world.text, author=server.bot_user)
    edited = await server.wait_for_edit(first, check=lambda m: m.content == "done")
    assert edited.edits == ["3", "2"]
    assert edited.embeds[0]["title"] == "ok"

    await server.post_message(world.text, world.alice, "!upload")
    sent = await server.wait_for_message(world.text, author=server.bot_user)
    (attachment,) = sent.attachments
    assert attachment.filename == "blob.bin" and attachment.data == payload
    async with aiohttp.ClientSession() as http, http.get(attachment.url) as response:
        assert await response.read() == payload

    await server.post_message(world.text, world.alice, "!history")
    listing = await server.wait_for_message(world.text, author=server.bot_user)
    assert listing.content.split("|")[:3] == ["!history", "here", "!upload"]


async def test_allowed_mentions_are_honoured(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()
    target = world.alice.id

    @bot.command()
    async def quiet(ctx: commands.Context) -> None:
        await ctx.send(f"@everyone <@{target}>", allowed_mentions=discord.AllowedMentions.none())

    @bot.command()
    async def loud(ctx: commands.Context) -> None:
        await ctx.send(f"@everyone <@{target}>")

    await start_bot(bot)
    await server.post_message(world.text, world.admin, "!quiet")
    silent = await server.wait_for_message(world.text, author=server.bot_user)
    assert silent.mentions == [] and not silent.mention_everyone
    assert silent.allowed_mentions == {"parse": []}  # exactly what discord.py sent

    await server.post_message(world.text, world.admin, "!loud")
    pinged = await server.wait_for_message(world.text, author=server.bot_user)
    assert pinged.mention_ids == [target] and pinged.mention_everyone
    assert pinged.allowed_mentions is None

    # A plain member cannot ping @everyone, whatever the message says.
    plain = await server.post_message(world.text, world.alice, "@everyone look")
    assert not plain.mention_everyone


async def test_direct_messages_both_ways(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()

    @bot.command()
    async def echo(ctx: commands.Context, *, text: str) -> None:
        await ctx.send(f"dm:{text}:{ctx.guild is None}")

    @bot.command()
    async def dmme(ctx: commands.Context) -> None:
        await ctx.author.send("psst")

    await start_bot(bot)
    dm = server.create_dm(world.alice.user)
    assert server.create_dm(world.alice) is dm
    await server.post_message(dm, world.alice, "!echo yo")
    reply = await server.wait_for_message(dm, author=server.bot_user)
    assert reply.content == "dm:yo:True" and reply.guild_id is None

    await server.post_message(world.text, world.alice, "!dmme")
    private = await server.wait_for_message(dm, author=server.bot_user)
    assert private.content == "psst"


async def test_rest_errors_match_discord(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    hidden = server.create_text_channel(world.guild, "staff")
    server.set_overwrite(hidden, server.bot_member(world.guild), deny=VIEW_CHANNEL)
    bot = await start_bot(make_bot())
    text = bot.get_channel(world.text.id)
    assert isinstance(text, discord.TextChannel)

    with pytest.raises(discord.HTTPException) as too_long:
        await text.send("x" * 2001)
    assert too_long.value.status == 400 and too_long.value.code == 50035
    assert "content" in str(too_long.value)

    with pytest.raises(discord.NotFound) as unknown:
        await bot.http.send_message(hidden.id, params=_params("hi"))
    assert unknown.value.code == 10003
    with pytest.raises(discord.NotFound):
        await bot.http.send_message(424242424242, params=_params("hi"))

    with pytest.raises(discord.HTTPException) as empty:
        await text.send("   ")
    assert empty.value.code == 50006
    assert server.messages(world.text) == []


async def test_injected_429_is_retried(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = await start_bot(make_bot())
    text = bot.get_channel(world.text.id)
    assert isinstance(text, discord.TextChannel)
    server.fail_next("POST", r"/channels/\d+/messages$", 429, retry_after=0.2)
    message = await text.send("after the rate limit")
    assert message.content == "after the rate limit"
    statuses = [r.status for r in server.requests if r.method == "POST"]
    assert statuses[-2:] == [429, 200]
    assert [m.content for m in server.messages(world.text)] == ["after the rate limit"]


async def test_message_content_intent_is_enforced(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    intents = discord.Intents.default()  # no message_content
    bot = make_bot(intents=intents)
    seen: list[str] = []

    @bot.listen()
    async def on_message(message: discord.Message) -> None:
        seen.append(message.content)

    await start_bot(bot)
    await server.post_message(world.text, world.alice, "secret")
    await server.post_message(world.text, world.alice, f"hey {server.bot_user.mention}")
    await eventually(lambda: len(seen) == 2)
    assert seen == ["", f"hey {server.bot_user.mention}"]


async def test_voice_state_update_from_the_bot(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = await start_bot(make_bot())
    guild = bot.get_guild(world.guild.id)
    assert guild is not None
    server.set_voice_state(world.alice, world.voice)
    await guild.change_voice_state(channel=guild.get_channel(world.voice.id))  # type: ignore[arg-type]
    await eventually(lambda: guild.me.voice is not None)
    state = server.voice_state(world.guild, server.bot_user)
    assert state is not None and state.channel_id == world.voice.id
    assert state.session_id == server.sessions[0].session_id
    assert guild.me.voice is not None and guild.me.voice.channel.id == world.voice.id  # type: ignore[union-attr]
    alice = guild.get_member(world.alice.id)
    assert alice is not None and alice.voice is not None
    await guild.change_voice_state(channel=None)
    await eventually(lambda: guild.me.voice is None)
    assert server.voice_state(world.guild, server.bot_user) is None


def _params(content: str) -> object:
    from discord.http import handle_message_parameters

    return handle_message_parameters(content=content)


async def test_typing_reactions_presence_and_deletes(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    bot = make_bot()

    @bot.command()
    async def think(ctx: commands.Context) -> None:
        async with ctx.typing():
            pass
        reply = await ctx.send("thought")
        await reply.add_reaction("👍")
        await ctx.message.add_reaction("<:party:123456789012345678>")
        await ctx.message.delete()

    await start_bot(bot)
    await bot.change_presence(activity=discord.Game("tests"))
    command = await server.post_message(world.text, world.alice, "!think")
    reply = await server.wait_for_message(world.text, author=server.bot_user)
    await server.wait_for_delete(command)
    assert [t.channel_id for t in server.typing_events] == [world.text.id]
    assert reply.reactions == {"👍": [server.bot_user.id]}
    assert command.reactions == {"party:123456789012345678": [server.bot_user.id]}
    assert command.deleted and server.messages(world.text)[0] is command
    presence = server.sessions[0].presence
    assert presence is not None and presence["activities"][0]["name"] == "tests"

    reacted = asyncio.create_task(bot.wait_for("reaction_add", timeout=5))
    await asyncio.sleep(0)
    await server.add_reaction(reply, world.alice, "🎉")
    reaction, user = await reacted
    assert str(reaction.emoji) == "🎉" and user.id == world.alice.id
