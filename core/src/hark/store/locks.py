"""Work that one process of a deployment does, and Discord's identify rate across processes.

**Leadership.** :class:`Leadership` runs a job (an async callable) only while this
process holds the lock ``name``; every other process sharing the database tries
again every ``poll`` seconds, so when the leader's process dies another one takes
over. What the lock is depends on the database:

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``, key
  :func:`lock_key`) on a connection of its own, opened from the database's URL. The
  holder runs ``SELECT 1`` on it every ``poll`` seconds and hears at once when the
  server closes it; either way a lost connection cancels the job. The server drops
  a silent client's session (and so the lock) only after TCP keepalives have failed
  for longer than that (:func:`_keepalives`), so the job stops before another
  process can take over. A process that dies closes its connection, which frees the
  lock at once.
- SQLite: ``fcntl.flock`` on a file next to the database file: one leader among
  the processes that share the file on one machine. The kernel lets go of it when
  the holder's process ends, however it ends.
- An in-memory database: this process only (an in-process lock).

This process logs one INFO line when it starts leading ``name`` ("leading twitch
(process host:pid)") and one when it stops ("no longer leading twitch").

**Identify.** :func:`identify_slot` spaces Discord IDENTIFYs: at most one per bucket
(``shard_id % max_concurrency``) every :data:`IDENTIFY_WINDOW` seconds, across every
process of the deployment on PostgreSQL (an advisory lock in a key space of its own),
within this process otherwise.

Nothing here blocks the event loop: the lock-file calls never wait (``LOCK_NB``)
and asyncpg is asynchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from hark.store.status import process_name

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]

#: Seconds between attempts to take a lock somebody else holds, and between the
#: holder's checks that it still has it.
LEADER_POLL = 5.0
#: Discord accepts one IDENTIFY per bucket in this many seconds.
IDENTIFY_WINDOW = 5.0
#: Added to the window: the IDENTIFY leaves a moment after the slot was taken (the
#: hook returns, the frame is written), and the next holder's must not arrive at
#: Discord sooner than the window after ours.
IDENTIFY_SLACK = 0.25
#: How often a process waiting for an identify bucket held elsewhere asks again.
IDENTIFY_RETRY = 0.1
# The first key of the identify locks' two-int advisory keys ("HKID"): the two-int
# form is a key space apart from the bigint keys of leadership and migrations.
_IDENTIFY_SPACE = 0x484B4944
_APP_NAME_LIMIT = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1


def lock_key(name: str) -> int:
    """The advisory-lock key of ``name``: the same 63-bit number in every process and
    every Python (not :func:`hash`, which is salted per process)."""
    digest = hashlib.blake2b(f"hark.leader:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def _dialect(db: Any) -> str:
    return str(getattr(db, "dialect", "sqlite"))


def _postgres_url(db: Any) -> str:
    for attr in ("url", "dsn", "database_url"):
        value = getattr(db, attr, None)
        if isinstance(value, str) and value:
            return value
    raise TypeError(f"{type(db).__name__} has no PostgreSQL URL to open a lock connection from")


def _display(db: Any, url: str) -> str:
    """The database's URL without its password, for log lines."""
    shown = getattr(db, "display_url", None)
    if isinstance(shown, str) and shown:
        return shown
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _why(exc: BaseException) -> str:
    """A failure in a few words. asyncpg's text names the server, never the password,
    but an OSError's is enough and a timeout has none."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _asyncpg() -> Any:
    # Only a PostgreSQL deployment has (and needs) asyncpg: the extra hark[postgresql].
    import asyncpg

    return asyncpg


def _keepalives(poll: float) -> dict[str, str]:
    """Server-side TCP keepalives for a lock connection: a client that vanished (its
    machine lost, no FIN) loses its session, and so the lock, after about 7 polls. The
    holder stops its job after at most 2 polls without an answer, before that."""
    poll = max(1, round(poll))
    return {
        "tcp_keepalives_idle": str(4 * poll),
        "tcp_keepalives_interval": str(poll),
        "tcp_keepalives_count": "3",
    }


# -- locks ----------------------------------------------------------------------------


class LeaderLock(Protocol):
    """One process's side of the lock ``name``."""

    name: str
    #: Set the moment the lock is known to be gone (its connection closed).
    lost: asyncio.Event

    async def acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits for a holder."""
        ...

    async def held(self) -> bool:
        """Whether this process still holds it (False: stop the job)."""
        ...

    async def release(self) -> None: ...

    async def holder(self) -> str | None:
        """The process that holds it (``host:pid``), if any."""
        ...

    async def close(self) -> None:
        """Release, and drop what waiting needed (a connection)."""
        ...


class PostgresLeaderLock:
    """A session advisory lock on a connection of its own (asyncpg)."""

    def __init__(self, db: Any, name: str, *, process: str, poll: float = LEADER_POLL) -> None:
        self.name = name
        self.key = lock_key(name)
        self.process = process
        self.poll = poll
        self.lost = asyncio.Event()
        self._db = db
        self._url = _postgres_url(db)
        self.where = _display(db, self._url)
        self._conn: Any = None
        self._holding = False
        # One statement at a time on the connection (asyncpg refuses overlapping ones).
        self._busy = asyncio.Lock()

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            asyncpg = _asyncpg()
            app = f"hark {self.process}"[:_APP_NAME_LIMIT]
            self._conn = await asyncpg.connect(
                self._url,
                timeout=max(self.poll, 5.0),
                server_settings={"application_name": app, **_keepalives(self.poll)},
            )
            self._conn.add_termination_listener(self._terminated)
        return self._conn

    def _terminated(self, conn: Any) -> None:
        if conn is self._conn and self._holding:
            self.lost.set()

    async def acquire(self) -> bool:
        async with self._busy:
            conn = await self._connection()
            try:
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", self.key, timeout=max(self.poll, 5.0)
                )
            except BaseException:
                # The answer was lost, maybe after the lock was granted: drop the session
                # so that a lock nobody knows it holds cannot stay behind.
                self._conn = None
                conn.terminate()
                raise
        if got:
            self.lost.clear()
            self._holding = True
        return bool(got)

    async def held(self) -> bool:
        conn = self._conn
        if not self._holding or conn is None or conn.is_closed() or self.lost.is_set():
            return False
        try:
            async with self._busy:
                await conn.fetchval("SELECT 1", timeout=self.poll)
        except Exception as exc:
            log.warning(
                "lost the connection to %s that holds the lock of %s: %s",
                self.where,
                self.name,
                _why(exc),
            )
            return False
        return True

    async def release(self) -> None:
        if not self._holding:
            return
        self._holding = False
        # Ending the session frees its locks: no unlock to send over a connection
        # that may be the very thing that failed.
        await self._close_connection()

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=2.0)
            except Exception:
                conn.terminate()

    async def holder(self) -> str | None:
        if self._holding and not self.lost.is_set():
            return self.process
        hi, lo = self.key >> 32, self.key & 0xFFFFFFFF
        rows = await self._db.fetchall(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
            " AND l.classid::bigint = ? AND l.objid::bigint = ? AND l.objsubid = 1",
            (hi, lo),
        )
        if not rows:
            return None
        name = str(rows[0][0] or "")
        return name.removeprefix("hark ") or "another process"

    async def close(self) -> None:
        await self.release()
        await self._close_connection()


def lock_file_path(database: str | Path, name: str) -> Path:
    """The lock file of leadership ``name`` next to the SQLite file ``database``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "lock"
    if slug != name:  # two names must not meet in one file
        slug += "-" + hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    database = Path(database)
    return database.with_name(f"{database.name}-leader-{slug}.lock")


