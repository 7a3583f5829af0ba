"""End to end: what a message carries (images, files, link embeds), the reply chain
it belongs to, threads and forum posts, and long answers that continue in a thread.

The real discord.py client talks to the loopback Discord, which serves attachments
on its own CDN route, unfurls published image links with a MESSAGE_UPDATE, and has
threads; the generator is a recording fake.
"""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from hark.providers import ImagePart
from hark.testing.discord.permissions import CREATE_PUBLIC_THREADS
from hark.testing.fakes import EchoGenerator, FakeGenerator, fake_plugin
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


def png(width: int = 2, height: int = 2, *, noise: int = 0) -> bytes:
    """A real PNG (``noise`` bytes of incompressible data make it bigger)."""
    raw = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    extra = chunk(b"tEXt", b"c\x00" + bytes(range(256)) * (noise // 256 + 1)) if noise else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + extra
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def start(tmp_path, generator, **config) -> BotHarness:
    h = BotHarness(
        tmp_path, plugins={"fake_llm": fake_plugin(generator)}, config={**CHAT, **config}
    )
    h.generator = generator
    await h.start()
    return h


@pytest.fixture
async def vision(tmp_path):
    h = await start(tmp_path, EchoGenerator(supports_vision=True))
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
async def blind(tmp_path):
    h = await start(tmp_path, EchoGenerator())
    try:
        yield h
    finally:
        await h.close()


async def configure(h: BotHarness, key: str, value: str) -> None:
    reply = await h.ask(f"!config chat {key} {value}", author=h.admin)
    assert key in reply.content, reply.content


def last_user(h: BotHarness):
    return h.generator.requests[-1].messages[-1]


def answer_parts(h: BotHarness, channel, after) -> list:
    """The bot's messages in ``channel`` after the message ``after``."""
    return [
        m
        for m in h.server.messages(channel)
        if m.author.id == h.server.bot_user.id and m.id > after.id
    ]


# -- attachments ---------------------------------------------------------------


async def test_an_image_attachment_reaches_a_vision_model(vision: BotHarness):
    image = png(3, 2)
    await vision.final(await vision.ask("robot, what is this?", files=[("cat.png", image)]))
    sent = last_user(vision)
    assert sent.images == (ImagePart(image, "image/png", "cat.png"),)
    assert sent.content.endswith("robot, what is this?")
    # History keeps the words, never the image.
    entries = await vision.history(2, exact=True)
    assert entries[0].content == "robot, what is this?"


async def test_a_model_without_vision_gets_a_note(blind: BotHarness):
    await blind.final(await blind.ask("robot, look", files=[("cat.png", png())]))
    sent = last_user(blind)
    assert sent.images == ()
    assert "[image not shown: cat.png]" in sent.content


async def test_an_image_and_a_mention_without_words_is_answered(vision: BotHarness):
    me = vision.server.bot_user
    await vision.final(await vision.ask(f"<@{me.id}>", files=[("a.png", png())]))
    assert len(last_user(vision).images) == 1
    # A DM with only an image: no words at all, still answered.
    dm = vision.server.create_dm(vision.member.user)
    await vision.final(await vision.ask("", channel=dm, files=[("b.png", png())]))
    sent = last_user(vision)
    assert [i.name for i in sent.images] == ["b.png"] and "[b.png]" in sent.content


async def test_a_text_file_is_included_and_a_binary_one_only_named(blind: BotHarness):
    files = [
        ("notes.md", b"# Plan\nship it ```now```\n"),
        ("data.zip", b"PK\x03\x04" + bytes(12_284)),
    ]
    await blind.final(await blind.ask("robot, read these", files=files))
    content = last_user(blind).content
    assert "File notes.md:\n````md\n# Plan\nship it ```now```\n````" in content
    assert "[file data.zip: 12 KB, not read]" in content
    entries = await blind.history(2, exact=True)
    assert entries[0].content == "robot, read these"  # the file is not in history


async def test_slash_ask_reads_its_file_option(vision: BotHarness):
    image = png(2, 2)
    inter = await vision.server.invoke_slash(
        vision.guild,
        vision.channel,
        vision.member,
        "ask",
        options={"question": "what is this?", "file": ("dog.png", image)},
    )
    await vision.final(await inter.wait_response())
    sent = last_user(vision)
    assert sent.images == (ImagePart(image, "image/png", "dog.png"),)
    assert sent.content == "what is this?"
    inter = await vision.server.invoke_slash(
        vision.guild,
        vision.channel,
        vision.member,
        "ask",
        options={"question": "summarise", "file": ("log.txt", b"disk full at 03:00")},
    )
    await vision.final(await inter.wait_response())
    assert "disk full at 03:00" in last_user(vision).content


async def test_caps_on_images_and_text_give_notes(vision: BotHarness):
    await configure(vision, "max_images", "1")
    await configure(vision, "max_file_chars", "10")
    files = [
        ("one.png", png()),
        ("two.png", png()),
        ("long.txt", b"abcdefghijKLMNOP"),
        ("more.txt", b"never read"),
    ]
    await vision.final(await vision.ask("robot, all of it", files=files))
    sent = last_user(vision)
    assert [i.name for i in sent.images] == ["one.png"]
    assert "[image two.png: not shown, over the limit of 1 images per message]" in sent.content
    assert "abcdefghij\n```" in sent.content and "KLMNOP" not in sent.content
    assert "[cut: only the first 10 characters of long.txt are shown]" in sent.content
    assert "[file more.txt: not read, over the limit of 10 characters of files]" in sent.content

    await configure(vision, "max_image_mb", "0.001")  # 1 KB
    await vision.final(await vision.ask("robot, big one", files=[("big.png", png(noise=4000))]))
    sent = last_user(vision)
    assert sent.images == ()
    assert "[image big.png: 4 KB, over the 0.001 MB limit, not shown]" in sent.content


async def test_unsupported_images_and_failed_downloads_are_notes(vision: BotHarness):
    files = [("pic.bmp", b"BM" + bytes(100)), ("fake.png", b"not really a png")]
    await vision.final(await vision.ask("robot, these?", files=files))
    content = last_user(vision).content
    assert "[image pic.bmp: image/bmp is not supported (PNG, JPEG, WebP, GIF), not shown]" in (
        content
    )
    assert "[image fake.png: not a PNG, JPEG, WebP or GIF image, not shown]" in content

    record = await vision.say("robot, and this", files=[("gone.png", png())])
    # The CDN loses the file before the bot downloads it: a note, and still an answer.
    del vision.server._attachments[record.attachments[0].id]
    reply = await vision.next_reply()
    await vision.final(reply)
    assert "[image gone.png: could not be downloaded]" in last_user(vision).content


async def test_an_image_link_discord_embeds_reaches_the_model(vision: BotHarness):
    image = png(4, 4)
    published = vision.server.publish_image("https://images.example/cats/tabby.png", image)
    await vision.final(await vision.ask("robot, see https://images.example/cats/tabby.png"))
    sent = last_user(vision)
    assert sent.images == (ImagePart(image, "image/png", "tabby.png"),)
    # It came through the media proxy's copy (the link itself is not reachable).
    assert any(p.startswith(f"/external/{published.key}/") for p in vision.server.cdn_requests)
    # "<url>" is not embedded by Discord: nothing to wait for, nothing shown.
    await vision.final(await vision.ask("robot, not <https://images.example/cats/tabby.png>"))
    assert last_user(vision).images == ()


async def test_a_page_embed_image_is_shown_too(vision: BotHarness):
    thumb = vision.server.publish_image("https://news.example/t.png", png(5, 5))
    vision.server.publish_page("https://news.example/story", title="Story", image=thumb)
    await vision.final(await vision.ask("robot, summary of https://news.example/story please"))
    assert [i.name for i in last_user(vision).images] == ["t.png"]


# -- reply chains ------------------------------------------------------------------


async def test_a_reply_chain_is_in_the_prompt(vision: BotHarness):
    h = vision
    first = await h.say("the secret word is plum", author=h.admin, files=[("p.png", png())])
    second = await h.say("and the colour is green", reference=first)
    await h.final(await h.ask("robot, what did they say?", author=h.admin, reference=second))
    messages = h.generator.requests[-1].messages
    chain = [(m.role, m.name, m.content) for m in messages[-3:-1]]
    assert chain == [
        ("user", "boss", "the secret word is plum"),
        ("user", "alice", "and the colour is green"),
    ]
    assert [i.name for i in messages[-3].images] == ["p.png"]  # the chain's image


async def test_the_chain_is_bounded_and_ends_at_a_deleted_message(blind: BotHarness):
    h = blind
    await configure(h, "reply_chain_depth", "2")
    a = await h.say("one")
    b = await h.say("two", reference=a)
    c = await h.say("three", reference=b)
    await h.final(await h.ask("robot, go", reference=c))
    contents = [m.content for m in h.generator.requests[-1].messages]
    assert "two" in contents and "three" in contents and "one" not in contents

    await configure(h, "reply_chain_depth", "8")
    h.server._delete_message(b)
    await h.final(await h.ask("robot, again", reference=c))
    contents = [m.content for m in h.generator.requests[-1].messages]
    assert "three" in contents and "two" not in contents and "one" not in contents

    await configure(h, "reply_chain_tokens", "2")  # 8 characters
    long = await h.say("a message far longer than eight characters")
    await h.final(await h.ask("robot, cut", reference=long))
    assert h.generator.requests[-1].messages[-2].content == "a messag [cut]"


async def test_a_reply_to_the_bot_works_and_is_not_repeated(blind: BotHarness):
    h = blind
    answer = await h.ask("robot, hello there")
    await h.final(answer)
    await h.history(2, exact=True)
    follow = await h.ask("and then?", reference=answer)
    assert await h.final(follow) == "and then?"
    contents = [m.content for m in h.generator.requests[-1].messages]
    # The answer and its question are in the history window: not again as a chain.
    assert contents.count("robot, hello there") == 2  # the question, the echoed answer

    # Out of the history window (cleared), the chain brings them back.
    h.bot.runtime.history._pending.clear()
    await h.bot.runtime.history.clear(h.channel.id)
    await h.final(await h.ask("more?", reference=answer))
    roles = [(m.role, m.content) for m in h.generator.requests[-1].messages[1:]]
    assert roles == [
        ("user", "robot, hello there"),
        ("assistant", "robot, hello there"),
        ("user", "more?"),
    ]


# -- threads --------------------------------------------------------------------


async def test_a_thread_has_its_own_history(blind: BotHarness):
    h = blind
    await h.final(await h.ask("robot, in the channel"))
    start = await h.say("let's talk about boats")
    thread = await h.server.create_thread(h.channel, h.member, "boats", message=start)
    reply = await h.ask("robot, in the thread", channel=thread)
    assert reply.channel_id == thread.id
    await h.final(reply)
    sent = [m.content for m in h.generator.requests[-1].messages]
    assert "robot, in the channel" not in sent
    # The message the thread grew from is its context.
    assert "let's talk about boats" in sent
    await h.history(2, channel=thread, exact=True)
    assert await h.bot.runtime.history.count(h.channel.id) == 2
    await h.final(await h.ask("robot, channel again"))
    sent = [m.content for m in h.generator.requests[-1].messages]
    assert "robot, in the thread" not in sent and "robot, in the channel" in sent


async def test_ask_in_a_thread_answers_there(blind: BotHarness):
    h = blind
    thread = await h.server.create_thread(h.channel, h.member, "questions")
    reply = await h.ask("!ask what is up?", channel=thread)
    assert reply.channel_id == thread.id and await h.final(reply) == "what is up?"
    # The "thread created" system message in #general, naming the thread, is no trigger.
    await h.server.create_thread(h.channel, h.member, "robot talk")
    await h.expect_silence(within=0.5)


async def test_a_forum_post_is_a_conversation(blind: BotHarness):
    h = blind
    forum = h.server.create_forum_channel(h.guild, "help")
    await asyncio.sleep(0.1)
    waiter = asyncio.create_task(h.server.wait_for_message(author=h.server.bot_user))
    await asyncio.sleep(0)
    post, first = await h.server.create_forum_post(
        forum, h.member, "Printer", "robot, it's on fire"
    )
    reply = await waiter
    assert reply.channel_id == post.id and first.id == post.id
    assert await h.final(reply) == "robot, it's on fire"
    second = await h.ask("robot, still burning", channel=post)
    await h.final(second)
    sent = [m.content for m in h.generator.requests[-1].messages]
    assert sent.count("robot, it's on fire") == 2  # history: question and echo
    await h.history(4, channel=post, exact=True)


async def test_a_long_answer_continues_in_a_thread(tmp_path):
    text = " ".join(f"word{i:03d}" for i in range(120))  # 959 characters
    h = await start(tmp_path, FakeGenerator(text, chunk_size=50))
    try:
        await configure(h, "thread_after_chars", "200")
        question = await h.say("robot, tell me everything")
        first = await h.next_reply()
        async with asyncio.timeout(10):
            while not h.server.threads(h.channel):
                await asyncio.sleep(0.02)
        (thread,) = h.server.threads(h.channel)
        assert thread.id == first.id and thread.name == "robot, tell me everything"
        assert first.reference_id == question.id
        async with asyncio.timeout(10):
            while True:
                parts = [
                    m for m in h.server.messages(thread) if m.author.id == h.server.bot_user.id
                ]
                if parts and "word119" in parts[-1].content and not parts[-1].content.endswith("…"):
                    break
                await asyncio.sleep(0.05)
        assert len(first.content) <= 200 and first.content.startswith("word000")
        joined = " ".join([first.content] + [p.content for p in parts])
        assert joined.split() == text.split()
        entries = await h.history(2, exact=True)
        assert entries[1].content == text  # recorded once, whole
        assert await h.bot.runtime.history.count(thread.id) == 0
    finally:
        await h.close()


async def test_without_thread_permission_the_answer_stays_in_the_channel(tmp_path):
    text = " ".join(f"word{i:03d}" for i in range(120))
    h = await start(tmp_path, FakeGenerator(text, chunk_size=50))
    try:
        await configure(h, "thread_after_chars", "200")
        h.server.set_overwrite(h.channel, h.server.bot_member(h.guild), deny=CREATE_PUBLIC_THREADS)
        await asyncio.sleep(0.1)
        question = await h.say("robot, tell me everything")
        async with asyncio.timeout(10):
            while True:
                parts = [
                    m for m in h.server.messages(h.channel) if m.author.id == h.server.bot_user.id
                ]
                if parts and "word119" in parts[-1].content and not parts[-1].content.endswith("…"):
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        parts = answer_parts(h, h.channel, question)
        assert not h.server.threads(h.channel)
        assert " ".join(p.content for p in parts).split() == text.split()
        assert len(parts) == 1  # as today: one message holds it
        await h.history(2, exact=True)
    finally:
        await h.close()
