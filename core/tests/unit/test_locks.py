"""hark.store.locks: one leader per deployment (SQLite lock file, PostgreSQL advisory
lock) with real processes killed with SIGKILL, a lost connection cancelling the job,
and the identify slots' spacing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import hark
from hark.api import LeaderJob
from hark.store import locks
from hark.store.locks import (
    IDENTIFY_WINDOW,
    FileLeaderLock,
    LocalLeaderLock,
    PostgresLeaderLock,
    identify_slot,
    leader_lock,
    lock_file_path,
    lock_key,
    run_as_leader,
)
from hark.store.sqlite import SQLiteDatabase
from hark.testing.discord import FakeDiscord
from hark.testing.harness import BotHarness

POLL = 0.3
# How long past one poll a takeover may take here: a loaded test machine.
MARGIN = 2.5

# A process that competes for the lock argv[2] of the database argv[1] and says
# what happens on stdout: READY, then LEADING <pid> / STOPPED <pid>.
CHILD = r"""
import asyncio, os, sys

from hark.store.locks import run_as_leader


def database(target):
    if target.startswith("postgresql://"):
        from hark.store.postgres import PostgresDatabase

        return PostgresDatabase(target)
    from hark.store.sqlite import SQLiteDatabase

    return SQLiteDatabase(target)