class FileLeaderLock:
    """``flock`` on a file next to the SQLite database: processes on one machine.

    Each :class:`FileLeaderLock` opens the file itself, and flock locks belong to the
    open file, so two of them in one process exclude each other too. The holder
    writes its name into the file (for :meth:`holder`); the file is never removed,
    which would let a second process lock a second file of the same name.
    """

    def __init__(self, path: str | Path, name: str, *, process: str) -> None:
        self.name = name
        self.path = Path(path)
        self.process = process
        self.lost = asyncio.Event()
        self._fd: int | None = None

    async def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.process}\n".encode(), 0)
        self._fd = fd
        self.lost.clear()
        return True

    async def held(self) -> bool:
        # Only the file being replaced under us (someone deleting it) can undo the lock.
        fd = self._fd
        if fd is None:
            return False
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor of the open file drops the lock

    async def holder(self) -> str | None:
        if self._fd is not None:
            return self.process
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                return text or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    async def close(self) -> None:
        await self.release()


# An in-memory database exists in one process: a dict per database stands for the lock.
_LOCAL_HOLDERS: weakref.WeakKeyDictionary[Any, dict[str, LocalLeaderLock]] = (
    weakref.WeakKeyDictionary()
)


class LocalLeaderLock:
    """Leadership among the users of one in-memory database (one process)."""

    def __init__(self, db: Any, name: str, *, process: str) -> None:
        self.name = name
        self.process = process
        self.lost = asyncio.Event()
        self._holders = _LOCAL_HOLDERS.setdefault(db, {})

    async def acquire(self) -> bool:
        current = self._holders.get(self.name)
        if current is None:
            self._holders[self.name] = self
            self.lost.clear()
        return self._holders[self.name] is self

    async def held(self) -> bool:
        return self._holders.get(self.name) is self

    async def release(self) -> None:
        if self._holders.get(self.name) is self:
            del self._holders[self.name]

    async def holder(self) -> str | None:
        current = self._holders.get(self.name)
        return current.process if current is not None else None

    async def close(self) -> None:
        await self.release()


