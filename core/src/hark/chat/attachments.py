"""What a message carries besides its text: images, text files, other files.

:class:`AttachmentReader` turns messages (the triggering one, then its reply chain)
into what the prompt gets: images for a vision model (attachments, and the images
of embeds Discord made for image links) and text (included text files as fenced
blocks, short notes on what was not read). The budgets (:class:`Limits`, from the
server's ``!config chat``) are shared by all the messages, in the order given, so
the triggering message comes first.

Downloads run concurrently under one deadline; a failure never fails the turn, it
becomes a note ("[image cat.png: could not be downloaded]").
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import posixpath
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aiohttp

from hark.providers import ImagePart

log = logging.getLogger(__name__)

#: Seconds all the downloads of one turn may take together.
DOWNLOAD_DEADLINE = 10.0
#: Downloads running at once.
CONCURRENT_DOWNLOADS = 6

# Image formats every vision API takes, by their magic bytes.
SUPPORTED_IMAGES = {"image/png", "image/jpeg", "image/webp", "image/gif"}
_IMAGE_EXTENSIONS = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
}
TEXT_EXTENSIONS = frozenset(
    """
    .txt .text .md .markdown .rst .adoc .org .tex .log .out .csv .tsv .json .jsonl .ndjson
    .yaml .yml .toml .ini .cfg .conf .env .properties .xml .html .htm .css .scss .sass .less
    .svg .sh .bash .zsh .fish .ps1 .bat .cmd .py .pyi .ipynb .js .mjs .cjs .jsx .ts .tsx
    .vue .svelte .c .h .cc .cpp .cxx .hpp .hh .cs .java .kt .kts .scala .groovy .gradle .go
    .rs .rb .php .pl .pm .lua .r .jl .swift .m .mm .dart .ex .exs .erl .hrl .hs .ml .mli .fs
    .fsx .clj .cljs .elm .zig .nim .v .sv .vhd .sql .graphql .gql .proto .tf .hcl .nix
    .dockerfile .mk .cmake .diff .patch .srt .vtt .lisp .el .vim
    """.split()  # noqa: SIM905 (a list of words reads better)
)
# Files without an extension that are text.
TEXT_NAMES = frozenset(
    """
    makefile dockerfile readme license licence changelog authors notice gemfile rakefile
    procfile vagrantfile justfile
    """.split()  # noqa: SIM905 (a list of words reads better)
)
# Non-text/* content types whose body is text.
TEXT_TYPES = frozenset(
    """
    application/json application/ld+json application/xml application/javascript
    application/x-javascript application/ecmascript application/typescript
    application/x-typescript application/x-yaml application/yaml application/toml
    application/x-toml application/x-sh application/x-shellscript application/sql
    application/graphql application/x-python application/x-python-code
    application/x-httpd-php application/x-tex application/x-latex application/x-ndjson
    application/xhtml+xml image/svg+xml application/x-subrip
    """.split()  # noqa: SIM905 (a list of words reads better)
)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one turn may take in (a server's ``!config chat`` values)."""

    max_images: int = 4
    max_image_mb: float = 8.0
    max_file_chars: int = 20_000

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)

    @property
    def image_limit(self) -> str:
        """The size limit as it was set: ``8 MB``, ``0.5 MB``."""
        return f"{self.max_image_mb:g} MB"

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """From a :class:`hark.chat.settings.ChatSettings`."""
        return cls(
            max_images=int(settings.max_images),
            max_image_mb=float(settings.max_image_mb),
            max_file_chars=int(settings.max_file_chars),
        )


@dataclass(slots=True)
class Collected:
    """What one message brings into the prompt besides its text."""

    images: list[ImagePart] = field(default_factory=list)
    # Included files and notes, in the order of the message's attachments.
    blocks: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(self.blocks)


class DownloadError(Exception):
    """A download that failed; the message is the note's reason ("could not be downloaded")."""


class TooLarge(DownloadError):
    def __init__(self, size: int | None) -> None:
        super().__init__("too large")
        self.size = size


class Fetcher(Protocol):
    """Downloads a URL, reading at most ``max_bytes`` (``partial``: the first
    ``max_bytes`` of a longer body instead of :class:`TooLarge`). Returns the bytes,
    the response's content type, and whether the body was cut."""

    async def __call__(
        self, url: str, max_bytes: int, *, partial: bool = False
    ) -> tuple[bytes, str | None, bool]: ...


