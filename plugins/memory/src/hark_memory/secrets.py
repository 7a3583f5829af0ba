"""Strings that look like secrets: never stored, never sent to extraction.

A heuristic, erring on the side of dropping: a fact that trips it is not kept
(there is no useful fact about a secret that is safe to keep).
"""

from __future__ import annotations

import re

_PATTERNS = [
    r"\bsk-[A-Za-z0-9_-]{16,}",  # OpenAI / OpenRouter (sk-or-v1-...), Anthropic (sk-ant-...)
    r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}",  # Discord bot token
    r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",  # JWT
    r"\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}",  # GitHub
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
    r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
    r"\bglpat-[A-Za-z0-9_-]{20,}",  # GitLab
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"\bbearer\s+[A-Za-z0-9._~+/=-]{16,}",
    # "password: hunter22", "api_key=...", "token is abc123..."
    r"\b(?:password|passwd|passphrase|secret|token|api[ _-]?key|access[ _-]?key)"
    r"\s*(?:is|=|:)\s*\S{6,}",
    r"\b[0-9a-fA-F]{32,}\b",  # long hex (keys, hashes of secrets)
]
_SECRET = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)
# Long base64-ish runs: only when they mix letters and digits (not a long word or URL path).
_BLOB = re.compile(r"[A-Za-z0-9+/_=-]{32,}")


def looks_secret(text: str) -> bool:
    """True when ``text`` holds something that looks like a token, key or password."""
    if _SECRET.search(text):
        return True
    for match in _BLOB.finditer(text):
        blob = match.group()
        if any(c.isdigit() for c in blob) and any(c.isalpha() for c in blob):
            return True
    return False


def redact(text: str) -> str:
    """``text`` with each secret-looking run replaced by ``[redacted]``."""
    text = _SECRET.sub("[redacted]", text)

    def blob(match: re.Match[str]) -> str:
        value = match.group()
        mixed = any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
        return "[redacted]" if mixed else value

    return _BLOB.sub(blob, text)