async def main(target, name, poll):
    async def job():
        print(f"LEADING {os.getpid()}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            print(f"STOPPED {os.getpid()}", flush=True)

    run_as_leader(database(target), name, job, poll=poll, process=f"child-{os.getpid()}")
    print("READY", flush=True)
    await asyncio.Event().wait()


asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


class Child:
    """One competing process and the lines it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())
        self._new = asyncio.Event()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode().strip())
            self._new.set()

    async def wait_for(self, text: str, timeout: float) -> float:
        """Wait until the process printed ``text``; returns when (monotonic) it was seen."""
        async with asyncio.timeout(timeout):
            while text not in self.lines:
                self._new.clear()
                await self._new.wait()
        return time.monotonic()

    @property
    def leading(self) -> bool:
        return f"LEADING {self.pid}" in self.lines

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    async def close(self) -> None:
        self.kill()
        await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Any]]:
    children: list[Child] = []

    async def start(target: str, name: str = "demo", poll: float = POLL) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, target, name, str(poll),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        child = Child(proc)
        children.append(child)
        await child.wait_for("READY", timeout=30)
        return child

    yield start
    for child in children:
        await child.close()


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def handover(spawn: Callable[..., Any], target: str, holder: Callable[[], Any]) -> None:
    """Two processes on ``target``: one leads, the other does not; SIGKILL the leader
    and the other leads within a poll (plus a margin)."""
    first = await spawn(target)
    await first.wait_for(f"LEADING {first.pid}", timeout=10)
    second = await spawn(target)
    await asyncio.sleep(3 * POLL)
    assert not second.leading  # one leader at a time
    assert await holder() == f"child-{first.pid}"

    first.kill()
    killed = time.monotonic()
    led = await second.wait_for(f"LEADING {second.pid}", timeout=POLL + MARGIN)
    assert led - killed < POLL + MARGIN
    assert f"STOPPED {first.pid}" not in first.lines  # SIGKILL: no clean-up ran
    assert await holder() == f"child-{second.pid}"


# -- keys and files --------------------------------------------------------------------


def test_lock_keys_are_stable_63_bit_numbers():
    # BLAKE2b-64 of "hark.leader:twitch" (b2sum -l 64): the same in every process, unlike
    # hash(), which Python salts per process.
    assert lock_key("twitch") == 0x0C0962B6C481EEDD == 867332940365950685
    assert lock_key("demo") == 0x021A3136554A74CE
    assert all(0 <= lock_key(n) < 2**63 for n in ("a", "b", "twitch", "x" * 500))
    assert lock_key("twitch") != lock_key("Twitch")


def test_lock_files_sit_next_to_the_database(tmp_path):
    db = tmp_path / "data" / "hark.sqlite3"
    assert lock_file_path(db, "twitch") == tmp_path / "data" / "hark.sqlite3-leader-twitch.lock"
    odd = lock_file_path(db, "a/b c")
    assert odd.parent == db.parent and "/" not in odd.name[len("hark.sqlite3") :]
    assert odd != lock_file_path(db, "a_b_c")  # names that slug alike get files apart


def test_the_lock_follows_the_database():
    assert isinstance(leader_lock(SQLiteDatabase("/tmp/x/hark.sqlite3"), "n"), FileLeaderLock)
    assert isinstance(leader_lock(SQLiteDatabase(":memory:"), "n"), LocalLeaderLock)


# -- SQLite: a lock file ---------------------------------------------------------------


async def test_sqlite_processes_on_one_file_have_one_leader_and_a_takeover(tmp_path, spawn):
    path = tmp_path / "hark.sqlite3"
    lock = FileLeaderLock(lock_file_path(path, "demo"), "demo", process="me")
    await handover(spawn, str(path), lock.holder)


async def test_two_bots_in_one_process_on_one_file_exclude_each_other(tmp_path, caplog):
    """flock belongs to the open file, not the process: two leaderships of one process
    compete like two processes (the Twitch plugin's tests rely on it)."""
    caplog.set_level(logging.INFO, logger="hark.store.locks")
    db = SQLiteDatabase(tmp_path / "hark.sqlite3")
    runs: list[str] = []

    def job(who: str) -> Callable[[], Any]:
        async def run() -> None:
            runs.append(who)
            await asyncio.Event().wait()

        return run

    a = run_as_leader(db, "demo", job("a"), poll=POLL, process="proc-a")
    await a.wait_leading(timeout=5)
    b = run_as_leader(db, "demo", job("b"), poll=POLL, process="proc-b")
    try:
        await asyncio.sleep(3 * POLL)
        assert (a.leading, b.leading, runs) == (True, False, ["a"])
        assert await b.holder() == "proc-a" == await a.holder()
        await a.stop()
        await b.wait_leading(timeout=POLL + MARGIN)
        await eventually(lambda: runs == ["a", "b"])
        assert await b.holder() == "proc-b"
        assert not a.running
    finally:
        await a.stop()
        await b.stop()
    assert (
        await FileLeaderLock(lock_file_path(db.path, "demo"), "demo", process="x").holder() is None
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "hark.store.locks"]
    assert lines == [
        "leading demo (process proc-a)",
        "no longer leading demo",
        "leading demo (process proc-b)",
        "no longer leading demo",
    ]


async def test_a_replaced_lock_file_stops_the_job(tmp_path):
    db = SQLiteDatabase(tmp_path / "hark.sqlite3")
    stopped = asyncio.Event()

    async def job() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    leadership = run_as_leader(db, "demo", job, poll=POLL)
    try:
        await leadership.wait_leading(timeout=5)
        # Someone deletes the file: a second process could now lock a new one.
        lock_file_path(db.path, "demo").unlink()
        async with asyncio.timeout(POLL + MARGIN):
            await stopped.wait()
        await leadership.wait_leading(False, timeout=1)
        # ...and then competes again, for the new file.
        await leadership.wait_leading(timeout=POLL + MARGIN)
        assert leadership.terms == 2
    finally:
        await leadership.stop()


async def test_a_job_that_fails_lets_go_and_one_that_returns_keeps_the_lead(tmp_path):
    db = SQLiteDatabase(tmp_path / "hark.sqlite3")
    calls: list[str] = []

    async def fails() -> None:
        calls.append("fails")
        raise RuntimeError("boom")

    async def waits() -> None:
        calls.append("waits")
        await asyncio.Event().wait()

    bad = run_as_leader(db, "demo", fails, poll=POLL, process="bad")
    await eventually(lambda: calls == ["fails"])
    good = run_as_leader(db, "demo", waits, poll=POLL, process="good")
    try:
        # The failed job let go: the other one (or the failed one, again) takes over.
        await eventually(lambda: "waits" in calls, timeout=4 * POLL + MARGIN)
        assert good.leading and not bad.leading
    finally:
        await bad.stop()
        await good.stop()

    done: list[str] = []

    async def returns() -> None:
        done.append("ran")

    once = run_as_leader(db, "other", returns, poll=POLL, process="once")
    rival = run_as_leader(db, "other", returns, poll=POLL, process="rival")
    try:
        await once.wait_leading(timeout=5)
        await asyncio.sleep(4 * POLL)
        # It ran once; its process stays the leader, so no other runs it again.
        assert done == ["ran"] and once.leading and not rival.leading
    finally:
        await once.stop()
        await rival.stop()


async def test_in_memory_database_has_one_leader_in_the_process():
    db = SQLiteDatabase(":memory:")
    a = run_as_leader(db, "demo", asyncio.Event().wait, poll=POLL, process="a")
    await a.wait_leading(timeout=5)
    b = run_as_leader(db, "demo", asyncio.Event().wait, poll=POLL, process="b")
    try:
        await asyncio.sleep(2 * POLL)
        assert not b.leading and await b.holder() == "a"
        await a.stop()
        await b.wait_leading(timeout=POLL + MARGIN)
    finally:
        await a.stop()
        await b.stop()


# -- PostgreSQL: an advisory lock ---------------------------------------------------------


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Any]:
    from hark.store.postgres import PostgresDatabase

    db = PostgresDatabase(postgres_url)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def test_postgres_processes_have_one_leader_and_a_takeover(pg, spawn):
    lock = leader_lock(pg, "demo", process="observer")
    assert isinstance(lock, PostgresLeaderLock)
    await handover(spawn, pg.url, lock.holder)


async def lock_backends(pg: Any, name: str) -> list[int]:
    """The server pids of the sessions holding leadership ``name``."""
    key = lock_key(name)
    rows = await pg.fetchall(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid::bigint = ? AND objid::bigint = ? AND objsubid = 1",
        (key >> 32, key & 0xFFFFFFFF),
    )
    return [int(r[0]) for r in rows]


async def test_postgres_a_terminated_session_cancels_the_job_at_once(pg, caplog):
    """The server ends the leader's session (a restart, an admin): its client hears the
    connection close and cancels the job at once, not at its next check (a polls only
    every 30 s here), and a process that polls takes over."""
    caplog.set_level(logging.INFO, logger="hark.store.locks")
    events: list[tuple[str, float]] = []

    def job(who: str) -> Callable[[], Any]:
        async def run() -> None:
            events.append((f"{who} started", time.monotonic()))
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                events.append((f"{who} cancelled", time.monotonic()))
                raise

        return run

    a = run_as_leader(pg, "demo", job("a"), poll=30.0, process="host-a:1")
    await a.wait_leading(timeout=10)
    b = run_as_leader(pg, "demo", job("b"), poll=POLL, process="host-b:2")
    try:
        await asyncio.sleep(2 * POLL)
        assert [e for e, _ in events] == ["a started"] and not b.leading
        assert await b.holder() == "host-a:1"
        (backend,) = await lock_backends(pg, "demo")
        terminated = time.monotonic()
        await pg.fetchall("SELECT pg_terminate_backend(?)", (backend,))
        await b.wait_leading(timeout=POLL + MARGIN)
        await a.wait_leading(False, timeout=1)
        await eventually(lambda: len(events) == 3)
        seen = dict(events)
        assert seen["a cancelled"] - terminated < 1.0
        assert "b started" in seen
        assert await a.holder() == "host-b:2"
    finally:
        await a.stop()
        await b.stop()
    assert await lock_backends(pg, "demo") == []
    lines = [r.getMessage() for r in caplog.records if r.name == "hark.store.locks"]
    assert lines[0] == "leading demo (process host-a:1)"
    assert "lost the lock of demo: stopping its job" in lines
    assert lines.count("no longer leading demo") == 2
    assert "leading demo (process host-b:2)" in lines


class Proxy:
    """A TCP relay to PostgreSQL that can stop passing bytes (a silent network) and
    then cut every connection."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    def cut(self) -> None:
        for writer in self.writers:
            writer.close()

    async def close(self) -> None:
        self.cut()
        for task in list(self._pumps):
            task.cancel()
        if self._server is not None:
            self._server.close()


async def test_postgres_a_silent_connection_stops_the_job_before_anyone_takes_over(pg, caplog):
    """The network goes quiet (nothing closes, nothing answers): the leader's SELECT 1
    goes unanswered, so it cancels its job within two polls, while the server still
    holds its session and nobody else can lead. When the connection finally breaks,
    the lock is free and another process leads."""
    from urllib.parse import urlsplit

    parts = urlsplit(pg.url)
    proxy = Proxy(parts.port)
    await proxy.start()
    through = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()

    class Through:
        dialect = "postgresql"
        url = through
        display_url = through

    stopped = asyncio.Event()

    async def job() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    a = run_as_leader(Through(), "demo", job, poll=POLL, process="quiet")
    await a.wait_leading(timeout=10)
    b = run_as_leader(pg, "demo", asyncio.Event().wait, poll=POLL, process="healthy")
    try:
        proxy.flowing.clear()
        async with asyncio.timeout(2 * POLL + MARGIN):
            await stopped.wait()
        await a.wait_leading(False, timeout=1)
        # The server still has a's session, and with it the lock: no second leader.
        await asyncio.sleep(2 * POLL)
        assert not b.leading and len(await lock_backends(pg, "demo")) == 1
        proxy.cut()
        await b.wait_leading(timeout=POLL + MARGIN)
    finally:
        await a.stop()
        await b.stop()
        await proxy.close()
    assert "lost the connection to" in caplog.text and "that holds the lock of demo" in caplog.text


async def test_postgres_an_unreachable_server_is_retried_quietly(caplog):
    from hark.store.postgres import PostgresDatabase

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = PostgresDatabase(f"postgresql://hark:s3cret-pw@127.0.0.1:{port}/nowhere")
    caplog.set_level(logging.INFO, logger="hark.store.locks")
    leadership = run_as_leader(db, "demo", asyncio.Event().wait, poll=0.1)
    try:
        await asyncio.sleep(0.6)
        assert not leadership.leading and leadership.running
    finally:
        await leadership.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # one line, not one per try
    assert warnings[0].startswith("cannot try for the lock of demo:")
    assert "s3cret-pw" not in caplog.text


async def test_advisory_keys_of_leadership_and_identify_do_not_meet(pg):
    """Identify buckets use the two-int key form: a key space apart from the bigint keys
    (a bucket number never takes a leadership lock, nor the reverse)."""
    async with identify_slot(pg, 0, window=0.1, slack=0):
        rows = await pg.fetchall(
            "SELECT classid::bigint, objid::bigint, objsubid FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted"
        )
        assert rows == [(locks._IDENTIFY_SPACE, 0, 2)]


# -- identify slots ---------------------------------------------------------------------


async def entries(db: Any, buckets: list[int], window: float) -> list[float]:
    """Enter each bucket's slot at once, in parallel; when each entry happened."""
    start = time.monotonic()

    async def enter(bucket: int) -> float:
        async with identify_slot(db, bucket, window=window, slack=0):
            return time.monotonic() - start

    return list(await asyncio.gather(*(enter(b) for b in buckets)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_identify_buckets_run_in_parallel_and_one_bucket_waits_its_window(
    backend, tmp_path, request
):
    if backend == "postgresql":
        from hark.store.postgres import PostgresDatabase

        cluster = request.getfixturevalue("postgres_cluster")  # sync: allowed here
        db = PostgresDatabase(await cluster.create_database())
    else:
        db = SQLiteDatabase(tmp_path / "hark.sqlite3")
    window = 1.0
    # Buckets 0 and 1 at once; bucket 0 a second time: that one waits out the window.
    one, first1, other = await entries(db, [0, 1, 0], window)
    first0, second0 = sorted((one, other))  # on PostgreSQL either may win
    # (Each PostgreSQL entry opens a connection: on a busy machine that takes a moment.)
    assert abs(first0 - first1) < 0.5
    assert second0 - first0 >= window
    assert second0 - first0 < window + 1.0
    # Leaving does not wait for the window: the hook returns at once.
    start = time.monotonic()
    async with identify_slot(db, 5, window=3.0, slack=0):
        pass
    assert time.monotonic() - start < 1.0


async def test_identify_default_window_is_discords_five_seconds(tmp_path):
    assert IDENTIFY_WINDOW == 5.0
    db = SQLiteDatabase(tmp_path / "hark.sqlite3")
    times = []
    for _ in range(2):
        async with identify_slot(db, 0):
            times.append(time.monotonic())
    assert times[1] - times[0] >= 5.0
    assert times[1] - times[0] < 5.0 + locks.IDENTIFY_SLACK + 1.0


IDENTIFY_CHILD = r"""
import asyncio, sys, time

from hark.store.locks import identify_slot
from hark.store.postgres import PostgresDatabase


async def main(url, window):
    async with identify_slot(PostgresDatabase(url), 0, window=window, slack=0):
        print(f"ENTERED {time.time()}", flush=True)
    await asyncio.sleep(window + 2)  # the rest of the window runs out in this process


asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


async def test_identify_bucket_is_shared_by_processes_on_postgres(pg):
    window = 1.5
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", IDENTIFY_CHILD, pg.url, str(window),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("ENTERED ")
        theirs = float(line.split()[1])
        async with identify_slot(pg, 0, window=window, slack=0):
            ours = time.time()
        assert ours - theirs >= window - 0.05  # wall clocks of two processes
        # Another bucket is not held up.
        start = time.monotonic()
        async with identify_slot(pg, 1, window=window, slack=0):
            assert time.monotonic() - start < 1.0
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def test_identify_without_postgres_spaces_within_the_process(caplog):
    from hark.store.postgres import PostgresDatabase

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = PostgresDatabase(f"postgresql://hark:s3cret-pw@127.0.0.1:{port}/nowhere")
    first, second = await entries(db, [0, 0], 0.4)
    assert second - first >= 0.4
    assert "spacing identifies in this process only" in caplog.text
    assert "s3cret-pw" not in caplog.text


# -- the host: run_once ----------------------------------------------------------------


class OnceCog(hark.PluginCog, name="Once"):
    """Runs one job per deployment, and leaves stopping it to the bot's shutdown."""

    def __init__(self, bot: Any) -> None:
        super().__init__(bot)
        self.running = False
        self.runs = 0

    async def cog_load(self) -> None:
        self.job = self.host.run_once("demo", self.work)

    async def work(self) -> None:
        self.running = True
        self.runs += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.running = False


once_plugin = hark.Plugin(description="runs once", cogs=[OnceCog])


async def test_host_run_once_runs_in_one_bot_and_moves_when_it_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "LEADER_POLL", POLL)
    server = FakeDiscord()
    await server.start()
    # Two bots on one database (one data folder) and one loopback Discord.
    first = BotHarness(tmp_path, plugins={"once": once_plugin}, server=server)
    second = BotHarness(tmp_path, plugins={"once": once_plugin}, server=server)
    try:
        await first.start()
        one = first.bot.get_cog("Once")
        await eventually(lambda: one.running)
        await second.start()
        two = second.bot.get_cog("Once")
        await asyncio.sleep(3 * POLL)
        assert (one.runs, two.runs, two.running) == (1, 0, False)
        assert isinstance(one.job, LeaderJob) and one.job.leading and not two.job.leading
        assert await second.bot.host.leader("demo") == first.bot.runtime.status.process
        with pytest.raises(ValueError, match="already running"):
            first.bot.host.run_once("demo", one.work)
        # Shutdown stops the job (the Cog never did) and lets go of the lock.
        await first.close()
        assert not one.running and not one.job.leading
        await eventually(lambda: two.running, timeout=POLL + MARGIN)
        assert two.runs == 1 and two.job.leading
    finally:
        await first.close()
        await second.close()
        await server.close()
    lock = FileLeaderLock(lock_file_path(tmp_path / "hark.sqlite3", "demo"), "demo", process="x")
    assert await lock.holder() is None
