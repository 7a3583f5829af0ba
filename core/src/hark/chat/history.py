"""Per-channel conversation history in the bot's database, offered to the model as context.

The history provider is an ordinary ContextProvider (the core dogfoods its plugin
API): it contributes the channel's last ``depth`` entries, and its ``record`` hook
writes an exchange once the reply was delivered. A failed turn is never recorded.

Writes are behind the reply: :meth:`HistoryStore.append` queues the exchange and
returns; one writer task commits queued exchanges in batches. Reads include what
is still queued, so the next turn sees it at once. A channel's oldest rows beyond
``KEEP_PER_CHANNEL`` are trimmed every ``TRIM_EVERY`` rows written to it. A
database locked by another process, or unreachable (a PostgreSQL server restarting,
the network down), only delays the write (retried with backoff, for as long as it
takes); meanwhile reads that fail fall back to what this process last read and what
is queued, so replies go on. At shutdown :meth:`HistoryStore.close` flushes, and
whatever still cannot be written is kept in a spill file beside the database and
written on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

from hark.providers import ContextPart, ContextProvider, ContextRequest, PromptMessage
from hark.store import Database
from hark.store.errors import DatabaseBusy, DatabaseError, DatabaseUnavailable

log = logging.getLogger(__name__)

# Rows kept per channel; the prompt uses far fewer (HISTORY_DEPTH), the rest is slack
# so a raised depth has something to show.
KEEP_PER_CHANNEL = 200
# The longest a write waits before the next try while the database stays locked.
MAX_RETRY_DELAY = 2.0
# A channel's oldest rows are trimmed once this many were written since the last trim
# (and on its first write in a run): up to KEEP_PER_CHANNEL + TRIM_EVERY rows in between.
TRIM_EVERY = 50
# Channels whose last read is kept (with what was written since, up to FALLBACK_DEPTH
# entries each), for replies while the database can't be read.
FALLBACK_CHANNELS = 256
FALLBACK_DEPTH = 64
# Rows a batch may have to be written as one multi-row INSERT (7 parameters each, well
# under SQLite's and PostgreSQL's parameter limits); bigger batches and batches that
# trim use a transaction.
ONE_STATEMENT_ROWS = 100


@dataclass(frozen=True, slots=True)
class Entry:
    role: str
    content: str
    author_name: str | None = None
    author_id: int | None = None


@dataclass(frozen=True, slots=True)
class _Exchange:
    """Entries written together (one transaction): stored whole or not at all."""

    channel_id: int
    guild_id: int | None
    entries: tuple[Entry, ...]
    created_at: float


class HistoryStore:
    def __init__(self, db: Database, *, spill_path: str | Path | None = None) -> None:
        self.db = db
        self.spill_path = Path(spill_path) if spill_path is not None else None
        self._pending: list[_Exchange] = []
        # channel id -> rows written since its last trim (absent: not trimmed this run).
        self._since_trim: dict[int, int] = {}
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        # A read must see each exchange once: in the table or in the queue. SQLite's
        # reading() keeps the writer out; otherwise (PostgreSQL's pool) this lock is
        # held from a read's SELECT to its look at the queue, and by the writer from
        # its COMMIT to dropping the batch from the queue.
        self._visible = None if db.reads_exclude_writes else asyncio.Lock()
        # One of clear() and a batch write at a time, so a cleared channel's queued
        # rows are not written after its DELETE.
        self._writing = asyncio.Lock()
        # channel id -> what its last read returned (oldest first), for fallbacks.
        self._last: dict[int, tuple[Entry, ...]] = {}
        self._reads_failing = False

    # -- reads -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _consistent(self) -> AsyncIterator[None]:
        if self._visible is None:
            yield
        else:
            async with self._visible:
                yield

    async def recent(self, channel_id: int, limit: int) -> list[Entry]:
        """The channel's last ``limit`` entries, queued ones included. When the
        database can't be read, what this process last read of the channel and
        what is queued since (a reply without its latest context beats none)."""
        try:
            async with self._consistent(), self.db.reading() as reader:
                rows = await reader.fetchall(
                    "SELECT role, content, author_name, author_id FROM history "
                    "WHERE channel_id = ? ORDER BY id DESC LIMIT ?",
                    (channel_id, limit),
                )
                # The writer drops an exchange from the queue in the same step as its
                # commit (see _visible), so nothing is seen twice or missed.
                queued = [e for x in self._pending if x.channel_id == channel_id for e in x.entries]
        except DatabaseError as exc:
            return self._fallback(channel_id, limit, exc)
        entries = [Entry(*row) for row in reversed(rows)] + queued
        entries = entries[-limit:] if limit > 0 else []
        self._remember(channel_id, entries)
        if self._reads_failing:
            self._reads_failing = False
            log.info("history reads from the database work again")
        return entries

    def _remember(self, channel_id: int, entries: list[Entry]) -> None:
        self._last.pop(channel_id, None)
        self._last[channel_id] = tuple(entries[-FALLBACK_DEPTH:])
        if len(self._last) > FALLBACK_CHANNELS:
            del self._last[next(iter(self._last))]

    def _fallback(self, channel_id: int, limit: int, exc: DatabaseError) -> list[Entry]:
        known = list(self._last.get(channel_id, ()))
        # Queued entries are the same objects the last read returned, if it saw them.
        seen = {id(e) for e in known}
        queued = [
            e
            for x in self._pending
            if x.channel_id == channel_id
            for e in x.entries
            if id(e) not in seen
        ]
        entries = (known + queued)[-limit:] if limit > 0 else []
        if not self._reads_failing:
            self._reads_failing = True
            log.warning("history read from memory until the database answers again: %s", exc)
        return entries

    async def count(self, channel_id: int) -> int:
        async with self._consistent(), self.db.reading() as reader:
            rows = await reader.fetchall(
                "SELECT COUNT(*) FROM history WHERE channel_id = ?", (channel_id,)
            )
            queued = sum(len(x.entries) for x in self._pending if x.channel_id == channel_id)
        return int(rows[0][0]) + queued

    # -- writes ----------------------------------------------------------

    async def append(self, channel_id: int, guild_id: int | None, entries: list[Entry]) -> None:
        """Queue an exchange for writing; it is visible to :meth:`recent` at once."""
        if not entries:
            return
        self._pending.append(_Exchange(channel_id, guild_id, tuple(entries), time.time()))
        self._start_writer()

    def _start_writer(self) -> None:
        self._idle.clear()
        self._wakeup.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="hark-history-writer")

    async def clear(self, channel_id: int) -> int:
        # Not while a batch is being written, so none of this channel lands after the DELETE.
        async with self._writing, self.db.transaction() as tx:
            deleted = await tx.execute("DELETE FROM history WHERE channel_id = ?", (channel_id,))
            queued = sum(len(x.entries) for x in self._pending if x.channel_id == channel_id)
            self._pending = [x for x in self._pending if x.channel_id != channel_id]
            self._last.pop(channel_id, None)
        return queued + deleted

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued exchange is written; False if ``timeout`` ran out."""
        if not self._pending:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def open(self) -> None:
        """Write what a previous run could not (its spill file), then remove the file."""
        path = self.spill_path
        if path is None or not path.is_file():
            return
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            exchanges = [_decode(line) for line in lines if line.strip()]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error("could not read unwritten history from %s: %s", path, exc)
            return
        self._pending[:0] = exchanges
        self._start_writer()
        if await self.flush(timeout=5.0):
            path.unlink(missing_ok=True)
            log.info("wrote %d history exchanges left from the last run", len(exchanges))
        # else: the file stays until they are written (close() rewrites or removes it).

    async def close(self, timeout: float = 10.0) -> None:
        """Flush for up to ``timeout`` seconds; spill what is left (database locked or
        unreachable)."""
        self._closing = True
        flushed = await self.flush(timeout)
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._writer = None
        if flushed or not self._pending:
            if self.spill_path is not None:
                self.spill_path.unlink(missing_ok=True)
            return
        left, self._pending = self._pending, []
        if self.spill_path is None:
            log.error(
                "%d history exchanges could not be written (database locked or unreachable)",
                len(left),
            )
            return
        try:
            self.spill_path.parent.mkdir(parents=True, exist_ok=True)
            self.spill_path.write_text(
                "".join(json.dumps(_encode(x)) + "\n" for x in left), encoding="utf-8"
            )
        except OSError as exc:
            log.error(
                "%d history exchanges lost: cannot write %s: %s", len(left), self.spill_path, exc
            )
            return
        log.warning(
            "database still locked or unreachable at shutdown: %d history exchanges kept in %s"
            " for the next start",
            len(left),
            self.spill_path,
        )

    async def _write_loop(self) -> None:
        attempt = 0
        while True:
            if not self._pending:
                self._idle.set()
                self._wakeup.clear()
                if self._closing:
                    return
                await self._wakeup.wait()
                continue
            try:
                await self._write()
            except asyncio.CancelledError:
                raise
            except DatabaseError as exc:
                if exc.permanent:
                    # Not going to fix itself (a bug): retrying would stall every later write.
                    dropped, self._pending = self._pending, []
                    log.exception("history write failed; %d exchanges dropped", len(dropped))
                    continue
                # Locked (another process), unreachable, a full disk: keep the rows and
                # try again; a delivered reply is never dropped.
                attempt += 1
                if attempt == 1 or attempt % 20 == 0:
                    if isinstance(exc, DatabaseBusy):
                        why = "database is locked"
                    elif isinstance(exc, DatabaseUnavailable):
                        why = f"database unreachable: {exc.reason}"
                    else:
                        why = str(exc)
                    log.warning(
                        "history write delayed (%s); %d exchanges queued, retrying",
                        why,
                        len(self._pending),
                    )
                delay = min(MAX_RETRY_DELAY, 0.1 * 2 ** min(attempt, 6))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            if attempt:
                log.info("history write succeeded after %d retries", attempt)
            attempt = 0

    async def _hold_readers(self) -> bool:
        """Keep readers out (where reads don't exclude writes); True if now held."""
        if self._visible is None:
            return False
        await self._visible.acquire()
        return True

    async def _write(self) -> list[_Exchange]:
        """Write what is queued in one transaction and drop it from the queue; returns
        what was written."""
        held = False
        try:
            async with self._writing:
                # Taken under _writing: what clear() removed is not written.
                batch = list(self._pending)
                rows = [
                    (
                        x.channel_id,
                        x.guild_id,
                        e.role,
                        e.author_id,
                        e.author_name,
                        e.content,
                        x.created_at,
                    )
                    for x in batch
                    for e in x.entries
                ]
                written: dict[int, int] = {}
                for x in batch:
                    written[x.channel_id] = written.get(x.channel_id, 0) + len(x.entries)
                trimmed = [
                    channel_id
                    for channel_id, count in written.items()
                    if (since := self._since_trim.get(channel_id)) is None
                    or since + count >= TRIM_EVERY
                ]
                # Short patience: the loop above does the long, unbounded waiting.
                if not trimmed and len(rows) <= ONE_STATEMENT_ROWS:
                    # The usual batch: one multi-row INSERT, its own transaction (one
                    # trip to SQLite's thread). Readers of a database whose reads don't
                    # keep writers out wait from before it until the batch left the queue.
                    held = await self._hold_readers()
                    await self.db.execute(_insert_sql(len(rows)), _flat(rows), patience=1.0)
                else:
                    async with self.db.transaction(patience=1.0) as tx:
                        await tx.executemany(_insert_sql(1), rows)
                        for channel_id in trimmed:
                            await tx.execute(
                                "DELETE FROM history WHERE channel_id = ? AND id <= "
                                "(SELECT id FROM history WHERE channel_id = ? ORDER BY id DESC "
                                "LIMIT 1 OFFSET ?)",
                                (channel_id, channel_id, KEEP_PER_CHANNEL),
                            )
                        # Readers wait from here until the batch has left the queue.
                        held = await self._hold_readers()
                # Committed, and no await since: readers never see a row both in the
                # table and in the queue.
                done = {id(x) for x in batch}
                self._pending = [x for x in self._pending if id(x) not in done]
                for x in batch:  # what a fallback read knows is in the table now
                    known = self._last.get(x.channel_id)
                    if known is not None:
                        # A read while it was queued may have remembered it already.
                        seen = {id(e) for e in known}
                        fresh = tuple(e for e in x.entries if id(e) not in seen)
                        self._last[x.channel_id] = (*known, *fresh)[-FALLBACK_DEPTH:]
        finally:
            if held:
                self._visible.release()  # type: ignore[union-attr]
        # Committed: count towards the next trim (a failed batch counts nothing).
        for channel_id, count in written.items():
            self._since_trim[channel_id] = self._since_trim.get(channel_id, 0) + count
        for channel_id in trimmed:
            self._since_trim[channel_id] = 0
        if len(self._since_trim) > 10_000:
            self._since_trim.clear()  # the next write of each trims again
        return batch


