"""Discord-style snowflake ids.

Real ids encode their creation time, and discord.py relies on that (for example
``Message.created_at`` and the delete sub-rate-limit in ``http.py``), so the fake
server mints ids the same way instead of using small counters.
"""

from __future__ import annotations

import datetime as dt
import time

DISCORD_EPOCH_MS = 1420070400000


class SnowflakeGenerator:
    """Mints strictly increasing snowflakes based on the wall clock."""

    def __init__(self, worker_id: int = 1, process_id: int = 0) -> None:
        self._prefix = ((worker_id & 0x1F) << 17) | ((process_id & 0x1F) << 12)
        self._last_ms = 0
        self._increment = 0

    def next(self) -> int:
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        if now_ms <= self._last_ms:
            # Same millisecond (or the clock stepped back): keep ids increasing anyway.
            self._increment += 1
            if self._increment > 0xFFF:
                self._last_ms += 1
                self._increment = 0
        else:
            self._last_ms = now_ms
            self._increment = 0
        return (self._last_ms << 22) | self._prefix | self._increment


def snowflake_time(snowflake: int) -> dt.datetime:
    """The creation time encoded in ``snowflake`` (UTC)."""
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def iso_timestamp(when: dt.datetime | None = None) -> str:
    """ISO 8601 timestamp in the format Discord uses (``+00:00`` offset)."""
    return (when or dt.datetime.now(dt.UTC)).isoformat()
