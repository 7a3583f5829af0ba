"""The PostgreSQL backend: an asyncpg pool, for one bot run as several processes.

``HARK_DATABASE_URL=postgresql://user:password@host:5432/hark`` selects it; asyncpg is
the optional extra ``hark[postgresql]`` and is imported only here.

- SQL is the same as for SQLite: ``?`` parameters become ``$1..$n`` (outside quotes,
  comments and ``$tag$`` bodies), rows come back as tuples, ``execute`` returns the
  row count read from the command's status (``UPDATE 3``).
- Transactions: BEGIN on a pooled connection; ``lock_timeout`` is the write patience,
  so a row held by another process past it raises :class:`DatabaseBusy`, like a
  locked SQLite file. Deadlocks and serialization failures are busy too; the
  one-statement helpers (``execute``, ``executemany``) retry them.
- Losing the server: connection errors become :class:`DatabaseUnavailable` (the URL
  shown without its password). A pooled connection the server closed is replaced
  before a transaction starts, so a restarted server costs nothing.
- Change notices: ``pg_notify('hark_changes', json)`` inside the writing transaction
  (sent at commit), read back on a dedicated LISTEN connection that reconnects on its
  own and then tells the subscribers ``{"t": "*"}`` (notices may have been missed).
- Schema changes take a session advisory lock (:data:`MIGRATION_LOCK`), so processes
  starting together apply each migration once; versions are in ``schema_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import random
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hark.config import ConfigError, display_url
from hark.logs import redact, register_secret
from hark.plugin import MigrationStep
from hark.store.database import RELOAD, Database, Transaction
from hark.store.errors import DatabaseBusy, DatabaseError, DatabaseUnavailable, one_line
from hark.store.migrations import MIGRATIONS, POSTGRESQL, SCHEMA_VERSION_TABLE, sql_for

log = logging.getLogger(__name__)

#: The channel every Hark process on a database LISTENs on.
CHANNEL = "hark_changes"
#: The advisory-lock key schema changes take (a stable 63-bit number).
MIGRATION_LOCK = int.from_bytes(
    hashlib.blake2b(b"hark.migrations", digest_size=8).digest(), "big"
) & (2**63 - 1)
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; a bigger one says "reload".
_NOTIFY_LIMIT = 7900
# Seconds between checks that the quiet LISTEN connection still answers (a peer gone
# without closing the socket), and the longest wait between reconnection attempts.
LISTEN_CHECK = 15.0
LISTEN_RETRY_MAX = 2.0

_TOKENS = re.compile(
    r"'(?:[^']|'')*'"  # 'string' ('' inside)
    r'|"(?:[^"]|"")*"'  # "identifier"
    r"|--[^\n]*"  # -- comment
    r"|/\*.*?\*/"  # /* comment */
    r"|\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$"  # $tag$ body $tag$
    r"|\?",
    re.S,
)
_ROW_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})
# asyncpg's InterfaceError texts for a connection or pool that is gone.
_CLOSED = re.compile(r"(connection is closed|pool is clos|cannot perform operation: connection)")


@functools.lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    """``sql`` with each ``?`` parameter as ``$1``, ``$2``... (not those in quotes,
    identifiers, comments or dollar-quoted bodies)."""
    if "?" not in sql:
        return sql
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return _TOKENS.sub(number, sql)


def rowcount(status: str) -> int:
    """The rows a command changed, from its status (``"INSERT 0 3"`` -> 3); -1 for
    commands that change no rows (SQLite's cursor says -1 there too)."""
    verb, _, rest = status.partition(" ")
    if verb not in _ROW_VERBS:
        return -1
    last = rest.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


def _password(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.password:
        return parts.password
    values = parse_qs(parts.query).get("password")
    return values[0] if values else None


async def _keep_session(conn: Any) -> None:
    """The pool's reset between uses. Hark leaves no session state behind (its SET is
    LOCAL to a transaction; the migration lock is released explicitly), so asyncpg's
    default reset (a round trip on every release) is not needed."""


def _closed(event: asyncio.Event, conn: Any) -> None:
    event.set()


class _Conflict(DatabaseBusy):
    """A deadlock or serialization failure: rolled back whole, safe to run again."""


class PostgresTransaction(Transaction):
    """Statements on one pooled connection (in a transaction, or autocommit in
    :meth:`PostgresDatabase.reading`)."""

    def __init__(self, db: PostgresDatabase, conn: Any, patience: float | None) -> None:
        super().__init__()
        self._db = db
        self._conn = conn
        self._patience = patience

    def _error(self, exc: BaseException) -> DatabaseError:
        return self._db._translate(exc, self._conn, self._patience)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        args = tuple(params)
        try:
            if args:
                status = await self._conn.execute(numbered(sql), *args)
            else:
                status = await self._conn.execute(sql)
        except self._db._errors as exc:
            raise self._error(exc) from exc
        return rowcount(status)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        args = [tuple(r) for r in rows]
        if not args:
            return
        try:
            await self._conn.executemany(numbered(sql), args)
        except self._db._errors as exc:
            raise self._error(exc) from exc

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        args = tuple(params)
        try:
            rows = await self._conn.fetch(numbered(sql) if args else sql, *args)
        except self._db._errors as exc:
            raise self._error(exc) from exc
        return [tuple(row) for row in rows]

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        args = tuple(params)
        try:
            row = await self._conn.fetchrow(numbered(sql) if args else sql, *args)
        except self._db._errors as exc:
            raise self._error(exc) from exc
        return tuple(row) if row is not None else None

    async def executescript(self, script: str) -> None:
        # The simple query protocol: several statements, and $$ bodies, in one call.
        try:
            await self._conn.execute(script)
        except self._db._errors as exc:
            raise self._error(exc) from exc

    async def _commit(self) -> None:
        try:
            if self.notices:
                texts = self._db._notice_texts(self.notices)
                await self._conn.execute(
                    "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
                    CHANNEL,
                    texts,
                )
            status = await self._conn.execute("COMMIT")
        except self._db._errors as exc:
            raise self._error(exc) from exc
        if status == "ROLLBACK":
            # A statement failed earlier and its error was caught by the caller:
            # PostgreSQL has already thrown the whole transaction away.
            raise DatabaseError(
                "the transaction was rolled back: one of its statements had failed",
                permanent=True,
            )


class PostgresDatabase(Database):
    """The bot's PostgreSQL database (``postgresql://...``)."""

    dialect = POSTGRESQL
    reads_exclude_writes = False

    def __init__(
        self,
        url: str,
        *,
        write_patience: float = 30.0,
        min_size: int = 0,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        reconnect_patience: float = 5.0,
    ) -> None:
        super().__init__(display_url=display_url(url), write_patience=write_patience)
        try:
            import asyncpg
        except ImportError:
            raise ConfigError(
                f"{self.display_url} is a PostgreSQL database, which needs asyncpg: "
                "pip install 'hark[postgresql]'"
            ) from None
        self._asyncpg = asyncpg
        #: The full URL, password included: for connecting only (locks open their own).
        self.url = url
        register_secret(_password(url))
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        #: Seconds a write keeps trying to reach a server that is away (at most its
        #: patience) before DatabaseUnavailable: a restart or failover costs no write.
        self.reconnect_patience = reconnect_patience
        self._pool: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._migrator: asyncio.Task[Any] | None = None
        # This object's notices come back on its own LISTEN connection: skip those.
        self._origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        x = asyncpg.exceptions
        # What the driver raises: translated at this module's boundary.
        self._errors: tuple[type[BaseException], ...] = (
            OSError,
            TimeoutError,
            x.PostgresError,
            x.InterfaceError,
            x.InternalClientError,
        )
        self._unreachable: tuple[type[BaseException], ...] = (
            OSError,
            TimeoutError,
            x.PostgresConnectionError,
            x.InvalidCatalogNameError,
            x.InvalidAuthorizationSpecificationError,
            x.CannotConnectNowError,
            x.AdminShutdownError,
            x.CrashShutdownError,
            x.TooManyConnectionsError,
            x.IdleSessionTimeoutError,
            x.DatabaseDroppedError,
            x.ClientConfigurationError,
        )
        self._permanent: tuple[type[BaseException], ...] = (
            x.IntegrityConstraintViolationError,
            x.SyntaxOrAccessError,
            x.DataError,
            x.FeatureNotSupportedError,
            x.InterfaceError,  # e.g. a parameter of the wrong Python type
        )

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.display_url!r})"

    # -- errors ------------------------------------------------------------------

    def _translate(
        self, exc: BaseException, conn: Any = None, patience: float | None = None
    ) -> DatabaseError:
        """The store's error for an asyncpg (or socket) one."""
        if isinstance(exc, DatabaseError):
            return exc
        x = self._asyncpg.exceptions
        reason = redact(one_line(exc))
        if isinstance(exc, x.LockNotAvailableError):
            waited = self.write_patience if patience is None else patience
            return DatabaseBusy(waited)
        if isinstance(exc, x.DeadlockDetectedError):
            return _Conflict(0.0, "two writers waited for each other (a deadlock)")
        if isinstance(exc, x.SerializationError):
            return _Conflict(0.0, "a concurrent change conflicted with this one")
        closed = conn is not None and conn.is_closed()
        if isinstance(exc, TimeoutError):
            reason = "timed out"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        if (
            isinstance(exc, self._unreachable)
            or closed
            or (isinstance(exc, x.InterfaceError) and _CLOSED.match(str(exc)) is not None)
        ):
            return DatabaseUnavailable(self.display_url, reason)
        return DatabaseError(reason, permanent=isinstance(exc, self._permanent))

    # -- lifecycle ---------------------------------------------------------------

    async def open(self, migrations: Iterable[MigrationStep] = (), *, migrate: bool = True) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await self._asyncpg.create_pool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout,
                reset=_keep_session,
                server_settings={"application_name": "hark"},
            )
        except self._errors as exc:
            raise self._translate(exc) from exc
        try:
            # No connection floor (min_size 0): asyncpg would log a traceback for each
            # failed attempt to restore it while the server is away. So the first
            # connection is made here, to fail at start-up rather than later.
            async with self.reading() as probe:
                await probe.fetchone("SELECT 1")
            if migrate:
                await self.migrate([*MIGRATIONS, *migrations])
            if self._subscribers:
                await self._start_listening()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._stop_dispatch()
        listener, self._listener = self._listener, None
        if listener is not None and not listener.done():
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10.0)
            except (TimeoutError, *self._errors):
                pool.terminate()

    async def migrate(self, migrations: Sequence[MigrationStep]) -> None:
        """Apply the core steps past ``schema_version``, each in its own transaction,
        under the migration lock."""
        async with self.migrating():
            async with self.transaction() as tx:
                await tx.executescript(SCHEMA_VERSION_TABLE)
                row = await tx.fetchone("SELECT version FROM schema_version WHERE id = 1")
            done = int(row[0]) if row else 0
            for number, step in enumerate(migrations[done:], start=done + 1):
                script = sql_for(step, POSTGRESQL)
                if script is None:
                    raise DatabaseError(
                        f"migration {number} has no SQL for postgresql", permanent=True
                    )
                log.info("applying database migration %d", number)
                async with self.transaction() as tx:
                    await tx.executescript(script)
                    await tx.execute(
                        "INSERT INTO schema_version (id, version) VALUES (1, ?)"
                        " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                        (number,),
                    )

    # -- connections -------------------------------------------------------------

    async def _acquire(self) -> Any:
        pool = self._pool
        if pool is None:
            raise RuntimeError("database is not open")
        try:
            return await pool.acquire()
        except self._errors as exc:
            raise self._translate(exc) from exc

    async def _release(self, conn: Any) -> None:
        pool = self._pool
        if pool is None:
            conn.terminate()
            return
        with contextlib.suppress(Exception):
            await pool.release(conn)

    async def _rollback(self, conn: Any) -> None:
        if conn.is_closed():
            return
        try:
            await conn.execute("ROLLBACK")
        except BaseException:
            # Its state is unknown: the pool opens a new one in its place.
            conn.terminate()
            raise

    async def _begin(self, patience: float) -> Any:
        # lock_timeout is in milliseconds; 0 would mean "wait for ever".
        begin = f"BEGIN; SET LOCAL lock_timeout = {max(1, int(patience * 1000))}"
        # Nothing has run before BEGIN succeeds, so trying again is always safe: at once
        # for a pooled connection the server had closed (the pool replaces it), then
        # with backoff while the server is away (a restart, a failover), up to
        # reconnect_patience; then the caller hears DatabaseUnavailable.
        started = time.monotonic()
        limit = min(patience, self.reconnect_patience)
        attempt = 0
        while True:
            attempt += 1
            try:
                conn = await self._acquire()
                try:
                    await conn.execute(begin)
                    return conn
                except self._errors as exc:
                    error = self._translate(exc, conn)
                    await self._release(conn)
                    raise error from exc
                except BaseException:  # cancelled while BEGIN ran
                    with contextlib.suppress(Exception):
                        await self._rollback(conn)
                    await self._release(conn)
                    raise
            except DatabaseUnavailable:
                if attempt >= 3 and time.monotonic() - started >= limit:
                    raise
                if attempt >= 3:
                    await asyncio.sleep(min(0.5, 0.05 * 2 ** (attempt - 3)))

    @contextlib.asynccontextmanager
    async def transaction(
        self, *, patience: float | None = None
    ) -> AsyncIterator[PostgresTransaction]:
        """Statements committed together, or rolled back together if the block raises.
        A row or table another process holds is waited for up to ``patience`` seconds
        (default ``write_patience``), then :class:`DatabaseBusy` is raised. Notices
        (``tx.notify``) are sent with the commit."""
        limit = self.write_patience if patience is None else patience
        conn = await self._begin(limit)
        tx = PostgresTransaction(self, conn, limit)
        try:
            try:
                yield tx
                await tx._commit()
            except BaseException:
                with contextlib.suppress(BaseException):
                    await self._rollback(conn)
                raise
        finally:
            await self._release(conn)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[PostgresTransaction]:
        """Reads on a pooled connection, each statement on its own (autocommit). This
        does not keep this process's writers out (:attr:`reads_exclude_writes`)."""
        conn = await self._acquire()
        try:
            yield PostgresTransaction(self, conn, None)
        finally:
            await self._release(conn)

    @contextlib.asynccontextmanager
    async def migrating(self) -> AsyncIterator[None]:
        """Hold the migration lock (waiting while another process migrates)."""
        task = asyncio.current_task()
        if self._migrator is not None and self._migrator is task:
            yield  # already held by this task (core migrations, then a plugin's)
            return
        conn = await self._acquire()
        try:
            try:
                await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            except self._errors as exc:
                raise self._translate(exc, conn) from exc
            self._migrator = task
            try:
                yield
            finally:
                self._migrator = None
                # The pool does not reset sessions: a lock left behind would be held for
                # ever. If unlocking fails, closing the connection frees it.
                try:
                    await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
                except Exception:
                    conn.terminate()
                except BaseException:
                    conn.terminate()
                    raise
        finally:
            await self._release(conn)

    # -- one-statement helpers: retried where that is safe --------------------------

    async def execute(
        self, sql: str, params: Iterable[Any] = (), *, patience: float | None = None
    ) -> int:
        args = tuple(params)
        return await self._retrying(lambda tx: tx.execute(sql, args), patience)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        args = [tuple(r) for r in rows]
        await self._retrying(lambda tx: tx.executemany(sql, args))

    async def _retrying(self, statement: Any, patience: float | None = None) -> Any:
        """Run ``statement(tx)`` in a transaction; again after a deadlock or a
        serialization failure (rolled back whole), within ``patience`` (default the
        write patience)."""
        limit = self.write_patience if patience is None else patience
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                async with self.transaction(patience=patience) as tx:
                    return await statement(tx)
            except _Conflict:
                attempt += 1
                if time.monotonic() - started >= limit:
                    raise
                await asyncio.sleep(min(1.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.0))

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        args = tuple(params)
        return await self._read(lambda r: r.fetchall(sql, args))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        args = tuple(params)
        return await self._read(lambda r: r.fetchone(sql, args))

    async def _read(self, query: Any) -> Any:
        # A read may be run again: once more on a fresh connection when the pooled one
        # turned out to be closed by the server.
        try:
            async with self.reading() as reader:
                return await query(reader)
        except DatabaseUnavailable:
            async with self.reading() as reader:
                return await query(reader)

    # -- change notices ----------------------------------------------------------

    def _notice_texts(self, notices: list[dict[str, Any]]) -> list[str]:
        texts: list[str] = []
        for payload in notices:
            text = json.dumps(
                {**payload, "origin": self._origin}, separators=(",", ":"), default=str
            )
            if len(text.encode()) > _NOTIFY_LIMIT:
                text = json.dumps({**RELOAD, "origin": self._origin})
            if text not in texts:
                texts.append(text)
        return texts

    def _heard(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if not isinstance(data, dict) or data.pop("origin", None) == self._origin:
            return
        self._deliver(data)

    def _subscribed(self) -> None:
        # Subscribed after open(): listen from now on, and reload once connected, since
        # changes made before that were never heard.
        if self._pool is not None and (self._listener is None or self._listener.done()):
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(None, announce=True), name="hark-db-listen"
            )

    async def _start_listening(self) -> None:
        if self._listener is not None and not self._listener.done():
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        task = loop.create_task(self._listen(ready, announce=False), name="hark-db-listen")
        self._listener = task
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            ready.result()  # DatabaseUnavailable when the first connection failed
        else:
            task.result()  # it failed before connecting: a bug, with its traceback

    async def _listen(self, ready: asyncio.Future[None] | None, *, announce: bool) -> None:
        """Keep a LISTEN connection; after each reconnect, tell subscribers to reload."""
        delay = 0.1
        connected = False
        outage = False
        while True:
            conn = None
            gone = asyncio.Event()
            try:
                conn = await self._asyncpg.connect(
                    self.url,
                    timeout=self.connect_timeout,
                    server_settings={"application_name": "hark listen"},
                )
                # Bound to this connection's event (not the name, rebound next round).
                conn.add_termination_listener(functools.partial(_closed, gone))
                await conn.add_listener(CHANNEL, self._heard)
            except asyncio.CancelledError:
                if conn is not None:
                    conn.terminate()
                raise
            except self._errors as exc:
                if conn is not None:
                    conn.terminate()
                error = self._translate(exc)
                if ready is not None and not ready.done():
                    ready.set_exception(error)
                    return
                if not outage:
                    log.warning("change notices from other processes stopped: %s", error)
                    outage = True
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(LISTEN_RETRY_MAX, delay * 2)
                continue
            if ready is not None and not ready.done():
                ready.set_result(None)
            if connected or announce:
                self._deliver(dict(RELOAD))  # what was said meanwhile went unheard
            if outage:
                log.info("change notices from other processes resumed")
            connected, outage, announce, delay = True, False, False, 0.1
            try:
                await self._watch(conn, gone)
            finally:
                if not conn.is_closed():
                    conn.terminate()
            log.warning("lost the connection for change notices from other processes")
            outage = True

    async def _watch(self, conn: Any, gone: asyncio.Event) -> None:
        """Return once the LISTEN connection is closed or stops answering."""
        while not gone.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), LISTEN_CHECK)
                return
            try:
                await conn.fetchval("SELECT 1", timeout=LISTEN_CHECK)
            except self._errors:
                return
