"""A real discord.py bot against the fake Discord: attachments on the loopback CDN,
link embeds, replies, threads and forum posts."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import discord
import pytest
from discord.ext import commands

from hark.testing.discord import FakeDiscord, eventually
from hark.testing.discord.media import guess_content_type, image_size
from hark.testing.discord.permissions import CREATE_PUBLIC_THREADS, SEND_MESSAGES_IN_THREADS

World = Any
StartBot = Callable[..., Awaitable[discord.Client]]
MakeBot = Callable[..., commands.Bot]

pytestmark = pytest.mark.timeout(30)


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    raw = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def recorder(into: list[discord.Message]) -> Callable[[discord.Message], Awaitable[None]]:
    async def on_message(message: discord.Message) -> None:
        into.append(message)

    return on_message


def test_content_types_and_image_sizes() -> None:
    assert guess_content_type("a.png") == "image/png"
    assert guess_content_type("notes.txt", "application/octet-stream") == (
        "text/plain; charset=utf-8"
    )
    assert guess_content_type("x.json") == "application/json; charset=utf-8"
    assert guess_content_type("blob", "application/octet-stream") is None
    assert image_size(png(7, 3)) == (7, 3)
    assert image_size(b"GIF89a\x05\x00\x06\x00") == (5, 6)
    jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x0b\x08\x00\x20\x00\x40\x03\x00"
    assert image_size(jpeg) == (64, 32)
    assert image_size(b"nothing") is None


async def test_attachments_download_with_discord_py(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    got: list[discord.Message] = []
    bot = make_bot()
    bot.add_listener(recorder(got), "on_message")
    await start_bot(bot)
    image = png(4, 2)
    await server.post_message(
        world.text, world.alice, "files", files=[("cat.png", image), ("a.txt", b"hi", "text/x")]
    )
    await eventually(lambda: got)
    cat, text = got[0].attachments
    assert (cat.content_type, cat.width, cat.height, cat.size) == ("image/png", 4, 2, len(image))
    assert cat.proxy_url != cat.url and await cat.read() == image
    assert await cat.read(use_cached=True) == image  # the media proxy's copy
    assert text.content_type == "text/plain; charset=utf-8" and text.width is None
    assert await text.read() == b"hi"


async def test_published_links_are_unfurled_with_a_message_update(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    edits: list[tuple[discord.Message, discord.Message]] = []
    created: list[discord.Message] = []
    bot = make_bot()

    @bot.listen()
    async def on_message(message: discord.Message) -> None:
        created.append(message)

    @bot.listen()
    async def on_message_edit(before: discord.Message, after: discord.Message) -> None:
        edits.append((before, after))

    await start_bot(bot)
    image = png(8, 6)
    server.publish_image("https://pics.example/dog.png", image)
    record = await server.post_message(world.text, world.alice, "look https://pics.example/dog.png")
    await eventually(lambda: edits)
    before, after = edits[0]
    assert created[0].id == record.id and not before.embeds
    (embed,) = after.embeds
    assert embed.type == "image" and embed.url == "https://pics.example/dog.png"
    assert (embed.thumbnail.width, embed.thumbnail.height) == (8, 6)
    assert created[0].embeds  # discord.py updated the cached message in place
    async with bot.http._HTTPClient__session.get(embed.thumbnail.proxy_url) as response:
        assert response.status == 200 and await response.read() == image

    # Not for "<link>", nor with embeds suppressed; 0 s: in the MESSAGE_CREATE already.
    await server.post_message(world.text, world.alice, "<https://pics.example/dog.png>")
    await server.post_message(
        world.text, world.alice, "https://pics.example/dog.png", suppress_embeds=True
    )
    await asyncio.sleep(0.2)
    assert len(edits) == 1
    server.unfurl_delay = 0
    await server.post_message(world.text, world.alice, "now https://pics.example/dog.png")
    await eventually(lambda: len(created) == 4)
    assert created[-1].embeds and len(edits) == 1


async def test_replies_carry_the_referenced_message(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    got: list[discord.Message] = []
    bot = make_bot()
    bot.add_listener(recorder(got), "on_message")
    await start_bot(bot)
    first = await server.post_message(world.text, world.alice, "first")
    await server.post_message(world.text, world.admin, "second", reference=first)
    await eventually(lambda: len(got) == 2)
    reply = got[1]
    assert reply.type == discord.MessageType.reply
    assert reply.reference is not None and reply.reference.message_id == first.id
    assert isinstance(reply.reference.resolved, discord.Message)
    assert reply.reference.resolved.content == "first"
    server._delete_message(first)
    again = await server.post_message(world.text, world.admin, "third", reference=got[1].id)
    await eventually(lambda: len(got) == 3)
    assert got[2].id == again.id


async def test_threads_from_messages_and_without(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    created: list[discord.Thread] = []
    seen: list[discord.Message] = []
    bot = make_bot()

    @bot.listen()
    async def on_thread_create(thread: discord.Thread) -> None:
        created.append(thread)

    @bot.listen()
    async def on_message(message: discord.Message) -> None:
        seen.append(message)

    @bot.command()
    async def thread(ctx: commands.Context) -> None:
        started = await ctx.message.create_thread(name="from a command")
        await started.send("inside")

    await start_bot(bot)
    # A member starts one from a message: THREAD_CREATE, messages in it by the thread's id.
    start = await server.post_message(world.text, world.alice, "topic")
    user_thread = await server.create_thread(world.text, world.alice, "topic talk", message=start)
    assert user_thread.id == start.id and user_thread.parent_id == world.text.id
    await eventually(lambda: created)
    assert created[0].id == user_thread.id and created[0].parent_id == world.text.id
    await server.post_message(user_thread, world.alice, "in the thread")
    await eventually(lambda: any(m.content == "in the thread" for m in seen))
    inside = next(m for m in seen if m.content == "in the thread")
    assert isinstance(inside.channel, discord.Thread) and inside.channel.id == user_thread.id

    # The bot starts one from a message through REST, and posts in it.
    await server.post_message(world.text, world.alice, "!thread")
    posted = await server.wait_for_message(author=server.bot_user)
    (bot_thread,) = [t for t in server.threads(world.text) if t.name == "from a command"]
    assert posted.channel_id == bot_thread.id and posted.content == "inside"
    assert server.bot_user.id in bot_thread.member_ids

    # Without a message: a "thread created" system message in the parent.
    await server.create_thread(world.text, world.alice, "standalone")
    system = server.messages(world.text)[-1]
    assert system.type == 18 and system.content == "standalone"

    # Sending there takes SEND_MESSAGES_IN_THREADS; private threads are for members.
    server.set_overwrite(world.text, world.alice, deny=SEND_MESSAGES_IN_THREADS)
    with pytest.raises(PermissionError):
        await server.post_message(user_thread, world.alice, "no")
    await server.post_message(world.text, world.alice, "still fine in the channel")
    secret = await server.create_thread(world.text, world.admin, "secret", private=True)
    with pytest.raises(PermissionError):
        await server.post_message(secret, world.alice, "let me in")


async def test_the_bot_cannot_start_a_thread_without_the_permission(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    outcome: list[str] = []
    bot = make_bot()

    @bot.command()
    async def thread(ctx: commands.Context) -> None:
        try:
            await ctx.message.create_thread(name="nope")
        except discord.Forbidden as exc:
            outcome.append(f"forbidden {exc.code}")

    server.set_overwrite(world.text, server.bot_member(world.guild), deny=CREATE_PUBLIC_THREADS)
    await start_bot(bot)
    await server.post_message(world.text, world.alice, "!thread")
    await eventually(lambda: outcome)
    assert outcome == ["forbidden 50013"]
    assert not server.threads(world.text)


async def test_forum_posts(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    forum = server.create_forum_channel(world.guild, "help")
    seen: list[discord.Message] = []
    bot = make_bot()
    bot.add_listener(recorder(seen), "on_message")

    @bot.command()
    async def post(ctx: commands.Context) -> None:
        channel = ctx.bot.get_channel(forum.id)
        assert isinstance(channel, discord.ForumChannel)
        made = await channel.create_thread(name="bot post", content="from the bot")
        await made.thread.send("and more")

    await start_bot(bot)
    assert isinstance(bot.get_channel(forum.id), discord.ForumChannel)
    thread, first = await server.create_forum_post(forum, world.alice, "Printer", "it's on fire")
    assert first.id == thread.id and first.channel_id == thread.id
    await eventually(lambda: seen)
    assert isinstance(seen[0].channel, discord.Thread) and seen[0].channel.parent_id == forum.id
    assert seen[0].id == seen[0].channel.id

    await server.post_message(world.text, world.alice, "!post")
    reply = await server.wait_for_message(
        author=server.bot_user, check=lambda m: m.content == "and more"
    )
    (bot_post,) = [t for t in server.threads(forum) if t.name == "bot post"]
    assert reply.channel_id == bot_post.id
    assert server.messages(bot_post)[0].id == bot_post.id


async def test_threads_are_known_after_a_restart(
    server: FakeDiscord, world: World, start_bot: StartBot, make_bot: MakeBot
) -> None:
    thread = await server.create_thread(world.text, world.alice, "old")
    bot = await start_bot(make_bot())
    guild = bot.get_guild(world.guild.id)
    assert guild is not None
    known = guild.get_thread(thread.id)
    assert known is not None and known.parent_id == world.text.id and known.name == "old"
    fetched = await bot.fetch_channel(thread.id)
    assert isinstance(fetched, discord.Thread) and fetched.owner_id == world.alice.id
    active = await guild.active_threads()
    assert [t.id for t in active] == [thread.id]
