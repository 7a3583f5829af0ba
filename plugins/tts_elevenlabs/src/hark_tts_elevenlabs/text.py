"""Cutting long text into ElevenLabs requests at sentence boundaries.

ElevenLabs refuses a text-to-speech request whose text is longer than the
model's character limit. Longer text is sent as several requests, in order,
each as close to the limit as whole sentences allow, so the voice keeps its
flow across as few joins as possible. A single sentence longer than the limit
is cut at a clause (``,`` ``;`` ``:`` dash), else at a space, else hard.
"""

from __future__ import annotations

import re

__all__ = ["REQUEST_CHAR_LIMIT", "split_for_requests", "split_sentences"]

#: Characters ElevenLabs accepts in one text-to-speech request (the documented
#: limit for the common plans; some models allow more).
REQUEST_CHAR_LIMIT = 5_000

# A sentence ends at . ! ? … (and CJK full stops), optionally followed by closing
# quotes or brackets, then whitespace; a blank line ends one too.
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|\n\s*\n")
_CLAUSE_MARKS = (", ", "; ", ": ", " – ", " — ", " - ")


def split_sentences(text: str) -> list[str]:
    """``text`` as sentences, each with its end mark, without surrounding whitespace."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        # Closing quotes/brackets stay with the sentence they close.
        end = match.start() + len(match.group(0).rstrip())
        piece = text[start:end].strip()
        if piece:
            pieces.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def _cut_long(sentence: str, limit: int) -> list[str]:
    """A sentence longer than ``limit`` cut at clauses, else words, else characters."""
    parts: list[str] = []
    rest = sentence
    while len(rest) > limit:
        window = rest[: limit + 1]  # a mark right at the limit still counts
        cut = max(window.rfind(mark) + 1 for mark in _CLAUSE_MARKS)
        if cut <= limit // 3:
            cut = window.rfind(" ")
        if cut <= limit // 3:
            cut = limit
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            parts.append(head)
    if rest:
        parts.append(rest)
    return parts


def split_for_requests(text: str, limit: int = REQUEST_CHAR_LIMIT) -> list[str]:
    """``text`` as few pieces of at most ``limit`` characters as whole sentences allow.

    Pieces keep the text's order; sentences in one piece are joined by a space
    (line breaks inside a sentence are kept). Blank text gives ``[]``; text within
    the limit is one piece, stripped.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    stripped = text.strip()
    if not stripped:
        return []
    if len(stripped) <= limit:
        return [stripped]
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(stripped):
        for part in _cut_long(sentence, limit) if len(sentence) > limit else [sentence]:
            if not current:
                current = part
            elif len(current) + 1 + len(part) <= limit:
                current = f"{current} {part}"
            else:
                pieces.append(current)
                current = part
    if current:
        pieces.append(current)
    return pieces
