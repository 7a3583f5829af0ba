"""Cut a streamed reply into sentences, so each can be spoken while the rest streams."""

from __future__ import annotations

import re

# End of a sentence: terminal punctuation (plus closing quotes/brackets) then space,
# or a line break. Decimal points ("3.5") have no space after them.
_END = re.compile(r"""[.!?…]+["'”’)\]]*\s+|\n+""")
# A long sentence is cut at a clause boundary so synthesis can start sooner.
_CLAUSE = re.compile(r"[,;:—–]\s+")


class SentenceSplitter:
    def __init__(self, *, max_chars: int = 220) -> None:
        self.max_chars = max_chars
        self._buffer = ""

    def feed(self, delta: str) -> list[str]:
        """Add text; return the sentences it completed."""
        self._buffer += delta
        out: list[str] = []
        while True:
            match = _END.search(self._buffer)
            if match is None:
                break
            sentence, self._buffer = self._buffer[: match.end()], self._buffer[match.end() :]
            if sentence.strip():
                out.append(sentence.strip())
        while len(self._buffer) > self.max_chars:
            cut = None
            for clause in _CLAUSE.finditer(self._buffer, 0, self.max_chars):
                cut = clause.end()
            if cut is None:
                space = self._buffer.rfind(" ", 0, self.max_chars)
                cut = space + 1 if space > 0 else self.max_chars
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            if piece.strip():
                out.append(piece.strip())
        return out

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []


def split_sentences(text: str, *, max_chars: int = 220) -> list[str]:
    splitter = SentenceSplitter(max_chars=max_chars)
    return splitter.feed(text) + splitter.flush()
