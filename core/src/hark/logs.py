"""Logging set-up with secret redaction.

Any value of a secret-looking environment variable (``*_TOKEN``, ``*_KEY``,
``*_SECRET``, ``*PASSWORD*``) and any value passed to :func:`register_secret`
is replaced by ``***`` in every formatted log line, tracebacks included.
"""

from __future__ import annotations

import logging
import os
import re
import sys

_SECRET_NAME = re.compile(r"(TOKEN|_KEY|SECRET|PASSWORD)", re.IGNORECASE)
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    # Very short values would redact ordinary words; real secrets are long.
    if value and len(value) >= 6:
        _secrets.add(value)


def register_environment_secrets(environ: dict[str, str] | None = None) -> None:
    for name, value in (os.environ if environ is None else environ).items():
        if _SECRET_NAME.search(name):
            register_secret(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # discord.py's gateway chatter is only useful when debugging it.
    logging.getLogger("discord").setLevel(max(root.level, logging.INFO))
