"""Attachments, reply chains and long-answer threads, piece by piece (no Discord)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import discord
import pytest
from aiohttp import web

from hark.chat import replychain
from hark.chat.attachments import (
    AttachmentReader,
    DownloadError,
    HttpFetcher,
    Limits,
    TooLarge,
    classify,
    decode_text,
    embeddable_links,
    fence,
    human_size,
    sniff_image,
)
from hark.chat.history import Entry
from hark.chat.overflow import ThreadOverflowTarget, thread_name
from hark.testing.loopback import LoopbackServer
from hark.text import split_message

PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)


class Attachment:
    def __init__(self, filename, data=b"", content_type=None, *, delay=0.0, fail=None):
        self.filename, self.data, self.content_type = filename, data, content_type
        self.size, self.url = len(data), f"https://cdn.example/{filename}"
        self.delay, self.fail, self.reads = delay, fail, 0

    async def read(self) -> bytes:
        self.reads += 1
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return self.data


def message(*attachments, embeds=()):
    return SimpleNamespace(attachments=list(attachments), embeds=list(embeds))


def embed(url, proxy_url=None, *, image=False):
    media = SimpleNamespace(url=url, proxy_url=proxy_url)
    empty = SimpleNamespace(url=None, proxy_url=None)
    return SimpleNamespace(image=media if image else empty, thumbnail=empty if image else media)


class Fetch:
    """A fetcher serving ``pages`` (url -> (bytes, content type))."""

    def __init__(self, pages=None):
        self.pages, self.calls = dict(pages or {}), []

    async def __call__(self, url, max_bytes, *, partial=False):
        self.calls.append((url, max_bytes, partial))
        if url not in self.pages:
            raise DownloadError("HTTP 404")
        data, kind = self.pages[url]
        if len(data) > max_bytes:
            if not partial:
                raise TooLarge(len(data))
            return data[:max_bytes], kind, True
        return data, kind, False


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("cat.png", "image/png", "image"),
        ("cat.PNG", None, "image"),
        ("x.bmp", "image/bmp", "other-image"),
        ("notes.txt", "text/plain; charset=utf-8", "text"),
        ("main.rs", None, "text"),
        ("app.ts", "video/mp2t", "text"),  # what Discord says for TypeScript
        ("data.json", "application/json; charset=utf-8", "text"),
        ("Makefile", None, "text"),
        ("logo.svg", "image/svg+xml", "text"),
        ("archive.zip", "application/zip", "binary"),
        ("blob", None, "binary"),
    ],
)
def test_classify(name, kind, expected):
    assert classify(name, kind) == expected


def test_small_helpers():
    assert human_size(512) == "512 bytes" and human_size(12_288) == "12 KB"
    assert human_size(3 * 1024 * 1024 + 400_000) == "3.4 MB"
    assert sniff_image(PNG) == "image/png" and sniff_image(b"GIF89a...") == "image/gif"
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image(b"\xff\xd8\xff\xe0") == "image/jpeg" and sniff_image(b"BM") is None
    assert fence("a.py", "x = '```'\n") == "File a.py:\n````py\nx = '```'\n````"
    assert decode_text("né".encode()[:-1], cut=True) == "n"  # half a character dropped
    assert decode_text(b"\xef\xbb\xbfa\r\nb\xff", cut=False) == "a\nb\ufffd"
    assert embeddable_links("see https://a.example/x.png, and <https://b.example/y>") == [
        "https://a.example/x.png"
    ]


async def test_images_text_and_notes_in_order_within_limits():
    fetch = Fetch({"https://proxy/e.png": (PNG, "image/png")})
    reader = AttachmentReader(Limits(max_images=2, max_file_chars=12), fetch)
    first = message(
        Attachment("a.png", PNG, "image/png"),
        Attachment("notes.txt", b"hello world!!", "text/plain"),
        Attachment("data.bin", bytes(2048)),
        embeds=[embed("https://x.example/e.png", "https://proxy/e.png")],
    )
    second = message(Attachment("b.png", PNG), Attachment("more.txt", b"zzz"))
    got = await reader.read([first, second])
    assert [i.name for i in got[0].images] == ["a.png", "e.png"]
    assert got[0].blocks == [
        "File notes.txt:\n```txt\nhello world!\n```\n"
        "[cut: only the first 12 characters of notes.txt are shown]",
        "[file data.bin: 2 KB, not read]",
    ]
    # The second message gets what is left: no image slot, no characters.
    assert got[1].images == []
    assert got[1].blocks == [
        "[image b.png: not shown, over the limit of 2 images per message]",
        "[file more.txt: not read, over the limit of 12 characters of files]",
    ]
    assert fetch.calls == [("https://proxy/e.png", 8 * 1024 * 1024, False)]


async def test_oversized_failed_and_slow_downloads_become_notes():
    slow = Attachment("slow.png", PNG, delay=5)
    broken = Attachment(
        "broken.png", PNG, fail=discord.NotFound(SimpleNamespace(status=404, reason="x"), "gone")
    )
    big = Attachment("big.png", PNG * 1000)
    fetch = Fetch({"https://proxy/html": (b"<html>", "text/html")})
    reader = AttachmentReader(Limits(max_image_mb=0.01), fetch, deadline=0.2)
    (got,) = await reader.read(
        [message(slow, broken, big, embeds=[embed("https://x/page", "https://proxy/html")])]
    )
    assert got.images == []
    assert got.blocks == [
        "[image slow.png: download timed out, not read]",
        "[image broken.png: could not be downloaded]",
        "[image big.png: 47 KB, over the 0.01 MB limit, not shown]",
        "[image page: could not be downloaded]",
    ]
    assert big.reads == 0  # its size was known: never downloaded


async def test_a_long_text_file_is_read_only_as_far_as_it_is_shown():
    long = Attachment("log.txt", b"x" * 1000)
    fetch = Fetch({long.url: (long.data, "text/plain")})
    (got,) = await AttachmentReader(Limits(max_file_chars=10), fetch).read([message(long)])
    assert long.reads == 0 and fetch.calls == [(long.url, 40, True)]
    assert got.blocks[0].startswith("File log.txt:\n```txt\nxxxxxxxxxx\n```\n[cut:")


async def test_nothing_at_zero_limits():
    reader = AttachmentReader(Limits(max_images=0, max_file_chars=0), Fetch())
    (got,) = await reader.read([message(Attachment("a.png", PNG), Attachment("a.txt", b"hi"))])
    assert got.blocks == ["[image a.png: not shown]", "[file a.txt: 2 bytes, not read]"]


class Images(LoopbackServer):
    async def _image(self, request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        if request.query.get("chunked"):
            response = web.StreamResponse(headers={"Content-Type": "image/png"})
            await response.prepare(request)
            for _ in range(size // 1000):
                await response.write(b"x" * 1000)
            return response
        return web.Response(body=b"x" * size, content_type="image/png")

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/img/{size}", self._image)


async def test_http_fetcher_caps_what_it_reads():
    fetch = HttpFetcher(timeout=5)
    async with Images() as server:
        data, kind, cut = await fetch(f"{server.url}/img/100", 1000)
        assert (len(data), kind, cut) == (100, "image/png", False)
        with pytest.raises(TooLarge):  # Content-Length says so: nothing read
            await fetch(f"{server.url}/img/5000", 1000)
        with pytest.raises(TooLarge):  # no length given: stops once past the cap
            await fetch(f"{server.url}/img/50000?chunked=1", 1000)
        data, _, cut = await fetch(f"{server.url}/img/5000", 1000, partial=True)
        assert len(data) == 1000 and cut
        with pytest.raises(DownloadError):
            await fetch(f"{server.url}/nothing", 1000)
        with pytest.raises(DownloadError):
            await fetch("file:///etc/passwd", 1000)
    await fetch.close()


# -- reply chains ------------------------------------------------------------------


def chat_message(id, content="", author=1, reference=None):
    return SimpleNamespace(
        id=id,
        content=content,
        author=SimpleNamespace(id=author, display_name=f"user{author}"),
        channel=SimpleNamespace(id=100),
        reference=reference,
    )


def ref(message_id, resolved=None):
    return SimpleNamespace(
        message_id=message_id,
        channel_id=100,
        resolved=resolved,
        cached_message=None,
        type=discord.MessageReferenceType.reply,
    )


async def test_follow_walks_back_until_a_message_is_gone():
    store = {1: chat_message(1, "root"), 2: chat_message(2, "two", reference=ref(1))}
    three = chat_message(3, "three", reference=ref(2, resolved=store[2]))
    asked = []

    async def lookup(channel_id, message_id):
        asked.append(message_id)
        return store.get(message_id)

    trigger = chat_message(4, "q", reference=ref(3, resolved=three))
    assert [m.id for m in await replychain.follow(trigger, 8, lookup)] == [3, 2, 1]
    assert asked == [1]  # the others came resolved
    assert [m.id for m in await replychain.follow(trigger, 2, lookup)] == [3, 2]
    del store[1]
    assert [m.id for m in await replychain.follow(trigger, 8, lookup)] == [3, 2]
    # A thread's first message joins once the replies run out.
    store[9] = chat_message(9, "starter")
    chain = await replychain.follow(chat_message(5, "q"), 8, lookup, root=(100, 9))
    assert [m.id for m in chain] == [9]


def test_in_history_and_budget_and_prompt():
    entries = [
        Entry("user", "robot, hi", "alice", 1),
        Entry("assistant", "first part\n\nsecond part", "Bot", None),
    ]
    bot_part = chat_message(7, "```py\nsecond part\n```", author=99)
    # A part of a split answer, with the fence lines the split added: still found.
    assert replychain.in_history(bot_part, "", entries, bot_id=99)
    assert replychain.in_history(chat_message(7, "second part", author=99), "", entries, bot_id=99)
    assert replychain.in_history(chat_message(8, "robot, hi"), "robot, hi", entries, bot_id=99)
    assert not replychain.in_history(
        chat_message(8, "robot, hi", 2), "robot, hi", entries, bot_id=99
    )

    links = [
        replychain.Link(chat_message(3, author=99), "newest", attachments="[file a.zip]"),
        replychain.Link(chat_message(2), "middle"),
        replychain.Link(chat_message(1), "oldest"),
    ]
    kept = replychain.within_budget(links, 6)  # 24 characters
    assert [link.content for link in kept] == ["newest\n\n[file a.zip]", "midd [cut]"]
    prompt = replychain.to_prompt(kept, bot_id=99, name_of=lambda a: a.display_name)
    assert [(m.role, m.name, m.content) for m in prompt] == [
        ("user", "user1", "midd [cut]"),
        ("assistant", None, "newest\n\n[file a.zip]"),
    ]


# -- long answers ------------------------------------------------------------------


def test_split_message_with_a_short_first_part():
    text = " ".join(f"w{i:03d}" for i in range(200))
    parts = split_message(text, 2000, first_limit=100)
    assert len(parts[0]) <= 100 and all(len(p) <= 2000 for p in parts[1:])
    assert " ".join(parts).split() == text.split()
    assert thread_name("  \n" + "word " * 40) == ("word " * 16).strip() + "…"
    assert thread_name("") == "Answer"


class Sent:
    def __init__(self, channel, content, id):
        self.channel, self.content, self.id = channel, content, id
        self.thread_calls = []
        self.refuse = False

    async def create_thread(self, **kwargs):
        self.thread_calls.append(kwargs)
        if self.refuse:
            raise discord.Forbidden(SimpleNamespace(status=403, reason="no"), "Missing Permissions")
        return Channel("thread")

    async def edit(self, **kwargs):
        self.content = kwargs["content"]


class Channel:
    def __init__(self, name):
        self.name, self.sent = name, []

    async def send(self, content, **kwargs):
        message = Sent(self, content, len(self.sent) + 1)
        self.sent.append(message)
        if self.name == "general" and len(self.sent) == 1:
            message.refuse = Channel.refuse_threads
        return message

    refuse_threads = False


async def test_the_overflow_target_falls_back_to_the_channel():
    Channel.refuse_threads = True
    channel = Channel("general")
    target = ThreadOverflowTarget(channel, None, after_chars=100, name="q")
    assert target.first_limit == 100
    first = await target.send("start", first=True)
    more = await target.send("more", first=False)
    assert first.thread_calls == [{"name": "q", "auto_archive_duration": 1440}]
    assert more.channel is channel and target.failed and target.first_limit is None
    Channel.refuse_threads = False
    target = ThreadOverflowTarget(Channel("general"), None, after_chars=100, name="q")
    await target.send("start", first=True)
    assert (await target.send("more", first=False)).channel.name == "thread"