# -- sizes, names, types ----------------------------------------------------------


def human_size(size: int) -> str:
    """``512 bytes``, ``12 KB``, ``3.4 MB``."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{round(size / 1024)} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def sniff_image(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, WebP or GIF by its first bytes, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def name_from_url(url: str) -> str:
    """The last path segment of ``url`` (``cat.png``), or its host."""
    parts = urlsplit(url)
    name = unquote(posixpath.basename(parts.path.rstrip("/")))
    return name or parts.hostname or "image"


# A link Discord embeds; "<https://...>" is shown without one.
_LINK = re.compile(r"<?https?://[^\s<>]+>?")


def embeddable_links(content: str) -> list[str]:
    """The links in ``content`` Discord makes embeds for (not those written ``<url>``)."""
    return [
        m.group(0).rstrip(".,;:!?)")
        for m in _LINK.finditer(content or "")
        if not (m.group(0).startswith("<") and m.group(0).endswith(">"))
    ]


def _extension(filename: str) -> str:
    base = filename.rsplit("/", 1)[-1].lower()
    dot = base.rfind(".")
    return base[dot:] if dot > 0 else ""


def classify(filename: str, content_type: str | None) -> str:
    """``"image"`` (a supported format), ``"other-image"``, ``"text"`` or ``"binary"``."""
    base = _base_type(content_type)
    ext = _extension(filename)
    if base in TEXT_TYPES or ext == ".svg":
        return "text"
    if base.startswith("image/") or ext in _IMAGE_EXTENSIONS:
        kind = base if base.startswith("image/") else _IMAGE_EXTENSIONS[ext]
        return "image" if kind in SUPPORTED_IMAGES else "other-image"
    if base.startswith("text/") or ext in TEXT_EXTENSIONS:
        return "text"
    if not ext and filename.lower() in TEXT_NAMES:
        return "text"
    return "binary"


def fence(name: str, text: str) -> str:
    """``text`` as a fenced block headed by the file name; the fence is longer than
    any run of backticks inside, so the file cannot close it."""
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    language = _extension(name).lstrip(".")
    return f"File {name}:\n{ticks}{language}\n{text.rstrip()}\n{ticks}"


def decode_text(data: bytes, *, cut: bool) -> str:
    """UTF-8 with replacement characters; a body ``cut`` short drops its last,
    incomplete character instead of showing it as garbage."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data, final=not cut)
    return text.replace("\r\n", "\n")


# -- downloading ------------------------------------------------------------------


class HttpFetcher:
    """Size-capped downloads of embed image URLs (http and https only), on an aiohttp
    session of its own, created on first use. ``close()`` when done."""

    def __init__(
        self,
        *,
        timeout: float = DOWNLOAD_DEADLINE,
        proxy: str | None = None,
        proxy_auth: aiohttp.BasicAuth | None = None,
    ) -> None:
        self.timeout = timeout
        self.proxy = proxy
        self.proxy_auth = proxy_auth
        self._session: aiohttp.ClientSession | None = None

    async def __call__(
        self, url: str, max_bytes: int, *, partial: bool = False
    ) -> tuple[bytes, str | None, bool]:
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise DownloadError("not an http(s) link")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(
                url, proxy=self.proxy, proxy_auth=self.proxy_auth, allow_redirects=True
            ) as response:
                if response.status != 200:
                    raise DownloadError(f"HTTP {response.status}")
                declared = response.content_length
                if declared is not None and declared > max_bytes and not partial:
                    raise TooLarge(declared)
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > max_bytes:
                        if partial:
                            return bytes(data[:max_bytes]), response.content_type, True
                        raise TooLarge(declared)
                return bytes(data), response.content_type, False
        except (aiohttp.ClientError, ValueError) as exc:
            raise DownloadError("could not be downloaded") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# -- planning and reading ---------------------------------------------------------


