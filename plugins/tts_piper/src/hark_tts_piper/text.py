"""Text for the ear: strip Discord markdown, then cut into short pieces for Piper.

espeak-ng reads markup literally ("asterisk asterisk bold"), and LLM replies are
full of it. Piper synthesizes one whole sentence per inference, so the first
audio comes after the first sentence is done: the pieces are sentences, and an
over-long one is cut at a clause break (comma, semicolon, colon, dash) so that
no single inference (and the first one especially) keeps the listener waiting.
"""

from __future__ import annotations

import re

_FENCED_CODE = re.compile(r"```.*?(?:```|$)", re.S)
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((?:https?://|<)[^)\s]+\)")
_URL = re.compile(r"<?https?://[^\s>]+>?")
# <@123> <@!123> <@&123> <#123> and custom emoji <:name:123> / <a:name:123>
_DISCORD_TAG = re.compile(r"<(?:@[!&]?|#)\d+>|<a?:(\w+):\d+>")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.M)
_QUOTE = re.compile(r"^\s*>+\s?", re.M)
_BULLET = re.compile(r"^\s*[-*+•]\s+", re.M)
_PAIRED = re.compile(r"\*\*|__|~~|\|\||`")
# A lone * or _ that touches a word on one side only: emphasis, not "2 * 3" or snake_case.
_EMPHASIS = re.compile(r"(?<![\w*])[*_]+(?=\w)|(?<=\w)[*_]+(?![\w*])")
_SPACES = re.compile(r"[ \t\f\v]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+(?=[,.!?;:…](?:\s|$))")

# A sentence: anything up to terminal punctuation (and closing quotes/brackets)
# that is followed by whitespace or the end; "3.14" and "e.g.x" do not end one.
_SENTENCE = re.compile(r"\S.*?(?:[.!?…]+[\"'”’)\]]*(?=\s|$)|$)", re.S)
# Clause breaks inside a sentence, where a cut sounds like a natural pause.
_CLAUSE = re.compile(r"[,;:](?=\s)|\s[–—-](?=\s)")

#: The first piece is kept at most this long when it has a clause break (time to first audio).
FIRST_PIECE_CHARS = 120
#: Any other piece is kept at most this long when it has a clause break.
MAX_PIECE_CHARS = 300


def speech_text(text: str) -> str:
    """``text`` with Discord markdown, mentions, custom emoji and URLs removed or softened."""
    text = _FENCED_CODE.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub("a link", text)
    text = _DISCORD_TAG.sub(lambda m: m.group(1) or "", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("", text)
    text = _PAIRED.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub("", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _cut(sentence: str, limit: int) -> tuple[str, str] | None:
    """Split ``sentence`` at the last clause break within ``limit`` characters (and past
    a quarter of it, so the head is not a lone word); None when there is none."""
    best = None
    for match in _CLAUSE.finditer(sentence, 0, limit):
        if match.end() >= limit // 4:
            best = match.end()
    if best is None:
        return None
    head, tail = sentence[:best].strip(), sentence[best:].strip()
    return (head, tail) if head and tail else None


def sentences(text: str) -> list[str]:
    """Sentences of ``text``; each line break also ends one (lists, short lines)."""
    found: list[str] = []
    for line in text.splitlines():
        found.extend(m.group(0).strip() for m in _SENTENCE.finditer(line))
    return [s for s in found if s]


def split_for_speech(
    text: str, *, first_chars: int = FIRST_PIECE_CHARS, max_chars: int = MAX_PIECE_CHARS
) -> list[str]:
    """Pieces to feed Piper one at a time, in order: sentences, with long ones cut at
    clause breaks (the first piece at ``first_chars``, the others at ``max_chars``).

    A sentence with no clause break stays whole, however long: cutting mid-phrase
    would break its intonation. Returns ``[]`` for text with nothing to say.
    """
    pieces: list[str] = []
    queue = sentences(speech_text(text))
    queue.reverse()
    while queue:
        sentence = queue.pop()
        limit = first_chars if not pieces else max_chars
        cut = _cut(sentence, limit) if len(sentence) > limit else None
        if cut is None:
            pieces.append(sentence)
        else:
            pieces.append(cut[0])
            queue.append(cut[1])
    return [p for p in pieces if any(ch.isalnum() for ch in p) or _speakable_symbol(p)]


def _speakable_symbol(piece: str) -> bool:
    # Emoji and symbols that espeak names ("slightly smiling face"); bare punctuation
    # ("...", "!!") is not worth a clip.
    return any(not ch.isspace() and not _is_punctuation(ch) for ch in piece)


def _is_punctuation(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch).startswith("P")
