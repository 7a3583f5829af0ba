"""What Discord works out about an uploaded file: its content type and image size.

Discord ignores the type a client declares for an upload and sets ``content_type``
from the file itself (text types with ``; charset=utf-8``), and gives ``width`` and
``height`` for images it can read. The fake does the same from the file name and
the image's header (PNG, JPEG, GIF, WebP).
"""

from __future__ import annotations

import mimetypes
import struct

# Types Python's table lacks or names differently from Discord.
_EXTRA_TYPES = {
    ".md": "text/markdown",
    ".log": "text/plain",
    ".toml": "application/toml",
    ".yaml": "application/x-yaml",
    ".yml": "application/x-yaml",
    ".webp": "image/webp",
    ".ts": "video/mp2t",  # what Discord says for TypeScript files too
    ".rs": "text/rust",
    ".go": "text/x-go",
}
_TEXTUAL = ("application/json", "application/xml", "application/javascript", "application/toml")


def guess_content_type(filename: str, declared: str | None = None) -> str | None:
    """The ``content_type`` Discord reports for ``filename`` (None when unknown)."""
    lower = filename.lower()
    dot = lower.rfind(".")
    ext = lower[dot:] if dot > 0 else ""
    guessed = _EXTRA_TYPES.get(ext) or mimetypes.guess_type(lower, strict=False)[0]
    if guessed is None:
        # No idea from the name: keep what the client said, unless it said nothing.
        if declared and declared != "application/octet-stream":
            guessed = declared
        else:
            return None
    if guessed.startswith("text/") or guessed in _TEXTUAL:
        return f"{guessed}; charset=utf-8"
    return guessed


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF, JPEG or WebP image, else None."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        # Start-of-frame markers (not DHT, JPG or DAC) carry the size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None
