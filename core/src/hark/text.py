"""Text helpers for Discord's limits."""

from __future__ import annotations

import re

MESSAGE_LIMIT = 2000

# A fence is a line of its own: "```" or "```lang". "```inline```" opens nothing.
_FENCE = re.compile(r"^```([^`\s]*)[^`\n]*$", re.MULTILINE)


def _cut_point(text: str, limit: int) -> int:
    """Best place to cut ``text`` at or before ``limit``: paragraph, line, sentence, word."""
    window = text[:limit]
    for pattern in ("\n\n", "\n"):
        index = window.rfind(pattern)
        if index > limit // 3:
            return index + len(pattern)
    sentence = max(window.rfind(mark) for mark in (". ", "! ", "? ", "; "))
    if sentence > limit // 3:
        return sentence + 2
    space = window.rfind(" ")
    if space > limit // 3:
        return space + 1
    return limit


_SENTENCE_END = re.compile(r"""(?<=[.!?…])["'”’)\]]*\s+|\n+""")


def chunk_text(text: str, limit: int) -> list[str]:
    """Group ``text`` into pieces of at most ``limit`` characters, cutting between
    sentences (or, for an overlong sentence, between words)."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sentence:
            continue
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def split_message(
    text: str, limit: int = MESSAGE_LIMIT, *, first_limit: int | None = None
) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters (the first part at
    most ``first_limit``, when given: a short opening message).

    Cuts at paragraph, line, sentence or word boundaries, in that order of
    preference. A code block open at a cut is closed in that part and reopened
    (with its language) in the next, so each part renders on its own.
    """
    if limit < 16 or (first_limit is not None and first_limit < 16):
        raise ValueError("limit must leave room for a code fence (at least 16 characters)")
    parts: list[str] = []
    rest = text
    reopen = ""
    while rest:
        rest = reopen + rest
        limit_here = limit if parts or first_limit is None else min(first_limit, limit)
        if len(rest) <= limit_here:
            parts.append(rest.rstrip())  # Discord trims trailing whitespace anyway
            break
        # Leave room to close a fence ("\n```" is 4 characters).
        cut = _cut_point(rest, limit_here - 4)
        head, rest = rest[:cut], rest[cut:]
        fences = _FENCE.findall(head)
        reopen = ""
        if len(fences) % 2 == 1:  # a block is still open at the cut
            language = fences[-1]
            head = head.rstrip("\n") + "\n```"
            reopen = f"```{language}\n"
        head = head.rstrip()
        if head:
            parts.append(head)
        rest = rest.lstrip("\n")
    return [p for p in parts if p.strip()]
