"""Stream events from the process that follows Twitch to the bot's other processes.

A bot may run as several processes sharing one database (shards on PostgreSQL,
or processes on one SQLite file). Only one of them, the leader of ``"twitch"``
(``host.run_once``), holds the EventSub connection. It handles each event itself
and writes it to the plugin's table ``twitch_relay``; every process reads the rows
the others wrote, about every :data:`RELAY_POLL` seconds, and handles them as its
own: recent activity in prompts, the recent-events tool, and commentary in its
own servers, whose channels (and voice sessions) it has. Twitch chat questions
are answered by the leader alone (it holds the chat connection).

The writer deletes rows older than :data:`RELAY_KEEP`; a process that starts reads
only what comes after it started. With one process the table is written and
nobody else reads it: the cost is one small insert per event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hark.api import PluginDatabase
from hark_twitch.events import TwitchEvent

log = logging.getLogger("hark_twitch")

#: How often a process looks for events the leader relayed.
RELAY_POLL = 1.0
#: How long relayed events stay in the table (longer than any reader's gap).
RELAY_KEEP = 600.0
# Events waiting to be written while the database is away; beyond this the oldest go.
QUEUE_LIMIT = 1000
# Rows read at once; more are read on the next round straight away.
READ_BATCH = 500
PRUNE_EVERY = 60.0

MIGRATIONS = [
    # 1: events the process holding the Twitch connection relays to the others
    {
        "sqlite": """
        CREATE TABLE twitch_relay (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            origin TEXT NOT NULL,
            event TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        """,
        "postgresql": """
        CREATE TABLE twitch_relay (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            origin TEXT NOT NULL,
            event TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        );
        """,
    },
]

# What a relayed event carries: everything but the raw notification.
_FIELDS = ("kind", "text", "user_name", "user_id", "message_id", "chat_text", "chat_message_id")


def encode(event: TwitchEvent) -> str:
    data: dict[str, Any] = {name: getattr(event, name) for name in _FIELDS}
    data["at"] = event.at
    return json.dumps(data, separators=(",", ":"))


def decode(text: str) -> TwitchEvent | None:
    try:
        data = json.loads(text)
        return TwitchEvent(
            kind=str(data["kind"]),
            text=str(data["text"]),
            user_name=data.get("user_name"),
            user_id=data.get("user_id"),
            message_id=str(data.get("message_id") or ""),
            chat_text=str(data.get("chat_text") or ""),
            chat_message_id=str(data.get("chat_message_id") or ""),
            at=float(data.get("at") or time.time()),
        )
    except (ValueError, KeyError, TypeError):
        return None


class EventRelay:
    """This process's end of the relay: :meth:`publish` (the leader) and the reader that
    hands the others' events to ``on_event``. ``origin`` tells this process's rows
    apart (unique per bot, also for two bots in one process)."""

    def __init__(
        self,
        db: PluginDatabase,
        *,
        origin: str,
        on_event: Callable[[TwitchEvent], None],
        poll: float | None = None,
        keep: float = RELAY_KEEP,
    ) -> None:
        self.db = db
        self.origin = origin
        self.on_event = on_event
        self.poll = RELAY_POLL if poll is None else poll
        self.keep = keep
        #: The last row read (None: not known yet; read first, then every row after it).
        self.last_id: int | None = None
        self.published = 0
        self.received = 0
        self._queue: deque[TwitchEvent] = deque(maxlen=QUEUE_LIMIT)
        self._wake = asyncio.Event()
        self._pruned_at = 0.0
        self._failing: set[str] = set()

    async def open(self) -> None:
        """Start after the newest row: what was relayed before this process started is
        not replayed (it is logged once and tried again by :meth:`run` if it fails)."""
        try:
            row = await self.db.fetchone("SELECT MAX(id) FROM twitch_relay")
        except Exception as exc:
            self._failed("read", exc)
            return
        self.last_id = int(row[0]) if row and row[0] is not None else 0

    def publish(self, event: TwitchEvent) -> None:
        """Queue ``event`` for the other processes (written in order, in the background)."""
        self._queue.append(event)
        self._wake.set()

    async def run(self) -> None:
        """Write what :meth:`publish` queued and read the others' events, until cancelled."""
        await asyncio.gather(self._write_loop(), self._read_loop())

    # -- writing -----------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = list(self._queue)
                self._queue.clear()
                rows = [(self.origin, encode(e), e.at) for e in batch]
                try:
                    # One statement after another, in one task: ids grow in the order
                    # readers must see them (two overlapping inserts could commit out of
                    # order and a reader past the later id would skip the earlier one).
                    await self.db.executemany(
                        "INSERT INTO twitch_relay (origin, event, created_at) VALUES (?, ?, ?)",
                        rows,
                    )
                except Exception as exc:
                    self._failed("write", exc)
                    self._queue.extendleft(reversed(batch))
                    await asyncio.sleep(self.poll)
                    continue
                self._recovered("write")
                self.published += len(batch)
                await self._prune()

    async def _prune(self) -> None:
        now = time.time()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            await self.db.execute(
                "DELETE FROM twitch_relay WHERE created_at < ?", (now - self.keep,)
            )
        except Exception:
            log.debug("twitch: could not delete old relayed events", exc_info=True)

    # -- reading -----------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            more = False
            try:
                more = await self.read()
            except Exception as exc:
                self._failed("read", exc)
            else:
                self._recovered("read")
            if not more:
                await asyncio.sleep(self.poll)

    async def read(self) -> bool:
        """Hand the others' new events to ``on_event``; True when there may be more."""
        if self.last_id is None:
            await self.open()
            return False
        rows = await self.db.fetchall(
            "SELECT id, origin, event FROM twitch_relay WHERE id > ? ORDER BY id LIMIT ?",
            (self.last_id, READ_BATCH),
        )
        for row_id, origin, text in rows:
            self.last_id = int(row_id)
            if origin == self.origin:
                continue
            event = decode(text)
            if event is None:
                log.debug("twitch: skipped a relayed event that could not be read")
                continue
            self.received += 1
            try:
                self.on_event(event)
            except Exception:
                log.exception("twitch: handling a relayed event failed")
        return len(rows) == READ_BATCH

    # -- one line per failure, not one per poll ----------------------------------

    def _failed(self, what: str, exc: BaseException) -> None:
        if what not in self._failing:
            self._failing.add(what)
            log.warning(
                "twitch: could not %s relayed events (%s); trying again",
                what,
                type(exc).__name__,
            )

    def _recovered(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info("twitch: relayed events can be %s again", _DONE[what])


_DONE = {"read": "read", "write": "written"}