_COLUMNS = "channel_id, guild_id, role, author_id, author_name, content, created_at"
_ROW = "(?, ?, ?, ?, ?, ?, ?)"


def _insert_sql(rows: int) -> str:
    return f"INSERT INTO history ({_COLUMNS}) VALUES " + ", ".join([_ROW] * rows)


def _flat(rows: list[tuple[object, ...]]) -> list[object]:
    return [value for row in rows for value in row]


def _encode(exchange: _Exchange) -> dict[str, object]:
    data = asdict(exchange)
    data["entries"] = [asdict(e) for e in exchange.entries]
    return data


def _decode(line: str) -> _Exchange:
    data = json.loads(line)
    return _Exchange(
        int(data["channel_id"]),
        data["guild_id"],
        tuple(Entry(**e) for e in data["entries"]),
        float(data["created_at"]),
    )


class HistoryContext(ContextProvider):
    """The channel's recent exchanges, speakers' names kept."""

    name = "history"
    timeout = 2.0

    default_settings = {"depth": None}

    def __init__(self, store: HistoryStore, depth: int = 12) -> None:
        super().__init__()
        self.store = store
        self.default_depth = depth

    def depth_for(self, guild_id: int | None) -> int:
        """HISTORY_DEPTH, unless the server set its own ``depth``."""
        depth = self.setting("depth", guild_id)
        return self.default_depth if depth is None else int(depth)

    async def _impl(self, request: ContextRequest) -> ContextPart | None:
        if not request.use_history or request.channel_id is None:
            return None
        depth = self.depth_for(request.guild_id)
        if depth <= 0:
            return None
        entries = await self.store.recent(request.channel_id, depth)
        if not entries:
            return None
        messages = [
            PromptMessage(
                "assistant" if e.role == "assistant" else "user", e.content, name=e.author_name
            )
            for e in entries
        ]
        return ContextPart(messages, order=50)

    async def record(self, request: ContextRequest, reply: str) -> None:
        if not request.use_history or request.channel_id is None or not reply.strip():
            return
        await self.store.append(
            request.channel_id,
            request.guild_id,
            [
                Entry("user", request.text, request.user_name, request.user_id),
                Entry("assistant", reply, request.bot_name, None),
            ],
        )