def leader_lock(
    db: Any, name: str, *, process: str | None = None, poll: float = LEADER_POLL
) -> LeaderLock:
    """The lock ``name`` for the deployment behind ``db`` (see the module's text)."""
    process = process or process_name()
    if _dialect(db) == "postgresql":
        return PostgresLeaderLock(db, name, process=process, poll=poll)
    path = getattr(db, "path", None)
    if path is not None and str(path) != ":memory:":
        return FileLeaderLock(lock_file_path(path, name), name, process=process)
    return LocalLeaderLock(db, name, process=process)


# -- leadership -----------------------------------------------------------------------


class Leadership:
    """Run ``job`` while this process holds ``lock``; see the module's text.

    ``job()`` is started each time this process becomes the leader and cancelled
    when it stops being one (lock lost, :meth:`stop`). If it returns, this process
    stays the leader (so no other runs it) and does not start it again until it has
    lost and regained the lock. If it raises, the error is logged, the lock is let
    go, and this process competes again after two polls (as after losing the lock:
    a healthy process gets the first chance).
    """

    def __init__(self, lock: LeaderLock, job: Job, *, poll: float = LEADER_POLL) -> None:
        self.lock = lock
        self.name = lock.name
        self.job = job
        self.poll = poll
        #: True while this process is the leader (the job runs, or ran and returned).
        self.leading = False
        #: How many times this process became the leader.
        self.terms = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def process(self) -> str:
        return str(getattr(self.lock, "process", ""))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self.run(), name=f"leader-{self.name}")

    async def stop(self) -> None:
        """Cancel the job (if this process leads), let go of the lock, stop competing."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def holder(self) -> str | None:
        """The process that leads ``name`` now (``host:pid``), or None. A failure to
        look is None too: it is for status lines."""
        if self.leading:
            return self.process
        try:
            return await self.lock.holder()
        except Exception:
            log.debug("could not look up the leader of %s", self.name, exc_info=True)
            return None

    async def wait_leading(self, leading: bool = True, timeout: float | None = None) -> None:
        """Wait until this process leads (or, ``leading=False``, does not)."""
        async with asyncio.timeout(timeout):
            while self.leading != leading:
                self._changed.clear()
                await self._changed.wait()

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        self._changed.set()

    async def run(self) -> None:
        """Compete for the lock and lead while holding it, until cancelled."""
        failing = False
        try:
            while True:
                try:
                    got = await self.lock.acquire()
                except Exception as exc:
                    if not failing:
                        log.warning(
                            "cannot try for the lock of %s: %s; trying again every %gs",
                            self.name,
                            _why(exc),
                            self.poll,
                        )
                    failing = True
                    got = False
                else:
                    if failing:
                        log.info("the lock of %s can be tried for again", self.name)
                    failing = False
                if got:
                    await self._lead()
                    # A process that just lost the lead (or whose job failed) waits
                    # longer than the others, so a healthy one takes over first.
                    await asyncio.sleep(self.poll)
                await asyncio.sleep(self.poll)
        finally:
            with contextlib.suppress(Exception):
                await self.lock.close()

    async def _lead(self) -> None:
        self.terms += 1
        self._set_leading(True)
        log.info("leading %s (process %s)", self.name, self.process)
        job: asyncio.Task[Any] | None = asyncio.create_task(
            self._call_job(), name=f"leader-{self.name}-job"
        )
        try:
            while True:
                lost = asyncio.ensure_future(self.lock.lost.wait())
                waiting: set[asyncio.Future[Any]] = {lost} if job is None else {lost, job}
                try:
                    await asyncio.wait(
                        waiting, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    lost.cancel()
                if job is not None and job.done():
                    if job.cancelled():
                        return
                    error = job.exception()
                    job = None
                    if error is not None:
                        log.error(
                            "the job of %s failed; letting another process lead",
                            self.name,
                            exc_info=error,
                        )
                        return
                if self.lock.lost.is_set() or not await self.lock.held():
                    log.warning("lost the lock of %s: stopping its job", self.name)
                    return
        finally:
            if job is not None and not job.done():
                job.cancel()
                with contextlib.suppress(BaseException):
                    await job
            self._set_leading(False)
            with contextlib.suppress(Exception):
                await self.lock.release()
            log.info("no longer leading %s", self.name)

    async def _call_job(self) -> Any:
        return await self.job()


def run_as_leader(
    db: Any,
    name: str,
    job: Job,
    *,
    poll: float = LEADER_POLL,
    process: str | None = None,
) -> Leadership:
    """Start running ``job`` in the one process of the deployment that leads ``name``
    (``db``'s deployment); returns the started :class:`Leadership` (``await
    leadership.stop()`` to end it)."""
    leadership = Leadership(leader_lock(db, name, process=process, poll=poll), job, poll=poll)
    leadership.start()
    return leadership


# -- identify -------------------------------------------------------------------------


class _Bucket:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.free_at = 0.0


# Per database (a deployment), per bucket: the in-process spacing.
_BUCKETS: weakref.WeakKeyDictionary[Any, dict[int, _Bucket]] = weakref.WeakKeyDictionary()
# Releases still waiting out their window (kept so they are not garbage collected).
_RELEASES: set[asyncio.Task[None]] = set()


@contextlib.asynccontextmanager
async def identify_slot(
    db: Any,
    bucket: int,
    *,
    window: float = IDENTIFY_WINDOW,
    slack: float = IDENTIFY_SLACK,
) -> AsyncIterator[None]:
    """``async with identify_slot(db, shard_id % max_concurrency):`` then IDENTIFY.

    Waits while another process (PostgreSQL) or task holds ``bucket``, holds it for
    the body, and keeps it until ``window + slack`` seconds after entry before the
    next may enter. Leaving does not wait for that: the rest of the window runs out
    in the background, so a ``before_identify_hook`` that enters and leaves returns
    as soon as the slot is its own and its IDENTIFY goes out at once.
    """
    hold = window + slack
    if _dialect(db) == "postgresql":
        conn = await _identify_lock(db, bucket)
        if conn is not None:
            entered = time.monotonic()
            try:
                yield
            finally:
                task = asyncio.ensure_future(_release_later(conn, entered + hold))
                _RELEASES.add(task)
                task.add_done_callback(_RELEASES.discard)
            return
    state = _BUCKETS.setdefault(db, {}).setdefault(bucket, _Bucket())
    async with state.lock:
        wait = state.free_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        entered = time.monotonic()
        try:
            yield
        finally:
            state.free_at = entered + hold


async def _identify_lock(db: Any, bucket: int) -> Any:
    """A connection holding ``bucket``'s identify lock, or None when PostgreSQL cannot
    be reached (then the caller spaces identifies within this process: better than no
    IDENTIFY at all)."""
    url = _postgres_url(db)
    try:
        conn = await _asyncpg().connect(url, timeout=10.0)
    except Exception as exc:
        log.warning(
            "identify lock: cannot reach %s (%s); spacing identifies in this process only",
            _display(db, url),
            _why(exc),
        )
        return None
    try:
        # Held by another process: nothing tells us when it lets go, so ask again.
        while True:
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", _IDENTIFY_SPACE, bucket
            )
            if got:
                break
            await asyncio.sleep(IDENTIFY_RETRY)
    except BaseException:
        conn.terminate()
        raise
    return conn


async def _release_later(conn: Any, at: float) -> None:
    try:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
    finally:
        # Closing the session frees the lock (also when shutdown cancels the wait).
        try:
            await asyncio.wait_for(conn.close(), timeout=2.0)
        except (Exception, asyncio.CancelledError):
            conn.terminate()