@dataclass(slots=True)
class _TextFile:
    name: str
    text: str
    cut: bool  # the download stopped before the end

    def render(self, chars_left: int, limit: int) -> tuple[str, int]:
        """The file's block within ``chars_left``; returns it and what is left."""
        if chars_left <= 0:
            return _over_text_limit(self.name, limit), 0
        text = self.text
        if len(text) <= chars_left and not self.cut:
            return fence(self.name, text), chars_left - len(text)
        shown = text[:chars_left]
        return (
            fence(self.name, shown) + f"\n[cut: only the first {len(shown)} characters "
            f"of {self.name} are shown]",
            chars_left - len(shown),
        )


@dataclass(slots=True)
class _Item:
    """One thing to read: an attachment or an embed's image."""

    message_index: int
    position: int  # order within its message
    name: str
    kind: str  # "image", "text"
    run: Callable[[], Awaitable[bytes | tuple[bytes, bool]]]
    url: str = ""
    size: int | None = None
    byte_cap: int = 0
    result: str | ImagePart | _TextFile | None = None  # a note, an image, a file


def _embed_image_urls(embed: Any) -> list[tuple[str, str]]:
    """(download URL, original URL) of an embed's image, else its thumbnail: the
    media proxy's copy first (Discord's CDN), the link itself otherwise."""
    for proxy in (getattr(embed, "image", None), getattr(embed, "thumbnail", None)):
        if proxy is None:
            continue
        url = getattr(proxy, "url", None)
        proxied = getattr(proxy, "proxy_url", None)
        if url or proxied:
            return [(proxied or url, url or proxied)]
    return []


