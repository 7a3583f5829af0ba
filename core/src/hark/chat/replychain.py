"""Reply chains: the earlier messages a triggering message answers, for the prompt.

A reply names the message it answers (``message.reference``); that one may be a
reply too. :func:`follow` walks the chain back (the referenced message Discord sent
along, the client's cache, else one REST fetch per hop) up to a depth; a deleted or
inaccessible message, or a forward, ends it quietly. :func:`build` turns what was
found into prompt messages, oldest first, within a token budget (about four
characters a token), leaving out messages the channel's history already shows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import discord

from hark.chat.history import Entry
from hark.providers import ImagePart, PromptMessage

log = logging.getLogger(__name__)

#: Characters counted as one token for ``reply_chain_tokens``.
CHARS_PER_TOKEN = 4

# (channel id, message id) -> the message, or None when it is gone or hidden.
Lookup = Callable[[int, int], Awaitable[Any]]

_FENCE_EDGE = re.compile(r"^```[^\n`]*\n|\n```$")


async def follow(
    message: Any, depth: int, lookup: Lookup, *, root: tuple[int, int] | None = None
) -> list[Any]:
    """The messages ``message`` replies to, newest first, at most ``depth`` of them.

    ``root`` (channel id, message id): where the conversation started (a thread's
    first message), taken in once the replies run out, and followed in turn."""
    chain: list[Any] = []
    seen = {message.id}
    current = message
    while len(chain) < depth:
        found = await _referenced(current, seen, lookup)
        if found is None and root is not None:
            if root[1] not in seen:
                found = await _fetch(lookup, *root)
            root = None
        if found is None:
            break
        seen.add(found.id)
        chain.append(found)
        current = found
    return chain


async def _referenced(message: Any, seen: set[int], lookup: Lookup) -> Any:
    ref = getattr(message, "reference", None)
    if ref is None or ref.message_id is None or ref.message_id in seen:
        return None
    if getattr(ref, "type", None) == discord.MessageReferenceType.forward:
        return None  # a forwarded message is a copy, not something answered
    if isinstance(ref.resolved, discord.DeletedReferencedMessage):
        return None
    if ref.resolved is not None:  # the message Discord sent along
        return ref.resolved
    if ref.cached_message is not None:
        return ref.cached_message
    return await _fetch(lookup, ref.channel_id or message.channel.id, ref.message_id)


async def _fetch(lookup: Lookup, channel_id: int, message_id: int) -> Any:
    try:
        return await lookup(channel_id, message_id)
    except discord.HTTPException as exc:  # gone or hidden: the chain ends quietly
        log.debug("reply chain ends at %s: %s", message_id, exc)
        return None


def _core(text: str) -> str:
    """A posted part without the fence lines a split added at its edges."""
    return _FENCE_EDGE.sub("", text.strip()).strip()


def in_history(message: Any, text: str, entries: Sequence[Entry], *, bot_id: int | None) -> bool:
    """Whether the history window already holds ``message`` (whose prompt text is
    ``text``): the bot's own part of a recorded answer, or the same user's words.

    History keeps no message ids, so this compares text: a bot message matches an
    answer containing it (a long answer is posted in parts), a user's message an
    entry of theirs with the same words."""
    if message.author.id == bot_id:
        core = _core(message.content or "")
        return bool(core) and any(e.role == "assistant" and core in e.content for e in entries)
    return bool(text) and any(
        e.role == "user" and e.author_id == message.author.id and e.content == text for e in entries
    )


@dataclass(slots=True)
class Link:
    """One message of the chain, as the prompt will show it."""

    message: Any
    text: str  # its words, cleaned like a triggering message
    images: Sequence[ImagePart] = ()
    attachments: str = ""  # included files and notes, as for the triggering message

    @property
    def content(self) -> str:
        return "\n\n".join(p for p in (self.text, self.attachments) if p)


def within_budget(links: Sequence[Link], tokens: int) -> list[Link]:
    """The links (newest first) that fit in ``tokens``; the first that does not fit
    is cut to what is left (its start kept, marked "[cut]") and ends the chain."""
    left = tokens * CHARS_PER_TOKEN
    kept: list[Link] = []
    for link in links:
        if left <= 0:
            break
        content = link.content
        if len(content) > left:
            cut = content[:left].rstrip()
            kept.append(Link(link.message, f"{cut} [cut]", link.images, ""))
            break
        kept.append(link)
        left -= len(content)
    return kept


def to_prompt(
    links: Sequence[Link], *, bot_id: int | None, name_of: Callable[[Any], str]
) -> list[PromptMessage]:
    """Prompt messages, oldest first: the bot's as the assistant's, others' named."""
    messages: list[PromptMessage] = []
    for link in reversed(links):
        if link.message.author.id == bot_id:
            messages.append(PromptMessage("assistant", link.content, images=tuple(link.images)))
        else:
            messages.append(
                PromptMessage(
                    "user",
                    link.content,
                    name=name_of(link.message.author),
                    images=tuple(link.images),
                )
            )
    return messages
