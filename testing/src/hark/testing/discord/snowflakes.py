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

    def next_on_shard(self, shard: int, shard_count: int) -> int:
        """The next id whose server lands on ``shard`` of ``shard_count``
        (``(id >> 22) % shard_count == shard``); ids stay strictly increasing."""
        _check_shard(shard, shard_count)
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        # A millisecond of its own (after every id minted so far) on that shard: at
        # most shard_count - 1 ms ahead of the clock.
        ms = max(now_ms, self._last_ms + 1)
        ms += (shard - ms) % shard_count
        self._last_ms, self._increment = ms, 0
        return (ms << 22) | self._prefix


def _check_shard(shard: int, shard_count: int) -> None:
    if shard_count < 1 or not 0 <= shard < shard_count:
        raise ValueError(f"no shard {shard} among {shard_count} (ids go from 0 to count - 1)")


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that carries a server's events: ``(guild_id >> 22) % shard_count``."""
    return (guild_id >> 22) % shard_count


# Its own worker id, so its ids never equal a server's (worker 1).
_SHARDED_IDS = SnowflakeGenerator(worker_id=30)


def guild_id_on_shard(shard: int, shard_count: int) -> int:
    """A fresh server id (minted now) whose events go to ``shard`` of ``shard_count``.

    ``FakeDiscord.create_guild(name, shard=...)`` uses the server's own generator;
    this is for tests that need such an id without a server.
    """
    return _SHARDED_IDS.next_on_shard(shard, shard_count)


def snowflake_time(snowflake: int) -> dt.datetime:
    """The creation time encoded in ``snowflake`` (UTC)."""
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def iso_timestamp(when: dt.datetime | None = None) -> str:
    """ISO 8601 timestamp in the format Discord uses (``+00:00`` offset)."""
    return (when or dt.datetime.now(dt.UTC)).isoformat()
