"""Link embeds: the web pages and images tests publish, and how Discord unfurls them.

When a message links to something, Discord fetches it and, shortly after the
message was created, adds embeds to it: a MESSAGE_UPDATE whose ``embeds`` hold,
for an image link, an embed of type ``image`` with a ``thumbnail`` (``url``, the
link; ``proxy_url``, Discord's media proxy copy; ``width``, ``height``,
``content_type``), and for a page an ``article``/``link`` embed with its title,
description and image. A link in ``<...>``, or a message with SUPPRESS_EMBEDS,
gets none. The fake does the same for URLs a test published with
:meth:`WebHelpers.publish_image` / :meth:`WebHelpers.publish_page`, after
``server.unfurl_delay`` seconds (0: already in the MESSAGE_CREATE; None: never);
the media proxy serves the image at ``/external/{key}/{name}`` on the fake's port.
The published URL itself is never served: a bot must download the proxy's copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .base import MessageLike, ServerCore
from .media import guess_content_type, image_size
from .state import FLAG_SUPPRESS_EMBEDS, MessageRecord

# A link as Discord's clients find one; "<https://...>" is shown without an embed.
_LINK = re.compile(r"<?https?://[^\s<>]+>?")


@dataclass(eq=False)
class WebResource:
    """Something published on the pretend web: an image, or a page (with an image)."""

    url: str
    key: str  # the media proxy's path segment
    content_type: str
    data: bytes | None = None  # an image's bytes (None for a page)
    title: str | None = None
    description: str | None = None
    image: WebResource | None = None  # a page's preview image
    width: int | None = None
    height: int | None = None

    @property
    def filename(self) -> str:
        return unquote(posixpath.basename(urlsplit(self.url).path)) or "image"


def links_in(content: str) -> list[str]:
    """The URLs Discord would embed: not those written as ``<url>``."""
    found = []
    for match in _LINK.finditer(content):
        text = match.group(0)
        if text.startswith("<") and text.endswith(">"):
            continue
        found.append(text.strip("<>").rstrip(".,;:!?)"))
    return found


class WebHelpers(ServerCore):
    unfurl_delay: float | None
    _dispatch_message: Callable[[str, MessageRecord], None]  # from MessageHelpers
    _web: dict[str, WebResource]
    _web_keys: dict[str, WebResource]

    # -- test helpers --------------------------------------------------------

    def publish_image(self, url: str, data: bytes, content_type: str | None = None) -> WebResource:
        """Put an image at ``url``: a message linking it gets an image embed."""
        kind = content_type or guess_content_type(urlsplit(url).path) or "image/png"
        size = image_size(data)
        resource = WebResource(
            url,
            self._web_key(url),
            kind,
            data=data,
            width=size[0] if size else None,
            height=size[1] if size else None,
        )
        self._web[url] = resource
        self._web_keys[resource.key] = resource
        return resource

    def publish_page(
        self,
        url: str,
        *,
        title: str,
        description: str = "",
        image: WebResource | None = None,
    ) -> WebResource:
        """Put a page at ``url`` (its preview image, if any, published first)."""
        resource = WebResource(
            url,
            self._web_key(url),
            "text/html",
            title=title,
            description=description or None,
            image=image,
        )
        self._web[url] = resource
        return resource

    def proxied(self, key: str) -> WebResource | None:
        """What the media proxy serves under ``key``."""
        return self._web_keys.get(key)

    async def unfurl(
        self, message: MessageLike, embeds: list[dict[str, Any]] | None = None
    ) -> None:
        """Add link embeds to ``message`` now (MESSAGE_UPDATE), like Discord after
        fetching its links: ``embeds``, or those of the published links it holds."""
        record = self._message(message)
        self._add_embeds(record, embeds if embeds is not None else self._embeds_for(record))
        await self.gateway.flush()

    # -- what _create_message calls ------------------------------------------

    def _link_embeds_at_creation(self, message: MessageRecord) -> list[dict[str, Any]]:
        """Embeds to put in the MESSAGE_CREATE itself (an unfurl delay of 0)."""
        if self.unfurl_delay != 0:
            return []
        return self._embeds_for(message)

    def _schedule_unfurl(self, message: MessageRecord) -> None:
        if not self.unfurl_delay:
            return
        embeds = self._embeds_for(message)
        if not embeds:
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self.unfurl_delay, self._add_embeds, message, embeds)

    # -- internals -------------------------------------------------------------

    def _web_key(self, url: str) -> str:
        return hashlib.sha256(url.encode()).hexdigest()[:24]

    def _embeds_for(self, message: MessageRecord) -> list[dict[str, Any]]:
        if message.flags & FLAG_SUPPRESS_EMBEDS:
            return []
        embeds = []
        for url in dict.fromkeys(links_in(message.content)):
            resource = self._web.get(url)
            if resource is not None:
                embeds.append(self._embed(resource))
        return embeds[:10]

    def _media(self, resource: WebResource) -> dict[str, Any]:
        data: dict[str, Any] = {
            "url": resource.url,
            "proxy_url": f"{self._http_base}/external/{resource.key}/{quote(resource.filename)}",
            "content_type": resource.content_type,
            "placeholder_version": 1,
            "flags": 0,
        }
        if resource.width is not None and resource.height is not None:
            data.update(width=resource.width, height=resource.height)
        return data

    def _embed(self, resource: WebResource) -> dict[str, Any]:
        if resource.data is not None:
            return {
                "type": "image",
                "url": resource.url,
                "thumbnail": self._media(resource),
                "content_scan_version": 1,
            }
        embed: dict[str, Any] = {"type": "article", "url": resource.url, "title": resource.title}
        if resource.description:
            embed["description"] = resource.description
        if resource.image is not None:
            embed["image"] = self._media(resource.image)
        embed["content_scan_version"] = 1
        return embed

    def _add_embeds(self, message: MessageRecord, embeds: list[dict[str, Any]]) -> None:
        if message.deleted or not embeds:
            return
        message.embeds = [*message.embeds, *embeds][:10]
        if not message.ephemeral:
            self._dispatch_message("MESSAGE_UPDATE", message)
        self._changed()