class AttachmentReader:
    """Reads the attachments and embed images of messages within shared limits."""

    def __init__(
        self,
        limits: Limits,
        fetch: Fetcher,
        *,
        deadline: float = DOWNLOAD_DEADLINE,
        concurrency: int = CONCURRENT_DOWNLOADS,
    ) -> None:
        self.limits = limits
        self.fetch = fetch
        self.deadline = deadline
        self._gate = asyncio.Semaphore(concurrency)

    async def read(self, messages: Sequence[Any]) -> list[Collected]:
        """One :class:`Collected` per message, in the same order (which is also the
        order in which the image and text budgets are spent)."""
        collected = [Collected() for _ in messages]
        items: list[_Item] = []
        notes: dict[tuple[int, int], str] = {}
        images_left = self.limits.max_images
        chars_planned = self.limits.max_file_chars
        seen_urls: set[str] = set()
        for index, message in enumerate(messages):
            position = 0
            for attachment in getattr(message, "attachments", None) or ():
                position += 1
                name = attachment.filename
                size = int(getattr(attachment, "size", 0) or 0)
                kind = classify(name, getattr(attachment, "content_type", None))
                key = (index, position)
                if kind == "image":
                    if images_left <= 0:
                        notes[key] = _image_limit_note(name, self.limits.max_images)
                    elif size > self.limits.max_image_bytes:
                        notes[key] = (
                            f"[image {name}: {human_size(size)}, over the "
                            f"{self.limits.image_limit} limit, not shown]"
                        )
                    else:
                        images_left -= 1
                        items.append(
                            _Item(index, position, name, "image", attachment.read, size=size)
                        )
                elif kind == "other-image":
                    shown = _base_type(getattr(attachment, "content_type", None)) or _extension(
                        name
                    )
                    notes[key] = (
                        f"[image {name}: {shown} is not supported (PNG, JPEG, WebP, GIF), "
                        "not shown]"
                    )
                elif kind == "text" and chars_planned > 0:
                    # UTF-8 takes at most 4 bytes a character: enough bytes for the
                    # characters still allowed, whatever the file's script.
                    cap = chars_planned * 4
                    items.append(
                        _Item(
                            index,
                            position,
                            name,
                            "text",
                            _text_reader(attachment, size, cap, self.fetch),
                            size=size,
                            byte_cap=cap,
                        )
                    )
                    chars_planned -= min(size, chars_planned) if size else 0
                elif kind == "text" and self.limits.max_file_chars > 0:
                    notes[key] = _over_text_limit(name, self.limits.max_file_chars)
                else:
                    notes[key] = f"[file {name}: {human_size(size)}, not read]"
            for embed in getattr(message, "embeds", None) or ():
                for url, original in _embed_image_urls(embed):
                    if url in seen_urls or original in seen_urls:
                        continue
                    seen_urls.update((url, original))
                    position += 1
                    name = name_from_url(original)
                    if images_left <= 0:
                        notes[(index, position)] = _image_limit_note(name, self.limits.max_images)
                        continue
                    images_left -= 1
                    items.append(
                        _Item(
                            index,
                            position,
                            name,
                            "image",
                            _url_reader(self.fetch, url, self.limits.max_image_bytes),
                            url=url,
                        )
                    )
        await self._run(items)
        self._assemble(collected, items, notes)
        return collected

    async def _run(self, items: list[_Item]) -> None:
        if not items:
            return

        async def one(item: _Item) -> None:
            async with self._gate:
                item.result = await self._download(item)

        tasks = [asyncio.create_task(one(item)) for item in items]
        _, pending = await asyncio.wait(tasks, timeout=self.deadline)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for item, task in zip(items, tasks, strict=True):
            if task in pending:
                what = "image" if item.kind == "image" else "file"
                item.result = f"[{what} {item.name}: download timed out, not read]"
            elif task.exception() is not None:  # a bug; never the turn's end
                log.error("reading %s failed", item.name, exc_info=task.exception())
                item.result = f"[file {item.name}: could not be read]"

    async def _download(self, item: _Item) -> str | ImagePart | _TextFile:
        try:
            got = await item.run()
        except TooLarge as exc:
            size = f"{human_size(exc.size)}, " if exc.size else ""
            return f"[image {item.name}: {size}over the {self.limits.image_limit} limit, not shown]"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # discord.HTTPException, aiohttp, DownloadError...
            log.info("could not download %s: %s", item.url or item.name, exc)
            what = "image" if item.kind == "image" else "file"
            return f"[{what} {item.name}: could not be downloaded]"
        if item.kind == "image":
            data = got if isinstance(got, bytes) else got[0]
            if len(data) > self.limits.max_image_bytes:
                return (
                    f"[image {item.name}: {human_size(len(data))}, over the "
                    f"{self.limits.image_limit} limit, not shown]"
                )
            mime = sniff_image(data)
            if mime is None:
                return f"[image {item.name}: not a PNG, JPEG, WebP or GIF image, not shown]"
            return ImagePart(data, mime, item.name)
        data, cut = got if isinstance(got, tuple) else (got, False)
        return _TextFile(item.name, decode_text(data, cut=cut), cut)

    def _assemble(
        self,
        collected: list[Collected],
        items: list[_Item],
        notes: dict[tuple[int, int], str],
    ) -> None:
        entries: dict[tuple[int, int], str | ImagePart | _TextFile | None] = {**notes}
        for item in items:
            entries[(item.message_index, item.position)] = item.result
        chars_left = self.limits.max_file_chars
        for key in sorted(entries):
            entry = entries[key]
            target = collected[key[0]]
            if isinstance(entry, ImagePart):
                target.images.append(entry)
            elif isinstance(entry, _TextFile):
                block, chars_left = entry.render(chars_left, self.limits.max_file_chars)
                target.blocks.append(block)
            elif entry:
                target.blocks.append(entry)


def _over_text_limit(name: str, limit: int) -> str:
    return f"[file {name}: not read, over the limit of {limit} characters of files]"


def _image_limit_note(name: str, limit: int) -> str:
    if limit <= 0:
        return f"[image {name}: not shown]"
    return f"[image {name}: not shown, over the limit of {limit} images per message]"


def _text_reader(
    attachment: Any, size: int, cap: int, fetch: Fetcher
) -> Callable[[], Awaitable[tuple[bytes, bool]]]:
    async def read() -> tuple[bytes, bool]:
        if size and size <= cap:
            return await attachment.read(), False
        # Larger than what can be shown: only its beginning is downloaded.
        data, _, cut = await fetch(attachment.url, cap, partial=True)
        return data, cut

    return read


def _url_reader(fetch: Fetcher, url: str, max_bytes: int) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        data, content_type, _ = await fetch(url, max_bytes)
        base = _base_type(content_type)
        if base and not base.startswith("image/") and base != "application/octet-stream":
            raise DownloadError(f"not an image ({base})")
        return data

    return read


async def close_quietly(fetcher: Any) -> None:
    close = getattr(fetcher, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
